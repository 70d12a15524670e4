"""The raw layer's column types, and the SQL that puts landed text into them: every typed column's
text is checked (DuckDB's cast and a regular shape) and typed in a local, in-memory DuckDB, so a bad
value names its file, column and line and nothing reaches the warehouse; the typed rows then land in
raw.events with one named-column insert, on either engine (personaflow/ingest/load.py).

The type names are ones both DuckDB and PostgreSQL read (`double precision`, not `double`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.live import LIVE_COLUMNS, read_live_lines

# raw.events: the contract's eight columns, then v2's optional ones (absent from a file -> NULL).
EVENT_TYPES = {
    "event_id": "varchar", "user_id": "varchar", "item_id": "varchar", "event_type": "varchar",
    "event_ts": "timestamp", "session_id": "varchar", "quantity": "integer", "price": "double precision",
}  # fmt: skip
V2_TYPES = {
    "order_id": "varchar", "description": "varchar", "country": "varchar", "source_format": "varchar",
    "source_row": "bigint",
}  # fmt: skip
# Every column of raw.events, in contract order (named in every copy between raw, quarantine, replaced).
RAW_COLUMNS = (*EVENT_TYPES, *V2_TYPES, "batch_date", "source_file", "loaded_at")
# Text a typed column must look like before DuckDB casts it: DuckDB would round '2.5' to an integer
# and silently drop a '+02:00' offset from a timestamp (landing timestamps are UTC without offset).
SHAPES = {
    "date": r"\s*\d{4}-\d{2}-\d{2}\s*",
    "integer": r"\s*[+-]?\d+\s*",
    "bigint": r"\s*[+-]?\d+\s*",
    "double precision": r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*",
    "timestamp": r"\s*\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\s*",
}


def live_table(path: Path) -> pa.Table:
    """The live file as string columns in the landing layout (line numbers in `_line`)."""
    try:
        numbered = read_live_lines(path)
    except ValueError as exc:
        raise IngestError(str(exc)) from exc
    columns: dict[str, list] = {c: [] for c in LIVE_COLUMNS[:-1]}
    for _, record in numbered:
        for c in columns:
            value = record.get(c)
            columns[c].append("" if value is None else str(value))
    table = pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()})
    lines = pa.array([n for n, _ in numbered], pa.int64())
    return table.append_column("_line", lines).append_column("source_row", pc.cast(lines, pa.string()))


def check_types(con: duckdb.DuckDBPyConnection, view: str, types: dict[str, str], path: Path) -> None:
    """Raise naming file, column, line and value for the first text a typed column cannot hold.

    One scan for all columns; the offending value is looked up only when there is one.
    """
    bad = {}
    for column, kind in types.items():
        if kind != "varchar":
            shape = f" or not regexp_full_match({column}, '{SHAPES[kind]}')" if kind in SHAPES else ""
            bad[column] = f"{column} <> '' and (try_cast({column} as {kind}) is null{shape})"
    if not bad:
        return
    counts = ", ".join(
        f"count(*) filter (where {cond}), min(_line) filter (where {cond})" for cond in bad.values()
    )
    # fetchall: DuckDB 2 refuses new work on a connection while a result is only partly fetched.
    found = con.execute(f"select {counts} from {view}").fetchall()[0]
    for i, column in enumerate(bad):
        n, line = found[2 * i], found[2 * i + 1]
        if n:
            [(value,)] = con.execute(f"select {column} from {view} where _line = $1", [line]).fetchall()
            raise IngestError(
                f"{path}:{line}: column {column}: {value!r} is not a valid {types[column]} "
                f"({n} bad value(s) in this column); nothing was loaded"
            )


def typed_events(
    local: duckdb.DuckDBPyConnection, view: str, present: list[str], path: Path, batch_date: date,
    source_format: str,
) -> pa.Table:
    """A checked string view as raw.events rows (every column of RAW_COLUMNS, typed), computed in the
    local DuckDB: what lands in the warehouse is already typed, so both engines take it as it is."""
    exprs = []
    for column, kind in {**EVENT_TYPES, **V2_TYPES}.items():
        if column == "source_row":
            text = "source_row" if column in present else "null"
            exprs.append(f"coalesce(try_cast(nullif(trim({text}), '') as bigint), _line - 1)")
        elif column == "source_format":
            text = "nullif(source_format, '')" if column in present else "null"
            exprs.append(f"coalesce({text}, '{source_format}')")
        elif column not in present:
            exprs.append(f"cast(null as {kind})")
        elif kind == "varchar":
            exprs.append(f"nullif({column}, '')")
        else:
            exprs.append(f"cast(nullif(trim({column}), '') as {kind})")
    aliased = [f"{e} as {c}" for e, c in zip(exprs, [*EVENT_TYPES, *V2_TYPES], strict=True)]
    return local.sql(
        f"select {', '.join(aliased)}, cast($1 as date) as batch_date, cast($2 as varchar) as source_file, "
        f"cast(now() as timestamp) as loaded_at from {view}",
        params=[batch_date, str(path)],
    ).to_arrow_table()
