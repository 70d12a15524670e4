"""Move a failed batch out of raw.events into quarantine.events, and keep its landing file as evidence.

Nothing is deleted from disk: the landing file stays where it is and a copy goes to
`quarantine_dir/<batch_date>/` with `reasons.json`. On Spark the day's partition moves the same way,
as whole-partition overwrites (`_quarantine_spark`). Rows move in one transaction of the warehouse
(DuckDB or PostgreSQL, the same SQL), so a crash leaves the batch either fully in raw or fully in
quarantine. Running it twice is harmless: the second
run finds no raw rows and leaves the quarantined ones as they are.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from personaflow.core import warehouse as wh
from personaflow.core.warehouse import Location
from personaflow.ingest.load import sha256

log = logging.getLogger(__name__)


def quarantine_batch(
    warehouse: Location, batch_date: date, quarantine_dir: Path, reasons: list[dict]
) -> Path:
    """Quarantine one batch; returns the folder holding the landing-file copy and reasons.json."""
    now = datetime.now(UTC).replace(tzinfo=None)  # TIMESTAMP columns here hold naive UTC
    reason_text = _summary(reasons)
    con = wh.connect(warehouse)
    try:
        found = con.execute(
            "SELECT source_file FROM raw.batches WHERE batch_date = $1", [batch_date]
        ).fetchall()
        row = found[0] if found else None
        if row is None:
            raise LookupError(
                f"batch {batch_date} has no row in raw.batches of {wh.describe(warehouse)}; "
                "nothing to quarantine"
            )
        source_file = row[0]
        target = quarantine_dir / batch_date.isoformat()
        copied = _keep_landing_file(source_file, target)
        _write_reasons(target, batch_date, source_file, copied, reasons, now)
        if con.engine == "spark":
            n_raw = _quarantine_spark(con, batch_date, now, reason_text)
            log.warning("batch %s quarantined: %d rows moved to quarantine.events (%s)",
                        batch_date, n_raw, reason_text)  # fmt: skip
            return target

        con.begin()
        try:
            con.execute("create schema if not exists quarantine")
            # Same columns as raw.events whatever they are today, plus when and why.
            con.execute(
                "create table if not exists quarantine.events as select *, "
                "cast(null as timestamp) as quarantined_at, cast(null as varchar) as reason "
                "from raw.events limit 0"
            )
            raw_columns = _add_new_raw_columns(con)
            [(n_raw,)] = con.execute(
                "select count(*) as n from raw.events where batch_date = $1", [batch_date]
            ).fetchall()
            if n_raw:
                # A re-loaded batch that fails again replaces its earlier quarantined copy.
                names = ", ".join(f'"{c}"' for c in raw_columns)
                con.execute("delete from quarantine.events where batch_date = $1", [batch_date])
                con.execute(
                    f"insert into quarantine.events ({names}, quarantined_at, reason) "
                    f"select {names}, cast($1 as timestamp), cast($2 as varchar) "
                    "from raw.events where batch_date = $3",
                    [now, reason_text, batch_date],
                )
                con.execute("delete from raw.events where batch_date = $1", [batch_date])
            con.execute("update raw.batches set status = 'quarantined' where batch_date = $1", [batch_date])
            restored = _restore_replaced(con, batch_date, raw_columns)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        con.close()
    log.warning(
        "batch %s quarantined: %d rows moved to quarantine.events (%s)", batch_date, n_raw, reason_text
    )
    if restored is not None:
        log.warning("batch %s: the earlier load (%d rows) it was to replace is back in raw.events",
                    batch_date, restored)  # fmt: skip
    return target


def _quarantine_spark(con: Any, batch_date: date, now: datetime, reason: str) -> int:
    """Spark (no transactions, no DELETE on Parquet tables): the day's raw.events partition is copied
    into quarantine.events' partition of that day (an `insert overwrite`: a batch quarantined again
    replaces its earlier copy), then the raw partition is dropped and raw.batches marked. Each step
    is a whole-partition overwrite, so re-running after a crash gives the same tables; the rows are
    never in neither table. Memory: Spark moves the rows; the driver holds raw.batches (a row a day).
    (The DuckDB/PostgreSQL put-back of a replaced load does not apply: the Spark loader keeps no
    raw.replaced_events.)"""
    from personaflow.ingest.spark_load import set_status

    columns = [r[0] for r in con.execute("describe raw.events").fetchall()]
    columns = [c for c in columns[: columns.index("batch_date") + 1] if c != "batch_date"]
    names = ", ".join(f"`{c}`" for c in columns)
    con.execute("create schema if not exists quarantine")
    con.execute(
        "create table if not exists quarantine.events using parquet partitioned by (batch_date) as "
        f"select {names}, cast(null as timestamp) as quarantined_at, cast(null as string) as reason, "
        "batch_date from raw.events limit 0"
    )
    [(n_raw,)] = con.execute("select count(*) from raw.events where batch_date = $1", [batch_date]).fetchall()
    if n_raw:
        con.execute(
            f"insert overwrite table quarantine.events partition (batch_date) select {names}, "
            "cast($1 as timestamp), cast($2 as string), batch_date from raw.events where batch_date = $3",
            [now, reason, batch_date],
        )
        day = batch_date.isoformat()
        con.execute(f"alter table raw.events drop if exists partition (batch_date = '{day}')")
    set_status(con, batch_date, "quarantined")
    return int(n_raw)


def _holds_replaced(con: wh.DuckConnection | wh.PgConnection) -> bool:
    """Whether raw.batches can hold a replaced load (a warehouse the loader never migrated cannot)."""
    columns = {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = 'raw' "
            "and table_name = 'batches'"
        ).fetchall()
    }
    return "previous_sha256" in columns


def accept_batch(warehouse: Location, batch_date: date) -> bool:
    """A validation passed (warnings included): the day's load is now its reference. Forget the load it
    replaced, so a later re-delivery is compared with this one. True if a held load was released."""
    with wh.connect(warehouse) as con:
        if con.engine == "spark" or not _holds_replaced(con):  # the Spark loader holds no replaced load
            return False
        held = con.execute(
            "select previous_sha256 from raw.batches where batch_date = $1 and previous_sha256 is not null",
            [batch_date],
        ).fetchall()
        if not held:
            return False
        con.begin()
        con.execute("delete from raw.replaced_events where batch_date = $1", [batch_date])
        con.execute(
            "update raw.batches set previous_sha256 = null, previous_rows = null where batch_date = $1",
            [batch_date],
        )
        con.commit()
    return True


def _restore_replaced(con: wh.DuckConnection | wh.PgConnection, batch_date: date, raw_columns: list[str]
                      ) -> int | None:
    """A failed re-delivery never destroys a good day: put back the load it replaced (held by the loader
    in raw.replaced_events) and mark the failed file's digest so it is not loaded again unasked.
    Returns the rows put back, or None when the batch replaced nothing."""
    if not _holds_replaced(con):
        return None
    [(previous_sha, previous_rows, failed_sha)] = con.execute(
        "select previous_sha256, previous_rows, sha256 from raw.batches where batch_date = $1", [batch_date]
    ).fetchall()
    if previous_sha is None:
        return None
    # raw.replaced_events was made from raw.events by the loader: every raw column is there
    names = ", ".join(f'"{c}"' for c in raw_columns)
    con.execute(
        f"insert into raw.events ({names}) select {names} "
        "from raw.replaced_events where batch_date = $1 and replaced_sha256 = $2",
        [batch_date, previous_sha],
    )
    con.execute("delete from raw.replaced_events where batch_date = $1", [batch_date])
    con.execute(
        "update raw.batches set status = 'loaded', sha256 = previous_sha256, row_count = previous_rows, "
        "quarantined_sha256 = $1, previous_sha256 = null, previous_rows = null where batch_date = $2",
        [failed_sha, batch_date],
    )
    return int(previous_rows or 0)


def _add_new_raw_columns(con: wh.DuckConnection | wh.PgConnection) -> list[str]:
    """quarantine.events was made from raw.events as it was then: add columns raw gained since (contract
    v2 appended order_id, description, ...), so moving rows by name keeps every column. Returns the
    columns of raw.events. (information_schema's data_type is each engine's own spelling of the type.)"""
    columns = (
        "select column_name, data_type from information_schema.columns "
        "where table_schema = $1 and table_name = 'events' order by ordinal_position"
    )
    have = {name for name, _ in con.execute(columns, ["quarantine"]).fetchall()}
    raw = con.execute(columns, ["raw"]).fetchall()
    for name, data_type in raw:
        if name not in have:
            con.execute(f'alter table quarantine.events add column "{name}" {data_type}')
    return [name for name, _ in raw]


def _keep_landing_file(source_file: str | None, target: Path) -> Path | None:
    """Copy the landing file into `target`; an existing copy with other content is kept, never replaced."""
    target.mkdir(parents=True, exist_ok=True)
    if not source_file or not Path(source_file).is_file():
        # Still quarantine the rows: losing the evidence file must not let bad rows reach the marts.
        log.error(
            "landing file %r of the quarantined batch is missing; only rows are quarantined", source_file
        )
        return None
    source = Path(source_file)
    digest = sha256(source)
    dest = target / source.name
    if dest.exists() and sha256(dest) != digest:
        dest = target / f"{source.stem}.{digest[:12]}{source.suffix}"
    if not dest.exists():
        shutil.copy2(source, dest)
    return dest


def _write_reasons(
    target: Path,
    batch_date: date,
    source_file: str | None,
    copy: Path | None,
    reasons: list[dict],
    now: datetime,
) -> None:
    payload: dict[str, Any] = {
        "batch_date": batch_date.isoformat(),
        "quarantined_at": now.isoformat(sep=" "),
        "source_file": source_file,
        "copy": copy.name if copy else None,
        "reasons": reasons,
    }
    path = target / "reasons.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier.get("reasons") == json.loads(json.dumps(reasons, default=str)):
            return  # same failure again (a retry): keep the first record and its timestamp
        # A re-loaded batch failed differently: keep the earlier record next to the new one.
        stamp = str(earlier.get("quarantined_at", "earlier")).replace(" ", "T").replace(":", "")
        path.rename(target / f"reasons.{stamp}.json")
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _summary(reasons: list[dict]) -> str:
    parts = []
    for r in reasons:
        where = f"{r.get('table', '')}.{r['column']}" if r.get("column") else r.get("table", "")
        parts.append(f"{r.get('expectation', 'unknown')}({where})")
    return "; ".join(parts) or "unspecified"


def quarantine_table_batch(
    warehouse: Location, table: str, ddl: str, rows: Any, quarantine_dir: Path, result: Any
) -> Path:
    """Put a failed batch of a shop table (`rows`: raw.<table>'s columns with its batch_id) into
    quarantine.<table>, never into raw.<table>, in one transaction (a re-run replaces the batch), and
    write `reasons.json` and `rows.jsonl` under quarantine_dir/<table>/<batch_id>/. `ddl` creates the
    raw table when missing (the quarantine table copies its columns). Returns that folder."""
    import pyarrow as pa

    now = datetime.now(UTC).replace(tzinfo=None)
    batch_id = str(rows["batch_id"].iloc[0])
    target = quarantine_dir / table / batch_id
    target.mkdir(parents=True, exist_ok=True)
    reasons = [f.describe() for f in result.failures]
    frame = pa.Table.from_pandas(rows, preserve_index=False)
    cols = ", ".join(rows.columns)
    with wh.connect(warehouse) as con:
        con.execute(ddl)
        con.execute("create schema if not exists quarantine")
        con.execute(
            f"create table if not exists quarantine.{table} as select *, cast(null as timestamp) as "
            f"quarantined_at, cast(null as varchar) as reason from raw.{table} limit 0"
        )
        con.register("failed_rows", frame)
        con.begin()
        try:
            con.execute(f"delete from quarantine.{table} where batch_id = $1", [batch_id])
            con.execute(
                f"insert into quarantine.{table} ({cols}, quarantined_at, reason) "
                f"select {cols}, cast($1 as timestamp), cast($2 as varchar) from failed_rows",
                [now, "; ".join(reasons)],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.unregister("failed_rows")
    reasons_doc = {"batch_id": batch_id, "quarantined_at": now.isoformat(), "reasons": reasons,
                   "result": result.to_dict()}  # fmt: skip
    (target / "reasons.json").write_text(json.dumps(reasons_doc, indent=2, default=str))
    with (target / "rows.jsonl").open("w") as handle:
        for record in rows.drop(columns=["loaded_at"]).to_dict(orient="records"):
            handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    return target
