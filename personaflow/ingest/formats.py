"""Bring your own events: a CSV (plain, compressed or an .xlsx sheet) or Parquet file with any column
names, mapped onto ours.

    personaflow ingest events.csv --format csv \\
        --mapping "customer=user_id,sku=item_id,action=event_type,ts=event_ts"

Required (ours): user_id, item_id, event_type, event_ts. Optional: event_id, session_id, quantity,
price, order_id, description, country. A column already named like ours needs no mapping entry.
- event_type values must be view, cart, purchase or return; anything else is kept and quarantined by
  the nightly validation (so a typo is seen, not silently dropped);
- event_ts: ISO 8601 text ('2024-03-01 10:00:00', '2024-03-01T10:00:00Z', offsets are converted to
  UTC) or a Parquet timestamp; naive times are taken as UTC;
- defaults: event_id = <file stem>-<source_row>, quantity = 1, price / session_id / the rest NULL;
- line_total: an export that gives the line's amount instead of a unit price (The Complete Journey's
  sales_value): price = line_total / max(quantity, 1) where no price is mapped;
- constants: one value for every row of a column the export lacks (`{"event_type": "purchase"}` for an
  export of invoice lines only); a manifest of `personaflow history FOLDER` gives them.
source_row is the 1-based data line (CSV) or row (Parquet) of the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from personaflow.ingest.csvfile import IngestError, bad_values, write_rejects
from personaflow.ingest.sheets import read_export_text

FORMATS = ("csv", "parquet")
REQUIRED = ("user_id", "item_id", "event_type", "event_ts")
OPTIONAL = (
    "event_id", "session_id", "quantity", "price", "order_id", "description", "country", "line_total"
)  # fmt: skip


def parse_mapping(text: str | None) -> dict[str, str]:
    """'their=ours,their2=ours2' -> {their: ours}; names the entry at fault."""
    mapping: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in (text or "").split(","))):
        theirs, sep, ours = (part.strip() for part in entry.partition("="))
        if not sep or not theirs or not ours:
            raise ValueError(f"mapping entry {entry!r}: expected their_column=our_column")
        if ours not in (*REQUIRED, *OPTIONAL):
            raise ValueError(
                f"mapping entry {entry!r}: {ours!r} is not one of ours ({', '.join((*REQUIRED, *OPTIONAL))})"
            )
        if ours in mapping.values():
            raise ValueError(f"mapping entry {entry!r}: {ours!r} is mapped twice")
        mapping[theirs] = ours
    return mapping


def _read(path: Path, fmt: str, mapping: dict[str, str], max_rejects: int, constants: dict[str, str]):
    if fmt == "csv":
        required = tuple(c for c in REQUIRED if c not in constants)
        text = read_export_text(
            path, required=required, optional=OPTIONAL, aliases=mapping, max_rejects=max_rejects
        )
        return text.table.to_pandas(), text.lines, text.lines - 1, text.report(), text.rejects
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
    missing = [c for c in REQUIRED if c not in table.column_names and c not in constants]
    if missing:
        raise IngestError(
            f"{path}: missing column(s) {', '.join(missing)} (after --mapping); "
            f"file has {', '.join(table.column_names)}"
        )
    rows = np.arange(1, table.num_rows + 1)
    return table.to_pandas(), rows, rows, {"rejected_lines": 0, "non_utf8_lines": 0}, []


def _timestamps(path: Path, values: pd.Series, where: np.ndarray, fmt: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        # Parsed apart: pandas given a mix of offset and naive text applies one row's offset to others.
        aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).fillna(False).astype(bool)
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        if aware.any():
            utc = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
            parsed[aware] = utc.dt.tz_localize(None)
        if (~aware).any():
            parsed[~aware] = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()  # empty text too: an event without a time cannot be placed
        if bad.any():
            unit = "line" if fmt == "csv" else "row"
            raise bad_values(path, "event_ts", where, values, bad, "an ISO 8601 timestamp", unit)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _numbers(path: Path, frame: pd.DataFrame, column: str, where: np.ndarray, fmt: str, default):
    if column not in frame:
        return pd.Series(default, index=frame.index)
    values = frame[column]
    text = values.astype("string").str.strip()
    number = pd.to_numeric(text.replace("", None), errors="coerce")
    bad = (number.isna() & text.notna() & (text != "")).to_numpy()
    if column == "quantity":
        bad |= (number.notna() & (number % 1 != 0)).to_numpy()
    if bad.any():
        raise bad_values(path, column, where, values, bad, "a number", "line" if fmt == "csv" else "row")
    return number.fillna(default) if default is not None else number


def read_events(
    path: Path,
    fmt: str,
    mapping: dict[str, str],
    max_rejects: int = 0,
    rejects_file: Path | None = None,
    constants: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a mapped events file into the landing layout; `constants` (ours -> value) fill columns the
    export lacks (a column it has is never overwritten: the export's own values win)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    constants = dict(constants or {})
    unknown = sorted(set(constants) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"constants {', '.join(unknown)}: not ours ({', '.join((*REQUIRED, *OPTIONAL))})")
    raw, where, source_row, report, rejects = _read(path, fmt, mapping, max_rejects, constants)
    for column, value in constants.items():
        if column not in raw:
            raw[column] = str(value)
    rejected = write_rejects(rejects, rejects_file) if rejects_file else None
    quantity = _numbers(path, raw, "quantity", where, fmt, 1).astype(np.int64)
    price = _numbers(path, raw, "price", where, fmt, None).astype(np.float64)
    if "line_total" in raw and "price" not in raw:
        # a line's amount over its units; a line of 0 or fewer units keeps its amount as the price
        total = _numbers(path, raw, "line_total", where, fmt, None).astype(np.float64)
        price = total / np.maximum(quantity, 1)

    def text(column: str) -> pd.Series:
        if column not in raw:
            return pd.Series(None, index=raw.index, dtype="object")
        return raw[column].astype("string").str.strip().replace("", None).astype("object")

    rows = pd.Series(np.asarray(source_row, dtype=np.int64), index=raw.index)
    event_id = text("event_id")
    frame = pd.DataFrame(
        {
            "event_id": event_id.where(event_id.notna(), f"{path.stem}-" + rows.astype(str)),
            "user_id": text("user_id"),
            "item_id": text("item_id"),
            "event_type": text("event_type"),
            "event_ts": _timestamps(path, raw["event_ts"], where, fmt),
            "session_id": text("session_id"),
            "quantity": quantity,
            "price": price,
            "order_id": text("order_id"),
            "description": text("description"),
            "country": text("country"),
            "source_format": fmt,
            "source_row": rows,
        }
    )
    ignored = [c for c in raw.columns if c not in (*REQUIRED, *OPTIONAL)]
    return frame, {
        "rows": len(frame),
        **report,
        "ignored_columns": ignored,
        "rejects_file": str(rejected) if rejected else None,
    }
