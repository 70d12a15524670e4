"""Pipeline stages: validate one raw batch (quarantine + alert on failure) and validate the marts.

Both take explicit paths and addresses (no settings reads) and return a summary of plain types, which
Airflow can pass through XCom. Severities (personaflow/quality/suites.py):
- critical failures: the batch is quarantined, a FAILED alert goes out (or is kept as .eml when SMTP
  is down) and `DataQualityError` is raised, so the task fails on the data, never on the mailer;
- warnings only: a WARNING alert goes out and the summary is returned: the run goes on;
- notices: in the summary, the JSON report and the GX Data Docs only.
Every run writes `reports_dir/quality/<suite>_<day>.json` and adds its page to the Data Docs site.

On a PostgreSQL warehouse the batch suite runs in the database (GX's PostgreSQL data source:
personaflow/quality/sql_source.py), on DuckDB over the day's rows in pandas; everything else is the same SQL.
On Spark (PERSONAFLOW_WAREHOUSE_URL=spark) both suites run on Spark DataFrames through GX's Spark data
source (personaflow/quality/spark_source.py), and quarantine moves the day's partition
(personaflow/quality/quarantine.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.alert import SmtpConfig, send_alert
from personaflow.core.warehouse import Location
from personaflow.quality.alert import build_alert
from personaflow.quality.checks import CheckResult, check_marts_on_spark, check_raw_batch
from personaflow.quality.frames import read_frame
from personaflow.quality.quarantine import accept_batch, quarantine_batch
from personaflow.quality.records import record_validations
from personaflow.quality.spark_source import SparkBatch
from personaflow.quality.sql_checks import check_marts_in_warehouse
from personaflow.quality.sql_source import SqlBatch
from personaflow.quality.suites import Thresholds

__all__ = ["DataQualityError", "SmtpConfig", "validate_batch", "validate_marts"]

log = logging.getLogger(__name__)
MART_TABLES = ("user_features", "item_features", "interactions", "sessions")
REQUIRED_MARTS = ("user_features", "item_features")


class DataQualityError(Exception):
    """Raised when a suite fails; the message names every failed expectation and column."""

    def __init__(
        self,
        message: str,
        result: CheckResult | None = None,
        alert_sent: bool = False,
        eml_path: Path | None = None,
        quarantine_path: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.result = result
        self.alert_sent = alert_sent
        self.eml_path = eml_path
        self.quarantine_path = quarantine_path


def validate_batch(
    warehouse: Location,
    batch_date: date | str,
    quarantine_dir: Path,
    reports_dir: Path,
    smtp: SmtpConfig,
    *,
    now: datetime | None = None,
    limits: Thresholds | None = None,
) -> dict[str, Any]:
    """Check raw.events rows of `batch_date` by the rules of their source format; on a critical
    failure quarantine the batch, alert, and raise; on warnings alert and return."""
    batch_date = _as_date(batch_date)
    limits = limits or Thresholds()
    started = time.perf_counter()
    with _read_only(warehouse) as con:
        # select *: previous_rows exists only in warehouses the loader migrated (personaflow/ingest/load.py)
        found = read_frame(con, "select * from raw.batches where batch_date = $1", [batch_date])
        batch = [{k: None if pd.isna(v) else v for k, v in r.items()} for r in found.to_dict("records")]
        if not batch:
            raise LookupError(
                f"batch {batch_date} has no row in raw.batches of {wh.describe(warehouse)}: load it first"
            )
        day = [batch_date]
        [(n_rows,)] = con.execute(
            "select count(*) as n from raw.events where batch_date = $1", day
        ).fetchall()
        # The day's landing format (live rows ride along); an empty batch (a closed day) has no rows to
        # tell it: use the shop's latest one.
        formats = con.execute(
            "select source_format, count(*) as n from raw.events where batch_date = $1 "
            "and source_format <> 'live' group by source_format order by n desc, source_format limit 1",
            [batch_date],
        ).fetchall()
        latest = con.execute(
            "select source_format from raw.events where batch_date < $1 and source_format <> 'live' "
            "order by batch_date desc limit 1",
            [batch_date],
        ).fetchall()
        trailing = con.execute(
            "select row_count from raw.batches where batch_date < $1 and status = 'loaded' and row_count > 0 "
            "order by batch_date desc limit $2",
            [batch_date, limits.trailing_batches],
        ).fetchall()
        if con.engine == "postgres":  # validated where it lies (personaflow/quality/sql_source.py)
            events: pd.DataFrame | SqlBatch | SparkBatch = SqlBatch(
                str(warehouse), "raw.events", "batch_date", batch_date, int(n_rows), key="event_id"
            )
        elif con.engine == "spark":  # the day's partition as a Spark DataFrame (spark_source.py)
            events = SparkBatch(
                warehouse, "raw.events", int(n_rows), "batch_date", batch_date, key="event_id"
            )
        else:
            events = read_frame(con, "select * from raw.events where batch_date = $1", [batch_date])
    source_file, row_count, status = batch[0]["source_file"], batch[0]["row_count"], batch[0]["status"]
    previous_rows = batch[0].get("previous_rows")
    if status == "quarantined" and not n_rows:
        # A retry after quarantine: the rows are gone, say so instead of alerting again.
        raise DataQualityError(
            f"batch {batch_date} was quarantined earlier (see {quarantine_dir / batch_date.isoformat()}); "
            f"fix the landing file and re-load it: personaflow ingest --date {batch_date}"
        )

    source_format = (formats or latest or [("synthetic",)])[0][0]
    result = check_raw_batch(
        events,
        batch_date,
        expected_rows=row_count,
        source_format=source_format,
        trailing_rows=[r[0] for r in trailing],
        now=now,
        limits=limits,
        docs_dir=reports_dir / "quality",
        previous_rows=previous_rows,
    )
    record_validations(warehouse, [(batch_date, "raw_events", result, result.docs)])
    report = _write_report(reports_dir, f"raw_events_{batch_date}", result)
    summary = {**_summary("raw_events", batch_date, result, started, report), "source_format": source_format}
    target = f"batch {batch_date}"
    if result.success:
        accept_batch(warehouse, batch_date)
        log.info(
            "batch %s (%s) passed %d expectations (%d rows, %d warnings)",
            batch_date, source_format, result.n_expectations, result.n_rows, len(result.warnings),
        )  # fmt: skip
        return {**summary, **_warn(result, "raw_events", target, smtp, reports_dir, _reload_hint(batch_date))}

    reasons = [asdict(f) for f in result.failures]
    quarantined: Path | None = None
    try:
        quarantined = quarantine_batch(warehouse, batch_date, quarantine_dir, reasons)
        kept = (
            "raw.batches.status set to 'quarantined'"
            if not previous_rows
            else f"the earlier load of this day ({previous_rows} rows) put back in raw.events: a bad "
            "re-delivery never replaces a good day"
        )
        note = (
            f"The batch's {n_rows} rows were moved from raw.events to quarantine.events and "
            f"{kept}.\nLanding file {source_file} is unchanged; a copy and "
            f"reasons.json are in {quarantined}.\n{_reload_hint(batch_date)}"
        )
        quarantine_error = None
    except Exception as exc:  # the alert must still go out, then the task fails on the data
        quarantine_error = exc
        note = f"QUARANTINE FAILED ({type(exc).__name__}: {exc}); the bad rows are still in raw.events."
    message = build_alert(
        stage="raw_events",
        target=target,
        result=result,
        sender=smtp.sender,
        recipients=smtp.recipients,
        note=note,
    )
    sent, eml = send_alert(message, smtp, reports_dir)
    raise DataQualityError(
        f"raw.events batch {batch_date} failed {_failure_list(result)}; "
        + (f"quarantined to {quarantined}" if quarantined else f"quarantine failed: {quarantine_error}")
        + f"; alert {'sent' if sent else 'NOT sent (SMTP down)'}, kept at {eml}",
        result=result,
        alert_sent=sent,
        eml_path=eml,
        quarantine_path=quarantined,
    ) from quarantine_error


def validate_marts(
    warehouse: Location,
    as_of: date | str,
    reports_dir: Path,
    smtp: SmtpConfig,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check the marts built for `as_of` (user_features and item_features, plus interactions and
    sessions when built); alert and raise on a critical failure, alert on warnings."""
    as_of = _as_date(as_of)
    started = time.perf_counter()
    with _read_only(warehouse) as con:
        present = _mart_tables(con)
        missing = [t for t in REQUIRED_MARTS if t not in present]
        if missing:
            raise LookupError(
                f"marts {', '.join(missing)} missing in {wh.describe(warehouse)}: run the transform first"
            )
        marts = [t for t in MART_TABLES if t in present]
        if con.engine == "spark":  # GX's Spark engine on the marts' DataFrames (spark_source.py)
            counts = {t: con.execute(f"select count(*) from marts.{t}").fetchone()[0] for t in marts}
            batches = [SparkBatch(warehouse, f"marts.{t}", int(n)) for t, n in counts.items()]
            result = check_marts_on_spark(batches, as_of, now=now)
        else:
            # In the warehouse, as SQL aggregates: only counts and a few sample rows come back
            # (personaflow/quality/sql_checks.py; memory does not grow with the marts).
            result = check_marts_in_warehouse(con, marts, as_of, now=now)
    report = _write_report(reports_dir, f"marts_{as_of}", result)
    summary = _summary("marts", as_of, result, started, report)
    note = "The marts were built but failed their checks: features and training must not use them."
    if result.success:
        log.info("marts as of %s passed %d expectations", as_of, result.n_expectations)
        return {**summary, **_warn(result, "marts", f"as_of {as_of}", smtp, reports_dir, "")}
    message = build_alert(
        stage="marts", target=f"as_of {as_of}", result=result, sender=smtp.sender, recipients=smtp.recipients,
        note=note,
    )  # fmt: skip
    sent, eml = send_alert(message, smtp, reports_dir)
    raise DataQualityError(
        f"marts as of {as_of} failed {_failure_list(result)}; "
        f"alert {'sent' if sent else 'NOT sent (SMTP down)'}, kept at {eml}",
        result=result,
        alert_sent=sent,
        eml_path=eml,
    )


def _warn(
    result: CheckResult, stage: str, target: str, smtp: SmtpConfig, reports_dir: Path, hint: str
) -> dict[str, Any]:
    """A passed suite with warnings: a WARNING alert, and the run goes on."""
    if not result.warnings:
        return {"alert_sent": False}
    message = build_alert(
        stage=stage, target=target, result=result, sender=smtp.sender, recipients=smtp.recipients,
        note="Nothing was quarantined and the run goes on; please look at the warnings below. " + hint,
    )  # fmt: skip
    sent, eml = send_alert(message, smtp, reports_dir)
    log.warning("%s %s passed with %d warning(s); alert sent=%s", stage, target, len(result.warnings), sent)
    return {"alert_sent": sent, "alert_eml": str(eml)}


def _reload_hint(day: date) -> str:
    return (
        f"After fixing the landing file, load it again with: personaflow ingest --date {day}\n"
        f"Tonight's report (rendered when the run ends): reports/nightly/report_{day}.html"
    )


@contextmanager
def _read_only(warehouse: Location) -> Iterator[wh.DuckConnection | wh.PgConnection]:
    # Short-lived and read-only so the validation never holds DuckDB's single-writer lock.
    if not wh.is_spark(warehouse) and not wh.is_postgres(warehouse) and not Path(warehouse).is_file():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist")
    con = wh.connect(warehouse, read_only=True)
    try:
        yield con
    finally:
        con.close()


def _mart_tables(con: wh.DuckConnection | wh.PgConnection) -> set[str]:
    if con.engine == "spark":  # Spark 3.5 has no information_schema: its catalog lists them
        try:
            return {r[1] for r in con.execute("show tables in marts").fetchall() if not r[2]}
        except wh.MISSING_TABLE:  # no marts schema yet
            return set()
    rows = con.execute("select table_name from information_schema.tables where table_schema = 'marts'")
    return {r[0] for r in rows.fetchall()}


def _as_date(value: date | str) -> date:
    # Airflow templates hand dates over as 'YYYY-MM-DD' strings.
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _failure_list(result: CheckResult) -> str:
    items = [
        f"{f.expectation}({f.table}.{f.column})" if f.column else f"{f.expectation}({f.table})"
        for f in result.failures
    ]
    return f"{len(items)} of {result.n_expectations} expectations: " + ", ".join(items)


def _write_report(reports_dir: Path, name: str, result: CheckResult) -> Path:
    path = reports_dir / "quality" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def _label(f) -> str:
    return f"{f.expectation}:{f.table}.{f.column or ''}"


def _summary(stage: str, day: date, result: CheckResult, started: float, report: Path) -> dict[str, Any]:
    return {
        "stage": stage,
        "date": day.isoformat(),
        "success": result.success,
        "severity": result.severity,
        "rows": result.n_rows,
        "expectations": result.n_expectations,
        "failed": [_label(f) for f in result.failures],
        "warnings": [_label(f) for f in result.warnings],
        "notices": [f"{_label(f)} {f.observed}" for f in result.notices],
        "seconds": round(time.perf_counter() - started, 3),
        "report": str(report),
        "data_docs": result.docs,
    }
