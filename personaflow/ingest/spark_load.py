"""The raw layer on Spark (PERSONAFLOW_WAREHOUSE_URL=spark): Parquet tables of the Spark catalog.

raw.events is Parquet partitioned by `batch_date` (one folder per day under the warehouse dir), so a
load of a day is one `insert overwrite ... partition (batch_date)` with dynamic partition overwrite:
exactly that day's partition is replaced, every other day is untouched, and loading the same day
again gives the same table (idempotent). A day whose file now holds no rows has its partition
dropped. raw.users and raw.items are full snapshots (overwritten); raw.batches, the loader's
bookkeeping (one row per day), is read to the driver, updated and written back whole.

The file is parsed and typed exactly as on the other engines (personaflow/ingest/load.py: the local
DuckDB checks every value first, so a bad file leaves the warehouse as it was); only the write differs.
Spark has no multi-statement transactions: each step is a single overwrite, and re-running a load
after a failure gives the table a clean run would.

What the DuckDB/PostgreSQL loader does that this one does not (yet): a re-delivered day's previous rows
are not kept in raw.replaced_events (validation's put-back of a failed re-delivery), and quarantine does
not act on Spark tables.

Memory: the driver holds the typed rows of the days of one write (`load_days` flushes every
FLUSH_ROWS rows) and raw.batches (one row per day); Spark writes the Parquet files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from personaflow.core.landing import batch_path, live_path
from personaflow.core.spark import SparkConnection
from personaflow.ingest.csvfile import read_csv_text, write_rejects
from personaflow.ingest.raw_types import EVENT_TYPES, RAW_COLUMNS, V2_TYPES, live_table

Keep = Callable[[pa.Table], pa.Table]

_SPARK = {"varchar": "string", "double precision": "double", "integer": "int", "bigint": "bigint",
          "timestamp": "timestamp", "date": "date"}  # fmt: skip
_KINDS = {**EVENT_TYPES, **V2_TYPES, "batch_date": "date", "source_file": "varchar", "loaded_at": "timestamp"}
# raw.events' columns as Spark stores them: a partitioned table's partition column comes last.
EVENT_COLUMNS = tuple(c for c in RAW_COLUMNS if c != "batch_date") + ("batch_date",)
BATCH_COLUMNS = {
    "batch_date": "date", "source_file": "string", "row_count": "bigint", "sha256": "string",
    "status": "string", "loaded_at": "timestamp", "previous_rows": "bigint", "previous_sha256": "string",
    "quarantined_sha256": "string",
}  # fmt: skip
DIMENSIONS = {
    "users": {"user_id": "string", "signup_date": "date", "country": "string", "age_band": "string"},
    "items": {"item_id": "string", "category": "string", "brand": "string", "price": "double",
              "description": "string"},
}  # fmt: skip
# Typed rows held on the driver before one write (a few hundred bytes a row: ~100 MB at most).
FLUSH_ROWS = 500_000


def _ddl(columns: dict[str, str]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns.items())


def ensure_raw_layer(con: SparkConnection) -> None:
    con.execute("create schema if not exists raw")
    events = {c: _SPARK[_KINDS[c]] for c in EVENT_COLUMNS}
    con.execute(
        f"create table if not exists raw.events ({_ddl(events)}) using parquet partitioned by (batch_date)"
    )
    con.execute(f"create table if not exists raw.batches ({_ddl(BATCH_COLUMNS)}) using parquet")
    for table, columns in DIMENSIONS.items():
        con.execute(f"create table if not exists raw.{table} ({_ddl(columns)}) using parquet")


def _write(con: SparkConnection, table: str, frame: pa.Table | pd.DataFrame, columns: Iterable[str]) -> None:
    """`insert overwrite` of `table` from `frame` (partitioned: only the partitions its rows hold)."""
    names = ", ".join(columns)
    partition = " partition (batch_date)" if table == "raw.events" else ""
    con.register("landing_rows", frame)
    try:
        con.execute(f"insert overwrite table {table}{partition} select {names} from landing_rows")
    finally:
        con.unregister("landing_rows")


def load_dimensions(con: SparkConnection, typed: dict[str, pa.Table]) -> dict[str, int]:
    """Overwrite raw.users / raw.items with the typed snapshots (absent ones are left as they are)."""
    ensure_raw_layer(con)
    counts = {}
    for table, rows in typed.items():
        columns = DIMENSIONS[table]
        frame = rows.to_pandas()
        for column in columns:  # a file without an optional column (description) loads it as NULL
            if column not in frame:
                frame[column] = None
        frame = frame[list(columns)]
        _write(con, f"raw.{table}", pa.Table.from_pandas(frame, schema=_arrow_schema(columns),
                                                         preserve_index=False), columns)  # fmt: skip
        counts[f"raw.{table}"] = int(con.execute(f"select count(*) from raw.{table}").fetchone()[0])
    return counts


_ARROW = {"string": pa.string(), "date": pa.date32(), "double": pa.float64(), "bigint": pa.int64(),
          "int": pa.int32(), "timestamp": pa.timestamp("us")}  # fmt: skip


def _arrow_schema(columns: dict[str, str]) -> pa.Schema:
    return pa.schema([(name, _ARROW[kind]) for name, kind in columns.items()])


def batches(con: SparkConnection) -> pd.DataFrame:
    """raw.batches on the driver (one row per day)."""
    return con.execute(f"select {', '.join(BATCH_COLUMNS)} from raw.batches").df()


def set_status(con: SparkConnection, day: date, status: str) -> bool:
    """raw.batches' status of `day` (e.g. 'quarantined'): the small table rewritten whole, as the loader
    writes it. False when the day has no row."""
    whole = batches(con)
    hit = whole["batch_date"] == day
    if not hit.any():
        return False
    whole.loc[hit, "status"] = status
    table = pa.Table.from_pandas(whole, schema=_arrow_schema(BATCH_COLUMNS), preserve_index=False)
    _write(con, "raw.batches", table, BATCH_COLUMNS)
    return True


def load_days(
    con: SparkConnection,
    local: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    days: list[date],
    typed_rows: Callable[..., pa.Table],
    sha256: Callable[[Path], str],
    max_rejects: int = 0,
    keep: Keep | None = None,
) -> list[dict[str, object]]:
    """Load each day's file (and live events) into its raw.events partition, replacing what the
    partition held; raw.batches records each load. `typed_rows` / `sha256` are the DuckDB loader's
    own (personaflow/ingest/load.py), so every engine types the same rows."""
    ensure_raw_layer(con)
    known = batches(con).set_index("batch_date") if days else pd.DataFrame()
    reports, pending, held, empty = [], [], 0, []

    def flush() -> None:
        nonlocal pending, held
        if pending:
            _write(con, "raw.events", pa.concat_tables(pending), EVENT_COLUMNS)
        pending, held = [], 0

    book = []
    for day in days:
        path = batch_path(landing_dir, day)
        text = read_csv_text(
            path, required=list(EVENT_TYPES), optional=list(V2_TYPES), max_rejects=max_rejects
        )
        present = [c for c in (*EVENT_TYPES, *V2_TYPES) if c in text.columns]
        table = text.table.select(present).append_column("_line", pa.array(text.lines, pa.int64()))
        live_file = live_path(landing_dir, day)
        live = live_table(live_file)
        if keep is not None:
            table, live = keep(table), keep(live)
        digest = sha256(path)
        rows = typed_rows(local, table, live, present, path, live_file, day).select(list(EVENT_COLUMNS))
        before = known.loc[day] if day in known.index else None
        if rows.num_rows:
            pending.append(rows)
            held += rows.num_rows
        else:
            empty.append(day)
        if held >= FLUSH_ROWS:
            flush()
        book.append({
            "batch_date": day, "source_file": str(path), "row_count": rows.num_rows, "sha256": digest,
            "status": "loaded", "loaded_at": datetime.now().replace(microsecond=0),
            "previous_rows": None, "previous_sha256": None, "quarantined_sha256": None,
        })  # fmt: skip
        rejects = write_rejects(text.rejects, path.with_name(f"{path.stem}.rejects.jsonl"))
        reports.append({
            "batch_date": day.isoformat(), "rows": int(rows.num_rows), "source_file": str(path),
            "sha256": digest, "replay": bool(before is not None and before["sha256"] == digest),
            "previous_status": None if before is None else before["status"], "replaces_rows": None,
            "live_rows": live.num_rows, "ignored_columns": [c for c in text.columns if c not in present],
            **text.report(), "rejects_file": str(rejects) if rejects else None,
        })  # fmt: skip
    flush()
    for day in empty:  # an empty day's rows are gone: no insert would overwrite its partition
        con.execute(f"alter table raw.events drop if exists partition (batch_date = '{day.isoformat()}')")
    if book:
        frame = pd.DataFrame(book, columns=list(BATCH_COLUMNS))
        old = known.reset_index()
        old = old[~old["batch_date"].isin(frame["batch_date"])] if len(old) else old
        whole = pd.concat([old[list(BATCH_COLUMNS)], frame], ignore_index=True) if len(old) else frame
        _write(con, "raw.batches", pa.Table.from_pandas(whole, schema=_arrow_schema(BATCH_COLUMNS),
                                                        preserve_index=False), BATCH_COLUMNS)  # fmt: skip
    return reports
