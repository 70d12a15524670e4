"""Every batch validation's outcome, kept in the warehouse: `raw.batch_validations`.

One row per (batch day, suite), replaced when the day is validated again, so the data-quality mart
(marts.data_quality_days) can show per day whether the batch passed, warned or failed, and why, next
to its fault counts; the nightly validation and the history import write the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.warehouse import Location
from personaflow.quality.checks import CheckResult

DDL = """
create schema if not exists raw;
create table if not exists raw.batch_validations (
    batch_date date, suite varchar, severity varchar, n_rows bigint, n_expectations integer,
    failed varchar, warnings varchar, data_docs varchar, validated_at timestamp
);
"""


def record_validations(
    warehouse: Location, outcomes: Iterable[tuple[date, str, CheckResult, str | None]]
) -> int:
    """Write (day, suite, result, data docs page) rows; returns how many."""
    now = datetime.now(UTC).replace(tzinfo=None)
    frame = pd.DataFrame(
        [
            {
                "batch_date": day, "suite": suite, "severity": r.severity, "n_rows": r.n_rows,
                "n_expectations": r.n_expectations,
                "failed": json.dumps([f.describe() for f in r.failures]) if r.failures else None,
                "warnings": json.dumps([f.describe() for f in r.warnings]) if r.warnings else None,
                "data_docs": docs, "validated_at": now,
            }  # fmt: skip
            for day, suite, r, docs in outcomes
        ]
    )
    if frame.empty:
        return 0
    con = wh.connect(warehouse)
    if con.engine == "spark":
        _replace_spark(con, frame)
        return len(frame)
    try:
        con.execute(DDL)
        con.register("outcomes", frame)
        con.begin()
        try:
            _replace(con)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        con.unregister("outcomes")
        con.close()
    return len(frame)


def _replace(con: wh.DuckConnection | wh.PgConnection) -> None:
    """The outcomes' (day, suite) rows replace any earlier ones (a day validated again)."""
    con.execute(
        "delete from raw.batch_validations v using outcomes o "
        "where v.batch_date = o.batch_date::date and v.suite = o.suite"
    )
    con.execute(
        "insert into raw.batch_validations (batch_date, suite, severity, n_rows, n_expectations, failed, "
        "warnings, data_docs, validated_at) select cast(batch_date as date), suite, severity, n_rows, "
        "cast(n_expectations as integer), cast(failed as varchar), cast(warnings as varchar), "
        "cast(data_docs as varchar), validated_at from outcomes"
    )


SPARK_COLUMNS = {
    "batch_date": "date", "suite": "string", "severity": "string", "n_rows": "bigint",
    "n_expectations": "int", "failed": "string", "warnings": "string", "data_docs": "string",
    "validated_at": "timestamp",
}  # fmt: skip


def _replace_spark(con, frame: pd.DataFrame) -> None:
    """Spark has no DELETE on Parquet tables: the table (one row per day and suite, small) is read to
    the driver, the outcomes' rows replace their (day, suite), and it is written back whole."""
    import pyarrow as pa

    con.execute("create schema if not exists raw")
    ddl = ", ".join(f"{c} {k}" for c, k in SPARK_COLUMNS.items())
    con.execute(f"create table if not exists raw.batch_validations ({ddl}) using parquet")
    names = list(SPARK_COLUMNS)
    old = con.execute(f"select {', '.join(names)} from raw.batch_validations").df()
    frame = frame.assign(batch_date=pd.to_datetime(frame["batch_date"]).dt.date)
    if len(old):
        replaced = old.set_index(["batch_date", "suite"]).index.isin(
            frame.set_index(["batch_date", "suite"]).index
        )
        frame = pd.concat([old[~replaced], frame[names]], ignore_index=True)
    kinds = {"date": pa.date32(), "string": pa.string(), "bigint": pa.int64(), "int": pa.int32(),
             "timestamp": pa.timestamp("us")}  # fmt: skip
    schema = pa.schema([(c, kinds[k]) for c, k in SPARK_COLUMNS.items()])
    con.register("outcomes", pa.Table.from_pandas(frame[names], schema=schema, preserve_index=False))
    try:
        con.execute(f"insert overwrite table raw.batch_validations select {', '.join(names)} from outcomes")
    finally:
        con.unregister("outcomes")
