"""Files a person opens in a spreadsheet: cells that a spreadsheet would run as a formula are made inert.

A customer id or a product name comes from outside (a shop export, POST /events): `=HYPERLINK(...)`
sent as a user id must reach a marketer's CSV as text, not as a live formula (CSV injection, OWASP).
A cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
spreadsheets read as "text follows" and do not show. Numbers stay numbers: only text cells change.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: object) -> object:
    """The cell as a spreadsheet should show it: text starting with a formula trigger gets a `'`."""
    return "'" + value if isinstance(value, str) and value.startswith(TRIGGERS) else value


def inert_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells are inert (columns of numbers, dates and booleans are left as they are)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(inert)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` as a CSV a spreadsheet can open safely."""
    inert_cells(frame).to_csv(path, index=False)
    return path
