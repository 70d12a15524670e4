"""Warehouse rows as the pandas frames the GX pandas checks expect, with the same dtypes from either
engine, and cast to the dtypes GX vectorizes.

DuckDB hands a DATE over as datetime64 and a nullable INTEGER as Int32; rows fetched from PostgreSQL
come as Python objects (a DATE as `datetime.date`, a NUMERIC as `Decimal`, an integer column with a
NULL as float). The checks compare dates with datetimes and test dtypes, so a PostgreSQL frame is
given DuckDB's dtypes first (`read_frame`); then `vectorizable` widens to the dtypes GX's pandas
`between` runs without a per-row Python comparison.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pandas as pd

from personaflow.core import warehouse as wh


def read_frame(con: wh.DuckConnection | wh.PgConnection, sql: str, params: Sequence | None = None
               ) -> pd.DataFrame:
    """Run `sql` and return its rows as a frame with DuckDB's dtypes, whichever engine ran it."""
    frame = con.execute(sql, params).df()
    return frame if con.engine == "duckdb" else duck_dtypes(frame)


def duck_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of dates/datetimes -> datetime64, of Decimals -> float64, of ints -> Int64."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype != object:
            continue
        values = column.dropna()
        if values.empty:
            continue
        if all(isinstance(v, dt.date) for v in values):
            out[name] = pd.to_datetime(column)
        elif all(isinstance(v, Decimal) for v in values):
            out[name] = column.astype("float64")
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[name] = column.astype("Int64")
    return out


def vectorizable(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast to the dtypes GX's pandas `between` vectorizes (datetime64[ns], int64, float64).

    DuckDB hands TIMESTAMP over as datetime64[us] and INTEGER as int32; for those GX falls back to a
    per-row Python comparison, about 4x slower on a 100k-row batch.
    """
    casts: dict[str, str] = {}
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_datetime64_dtype(dtype) and dtype != "datetime64[ns]":
            casts[str(name)] = "datetime64[ns]"
        elif (
            pd.api.types.is_integer_dtype(dtype)
            and dtype != "int64"
            and not pd.api.types.is_extension_array_dtype(dtype)
        ):
            casts[str(name)] = "int64"
        elif pd.api.types.is_float_dtype(dtype) and dtype != "float64":
            casts[str(name)] = "float64"
    out = frame
    for name, target in casts.items():
        try:
            out = out.astype({name: target})
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
            pass  # e.g. a year-9999 timestamp: keep the slow path, which still reports the row
    return out
