"""Land daily batch files in the warehouse's raw layer (raw contract v2).

The raw layer keeps every landed row as it came (typed, plus where it came from: source_file,
source_row, source_format). Loading a batch is idempotent: the batch's rows are replaced in one
transaction, so re-running a day never duplicates it, and loading the same file again is reported as
a replay. The landing file itself is never moved or changed; quarantine copies it.

Before anything is written the whole file is parsed (personaflow/ingest/csvfile.py) and type-checked
(personaflow/ingest/raw_types.py), so a bad file leaves the warehouse exactly as it was and the error names
the file, the column and the line.

The warehouse is DuckDB (the embedded default) or PostgreSQL (personaflow/core/warehouse.py), with one DDL
text for both; on Spark the same typed rows land in Parquet tables partitioned by day
(personaflow/ingest/spark_load.py, which every function here hands a Spark warehouse to). The text is
parsed and typed in a local in-memory DuckDB on every engine; the typed
rows reach the warehouse as one registered table per load (one COPY on PostgreSQL) and land with
`insert ... select` inside the day's transaction.

A batch day also loads the live events the API accepted that day (`landing/live/events_<day>.jsonl`,
see personaflow/ingest/live.py) into raw.events with source_format 'live', inside the same transaction;
returns included (event_type 'return').
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from personaflow.core import warehouse as wh
from personaflow.core.landing import batch_dates, batch_path, live_path
from personaflow.core.warehouse import Location
from personaflow.ingest.csvfile import IngestError, read_csv_text, write_rejects
from personaflow.ingest.raw_types import (
    EVENT_TYPES,
    RAW_COLUMNS,
    V2_TYPES,
    check_types,
    live_table,
    typed_events,
)

__all__ = ["IngestError", "connect", "ensure_raw_layer", "load_batch", "load_dimensions", "load_pending"]

# The landing layout: the contract's eight columns, then v2's optional ones (absent -> NULL).
LANDING_COLUMNS = (*EVENT_TYPES, *V2_TYPES)
USER_TYPES = {"user_id": "varchar", "signup_date": "date", "country": "varchar", "age_band": "varchar"}
ITEM_TYPES = {"item_id": "varchar", "category": "varchar", "brand": "varchar", "price": "double precision"}
# Columns a dimension file may have (absent -> NULL): the item's name, which shops want in answers.
OPTIONAL_TYPES = {"users": {}, "items": {"description": "varchar"}}
DEFAULT_SOURCE_FORMAT = "synthetic"  # files in our layout without a source_format column

RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.events (
    event_id varchar, user_id varchar, item_id varchar, event_type varchar, event_ts timestamp,
    session_id varchar, quantity integer, price double precision,
    batch_date date, source_file varchar, loaded_at timestamp,
    order_id varchar, description varchar, country varchar, source_format varchar, source_row bigint
);
create table if not exists raw.users (user_id varchar, signup_date date, country varchar, age_band varchar);
create table if not exists raw.items (
    item_id varchar, category varchar, brand varchar, price double precision, description varchar
); create table if not exists raw.batches (
    batch_date date primary key, source_file varchar, row_count bigint, sha256 varchar,
    status varchar, loaded_at timestamp
);
"""
# A warehouse made before contract v2 gets the new columns appended, in contract order.
MIGRATE_V2 = "".join(
    f"alter table raw.events add column if not exists {c} {t};\n" for c, t in V2_TYPES.items()
) + "alter table raw.items add column if not exists description varchar;\n" + "".join(
    # a re-delivered day remembers the load it replaced until it passes validation
    # (personaflow/quality/quarantine.py
    # puts that load back if it fails); quarantined_sha256 is a re-delivery that failed and is not retried
    f"alter table raw.batches add column if not exists {c};\n"
    for c in ("previous_rows bigint", "previous_sha256 varchar", "quarantined_sha256 varchar")
) + """create table if not exists raw.replaced_events as
    select *, null::timestamp as replaced_at, null::varchar as replaced_sha256 from raw.events limit 0;
"""


COLUMN_LIST = ", ".join(RAW_COLUMNS)


def connect(warehouse: Location, read_only: bool = False) -> wh.DuckConnection | wh.PgConnection:
    return wh.connect(warehouse, read_only=read_only)


def ensure_raw_layer(warehouse: Location) -> None:
    if wh.is_spark(warehouse):
        from personaflow.ingest import spark_load

        with connect(warehouse) as con:
            spark_load.ensure_raw_layer(con)
        return
    with connect(warehouse) as con:
        con.execute(RAW_DDL)
        con.execute(MIGRATE_V2)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_dimensions(warehouse: Location, landing_dir: Path) -> dict[str, int | str]:
    """Replace raw.users and raw.items with the landed dimension files (a full snapshot each time).

    An absent file leaves its table as it is (event-only sources have no dimension files); extra
    columns in a file are ignored.
    """
    ensure_raw_layer(warehouse)
    counts: dict[str, int | str] = {}
    spark_tables: dict[str, pa.Table] = {}  # on Spark: written after the loop, each one overwrite
    with connect(warehouse) as con, duckdb.connect() as local:
        for table, types in (("users", USER_TYPES), ("items", ITEM_TYPES)):
            path = landing_dir / f"{table}.csv"
            if not path.exists():
                counts[f"raw.{table}"] = "no landing file; unchanged"
                continue
            optional = OPTIONAL_TYPES[table]
            text = read_csv_text(path, required=list(types), optional=list(optional))
            types = {**types, **{c: k for c, k in optional.items() if c in text.columns}}
            view = text.table.select(list(types)).append_column("_line", pa.array(text.lines, pa.int64()))
            local.register("dimension", view)
            check_types(local, "dimension", types, path)
            exprs = [
                f"nullif({c}, '')" if kind == "varchar" else f"cast(nullif(trim({c}), '') as {kind})"
                for c, kind in types.items()
            ]
            typed = local.sql(
                f"select {', '.join(f'{e} as {c}' for e, c in zip(exprs, types, strict=True))} from dimension"
            ).to_arrow_table()
            local.unregister("dimension")
            if con.engine == "spark":
                spark_tables[table] = typed
                continue
            columns = ", ".join(types)
            con.register("dimension", typed)
            try:
                con.begin()
                con.execute(f"delete from raw.{table}")
                con.execute(f"insert into raw.{table} ({columns}) select {columns} from dimension")
                con.commit()
            except wh.ERRORS as exc:
                con.rollback()
                raise IngestError(f"{path}: {exc}") from exc
            finally:
                con.unregister("dimension")
            counts[f"raw.{table}"] = con.execute(f"select count(*) as n from raw.{table}").fetchall()[0][0]
        if spark_tables:
            from personaflow.ingest import spark_load

            counts.update(spark_load.load_dimensions(con, spark_tables))
    return counts


Keep = Callable[[pa.Table], pa.Table]


def load_batch(
    warehouse: Location, landing_dir: Path, batch_date: date, max_rejects: int = 0, keep: Keep | None = None
) -> dict[str, object]:
    """Load one day's events file, and that day's live events, into raw.events, replacing any earlier
    load of that day. Up to `max_rejects` unparseable lines go to `events_<day>.rejects.jsonl`. `keep`
    filters the rows first (the stage drops forgotten customers: personaflow/pipeline/forget.py)."""
    with connect(warehouse) as con, duckdb.connect() as local:
        if con.engine == "spark":
            from personaflow.ingest import spark_load

            loaded = spark_load.load_days(
                con, local, landing_dir, [batch_date], _typed_rows, sha256, max_rejects, keep
            )
            return loaded[0]
        con.execute(RAW_DDL)
        con.execute(MIGRATE_V2)
        return _load_day(con, local, landing_dir, batch_date, max_rejects, keep)


def _load_day(
    con: wh.DuckConnection | wh.PgConnection,
    local: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    batch_date: date,
    max_rejects: int,
    keep: Keep | None,
) -> dict[str, object]:
    path = batch_path(landing_dir, batch_date)
    text = read_csv_text(path, required=list(EVENT_TYPES), optional=list(V2_TYPES), max_rejects=max_rejects)
    present = [c for c in LANDING_COLUMNS if c in text.columns]
    table = text.table.select(present).append_column("_line", pa.array(text.lines, pa.int64()))
    live_file = live_path(landing_dir, batch_date)
    live = live_table(live_file)
    if keep is not None:
        table, live = keep(table), keep(live)
    digest = sha256(path)
    rows = _typed_rows(local, table, live, present, path, live_file, batch_date)
    found = con.execute(
        "select sha256, status, row_count, previous_rows, previous_sha256 from raw.batches "
        "where batch_date = $1",
        [batch_date],
    ).fetchall()
    before = found[0] if found else None
    # A different file for a day that is loaded: keep what it replaces until it passes validation.
    redelivery = bool(before and before[1] == "loaded" and before[0] != digest)
    # A load still waiting for its validation (loaded again, or re-delivered once more) keeps the last
    # accepted load as the one to compare with and to put back: a retried task or a second re-delivery
    # must not make the unvalidated rows the day's reference.
    held = bool(before and before[1] == "loaded" and before[4] is not None)
    previous = (int(before[3]), before[4]) if held else _previous(before) if redelivery else (None, None)
    con.register("landing_rows", rows)
    try:
        con.begin()
        if redelivery and not held:
            con.execute("delete from raw.replaced_events where batch_date = $1", [batch_date])
            con.execute(
                f"insert into raw.replaced_events ({COLUMN_LIST}, replaced_at, replaced_sha256) "
                f"select {COLUMN_LIST}, cast(now() as timestamp), cast($1 as varchar) from raw.events "
                "where batch_date = $2",
                [before[0], batch_date],
            )
        con.execute("delete from raw.events where batch_date = $1", [batch_date])
        con.execute(f"insert into raw.events ({COLUMN_LIST}) select {COLUMN_LIST} from landing_rows")
        con.execute("delete from raw.batches where batch_date = $1", [batch_date])
        con.execute(
            "insert into raw.batches (batch_date, source_file, row_count, sha256, status, loaded_at, "
            "previous_rows, previous_sha256) "
            "values ($1, $2, $3, $4, 'loaded', cast(now() as timestamp), $5, $6)",
            [batch_date, str(path), rows.num_rows, digest, *previous],
        )
        con.commit()
        if con.engine == "postgres":
            # Fresh planner statistics for the new day: without them PostgreSQL expects ~1 row for it
            # and the batch suite's self-joins ran as nested loops (175 s instead of ~7 s at 1 M events).
            con.execute("analyze raw.events")
    except wh.ERRORS as exc:
        con.rollback()
        raise IngestError(f"{path}: {exc}") from exc
    finally:
        con.unregister("landing_rows")
    rejects = write_rejects(text.rejects, path.with_name(f"{path.stem}.rejects.jsonl"))
    returns = pc.sum(pc.equal(live.column("event_type"), "return")).as_py() if live.num_rows else 0
    return {
        "batch_date": batch_date.isoformat(),
        "rows": int(rows.num_rows),
        "source_file": str(path),
        "sha256": digest,
        # Same file as the last load of this day: the rows are the same ones again, not new ones.
        "replay": bool(before and before[0] == digest),
        "previous_status": before[1] if before else None,
        "replaces_rows": previous[0] if redelivery or held else None,
        "live_rows": live.num_rows,
        "live_returns": int(returns or 0),
        "ignored_columns": [c for c in text.columns if c not in LANDING_COLUMNS],
        **text.report(),
        "rejects_file": str(rejects) if rejects else None,
    }


def _typed_rows(
    local: duckdb.DuckDBPyConnection, table: pa.Table, live: pa.Table, present: list[str], path: Path,
    live_file: Path, batch_date: date,
) -> pa.Table:
    """The day's file and live rows, checked and typed in the local DuckDB (nothing touched the
    warehouse yet: a bad value raises here and leaves it as it was)."""
    all_types = {**EVENT_TYPES, **V2_TYPES}
    local.register("landing_batch", table)
    local.register("live_batch", live)
    try:
        check_types(local, "landing_batch", {c: all_types[c] for c in present}, path)
        check_types(
            local, "live_batch", {c: all_types[c] for c in live.column_names if c in all_types}, live_file
        )
        parts = [typed_events(local, "landing_batch", present, path, batch_date, DEFAULT_SOURCE_FORMAT)]
        if live.num_rows:
            parts.append(typed_events(local, "live_batch", live.column_names, live_file, batch_date, "live"))
    finally:
        local.unregister("landing_batch")
        local.unregister("live_batch")
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _previous(before: tuple) -> tuple[int, str]:
    """(row_count, sha256) of the load a re-delivery replaces, from its raw.batches row."""
    digest, _status, rows, *_held = before
    return int(rows), digest


def load_pending(
    warehouse: Location, landing_dir: Path, through: date, since: date | None = None, keep: Keep | None = None
) -> list[dict[str, object]]:
    """Load every landed batch in [since, through] that the raw layer does not hold yet, or holds from a
    different file (history catch-up, backfill of a date range, a re-imported export).

    Quarantined batches are left alone: they come back only through an explicit `load_batch`. One
    connection for all days (opening and checkpointing the file per day costs more than a small day's
    load); each day is still its own transaction.
    """
    with connect(warehouse) as con, duckdb.connect() as local:
        if con.engine == "spark":
            return _load_pending_spark(con, local, landing_dir, through, since, keep)
        con.execute(RAW_DDL)
        con.execute(MIGRATE_V2)
        known = {
            r[0]: r[1:]
            for r in con.execute(
                "select batch_date, sha256, status, quarantined_sha256 from raw.batches"
            ).fetchall()
        }
        loaded = []
        for day in batch_dates(landing_dir):
            if day > through or (since and day < since):
                continue
            if day in known:
                digest, status, refused = known[day]
                landed = sha256(batch_path(landing_dir, day))
                if status == "quarantined" or landed in (digest, refused):
                    continue
            loaded.append(_load_day(con, local, landing_dir, day, 0, keep))
    return loaded


def _load_pending_spark(
    con: Any, local: duckdb.DuckDBPyConnection, landing_dir: Path, through: date, since: date | None,
    keep: Keep | None,
) -> list[dict[str, object]]:
    """load_pending on Spark: the same choice of days, loaded in as few partition overwrites as the
    driver's bound allows (personaflow/ingest/spark_load.py), not one Spark job per day."""
    from personaflow.ingest import spark_load

    spark_load.ensure_raw_layer(con)
    known = spark_load.batches(con).set_index("batch_date")
    days = []
    for day in batch_dates(landing_dir):
        if day > through or (since and day < since):
            continue
        if day in known.index:
            row = known.loc[day]
            landed = sha256(batch_path(landing_dir, day))
            if row["status"] == "quarantined" or landed in (row["sha256"], row["quarantined_sha256"]):
                continue
        days.append(day)
    return spark_load.load_days(con, local, landing_dir, days, _typed_rows, sha256, 0, keep)
