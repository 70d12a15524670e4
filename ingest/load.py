"""Land daily batch files in the warehouse's raw layer.

The raw layer keeps every landed row as it came (typed, plus where it came from). Loading a batch is
idempotent: the batch's rows are replaced in one transaction, so re-running a day never duplicates it.
The landing file itself is never moved or changed; quarantine copies it.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import duckdb

from ingest.generate import batch_dates, batch_path

EVENT_TYPES = {
    "event_id": "varchar", "user_id": "varchar", "item_id": "varchar", "event_type": "varchar",
    "event_ts": "timestamp", "session_id": "varchar", "quantity": "integer", "price": "double",
}  # fmt: skip
USER_TYPES = {"user_id": "varchar", "signup_date": "date", "country": "varchar", "age_band": "varchar"}
ITEM_TYPES = {"item_id": "varchar", "category": "varchar", "brand": "varchar", "price": "double"}

RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.events (
    event_id varchar, user_id varchar, item_id varchar, event_type varchar, event_ts timestamp,
    session_id varchar, quantity integer, price double,
    batch_date date, source_file varchar, loaded_at timestamp
);
create table if not exists raw.users (user_id varchar, signup_date date, country varchar, age_band varchar);
create table if not exists raw.items (item_id varchar, category varchar, brand varchar, price double);
create table if not exists raw.batches (
    batch_date date primary key, source_file varchar, row_count bigint, sha256 varchar,
    status varchar, loaded_at timestamp
);
"""


class IngestError(ValueError):
    """A landing file that cannot be loaded; the message names the file and what is wrong."""


def connect(warehouse: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(warehouse), read_only=read_only)


def ensure_raw_layer(warehouse: Path) -> None:
    with connect(warehouse) as con:
        con.execute(RAW_DDL)


def _read_csv_sql(path: Path, types: dict[str, str]) -> str:
    """A `read_csv` call with declared column types, after checking the header names them all."""
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    with path.open("rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace").strip()
    if not header:
        raise IngestError(f"{path}: empty file (no header line)")
    columns = [c.strip().strip('"') for c in header.split(",")]
    missing = [c for c in types if c not in columns]
    if missing:
        raise IngestError(f"{path}: missing column(s) {', '.join(missing)}; header has {', '.join(columns)}")
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in types.items())
    escaped = str(path).replace("'", "''")
    return f"select {', '.join(types)} from read_csv('{escaped}', header=true, columns={{{spec}}})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_dimensions(warehouse: Path, landing_dir: Path) -> dict[str, int]:
    """Replace raw.users and raw.items with the landed dimension files (a full snapshot each time)."""
    ensure_raw_layer(warehouse)
    counts = {}
    with connect(warehouse) as con:
        for table, types in (("users", USER_TYPES), ("items", ITEM_TYPES)):
            sql = _read_csv_sql(landing_dir / f"{table}.csv", types)
            try:
                con.execute("begin")
                con.execute(f"delete from raw.{table}")
                con.execute(f"insert into raw.{table} {sql}")
                con.execute("commit")
            except duckdb.Error as exc:
                con.execute("rollback")
                raise IngestError(f"{landing_dir / f'{table}.csv'}: {exc}") from exc
            counts[f"raw.{table}"] = con.execute(f"select count(*) from raw.{table}").fetchone()[0]
    return counts


def load_batch(warehouse: Path, landing_dir: Path, batch_date: date) -> dict[str, object]:
    """Load one day's events file into raw.events, replacing any earlier load of that day."""
    ensure_raw_layer(warehouse)
    path = batch_path(landing_dir, batch_date)
    sql = _read_csv_sql(path, EVENT_TYPES)
    with connect(warehouse) as con:
        try:
            con.execute("begin")
            con.execute("delete from raw.events where batch_date = ?", [batch_date])
            con.execute(
                f"insert into raw.events select *, ?::date, ?, now()::timestamp from ({sql})",
                [batch_date, str(path)],
            )
            rows = con.execute(
                "select count(*) from raw.events where batch_date = ?", [batch_date]
            ).fetchone()[0]
            con.execute("delete from raw.batches where batch_date = ?", [batch_date])
            con.execute(
                "insert into raw.batches values (?, ?, ?, ?, 'loaded', now()::timestamp)",
                [batch_date, str(path), rows, _sha256(path)],
            )
            con.execute("commit")
        except duckdb.Error as exc:
            con.execute("rollback")
            raise IngestError(f"{path}: {exc}") from exc
    return {"batch_date": batch_date.isoformat(), "rows": int(rows), "source_file": str(path)}


def load_pending(warehouse: Path, landing_dir: Path, through: date) -> list[dict[str, object]]:
    """Load every landed batch up to `through` that the raw layer does not hold yet (history catch-up).

    Quarantined batches are left alone: they come back only through an explicit `load_batch`.
    """
    ensure_raw_layer(warehouse)
    with connect(warehouse, read_only=True) as con:
        known = {row[0] for row in con.execute("select batch_date from raw.batches").fetchall()}
    return [
        load_batch(warehouse, landing_dir, d)
        for d in batch_dates(landing_dir)
        if d <= through and d not in known
    ]
