"""Pipeline stages: validate one raw batch (quarantine + alert on failure) and validate the marts.

Both take explicit paths and addresses (no settings reads) and return a summary of plain types, which
Airflow can pass through XCom. A failure raises `DataQualityError` after the alert went out (or was
kept as .eml when SMTP is down), so the task fails on the data, never on the mailer.
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

import duckdb

from quality.alert import SmtpConfig, build_alert, send_alert
from quality.checks import CheckResult, check_marts, check_raw_batch
from quality.quarantine import quarantine_batch

__all__ = ["DataQualityError", "SmtpConfig", "validate_batch", "validate_marts"]

log = logging.getLogger(__name__)


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
    warehouse: Path, batch_date: date | str, quarantine_dir: Path, reports_dir: Path, smtp: SmtpConfig
) -> dict[str, Any]:
    """Check raw.events rows of `batch_date`; on failure quarantine the batch, alert, and raise."""
    batch_date = _as_date(batch_date)
    started = time.perf_counter()
    with _read_only(warehouse) as con:
        batch = con.execute(
            "SELECT source_file, row_count, status FROM raw.batches WHERE batch_date = ?", [batch_date]
        ).fetchone()
        if batch is None:
            raise LookupError(f"batch {batch_date} has no row in raw.batches of {warehouse}: load it first")
        events = con.execute("SELECT * FROM raw.events WHERE batch_date = ?", [batch_date]).df()
    source_file, row_count, status = batch
    if status == "quarantined" and events.empty:
        # A retry after quarantine: the rows are gone, say so instead of alerting again.
        raise DataQualityError(
            f"batch {batch_date} was quarantined earlier (see {quarantine_dir / batch_date.isoformat()}); "
            "re-load a fixed landing file to validate it again"
        )

    result = check_raw_batch(events, batch_date, expected_rows=row_count)
    report = _write_report(reports_dir, f"raw_events_{batch_date}", result)
    summary = _summary("raw_events", batch_date, result, started, report)
    if result.success:
        log.info(
            "batch %s passed %d expectations (%d rows)", batch_date, result.n_expectations, result.n_rows
        )
        return summary

    reasons = [asdict(f) for f in result.failures]
    quarantined: Path | None = None
    try:
        quarantined = quarantine_batch(warehouse, batch_date, quarantine_dir, reasons)
        note = (
            f"The batch's {len(events)} rows were moved from raw.events to quarantine.events and "
            f"raw.batches.status set to 'quarantined'.\nLanding file {source_file} is unchanged; a copy and "
            f"reasons.json are in {quarantined}."
        )
        quarantine_error = None
    except Exception as exc:  # the alert must still go out, then the task fails on the data
        quarantine_error = exc
        note = f"QUARANTINE FAILED ({type(exc).__name__}: {exc}); the bad rows are still in raw.events."
    message = build_alert(
        stage="raw_events",
        target=f"batch {batch_date}",
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


def validate_marts(warehouse: Path, as_of: date | str, reports_dir: Path, smtp: SmtpConfig) -> dict[str, Any]:
    """Check marts.user_features and marts.item_features built for `as_of`; alert and raise on failure."""
    as_of = _as_date(as_of)
    started = time.perf_counter()
    with _read_only(warehouse) as con:
        users = con.execute("SELECT * FROM marts.user_features").df()
        items = con.execute("SELECT * FROM marts.item_features").df()
    result = check_marts(users, items, as_of)
    report = _write_report(reports_dir, f"marts_{as_of}", result)
    summary = _summary("marts", as_of, result, started, report)
    if result.success:
        log.info("marts as of %s passed %d expectations", as_of, result.n_expectations)
        return summary
    message = build_alert(
        stage="marts",
        target=f"as_of {as_of}",
        result=result,
        sender=smtp.sender,
        recipients=smtp.recipients,
        note="The marts were built but failed their checks: features and training must not use them.",
    )
    sent, eml = send_alert(message, smtp, reports_dir)
    raise DataQualityError(
        f"marts as of {as_of} failed {_failure_list(result)}; "
        f"alert {'sent' if sent else 'NOT sent (SMTP down)'}, kept at {eml}",
        result=result,
        alert_sent=sent,
        eml_path=eml,
    )


@contextmanager
def _read_only(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    # Short-lived and read-only so the validation never holds DuckDB's single-writer lock.
    if not Path(warehouse).is_file():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        yield con
    finally:
        con.close()


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


def _summary(stage: str, day: date, result: CheckResult, started: float, report: Path) -> dict[str, Any]:
    return {
        "stage": stage,
        "date": day.isoformat(),
        "success": result.success,
        "rows": result.n_rows,
        "expectations": result.n_expectations,
        "failed": [f"{f.expectation}:{f.table}.{f.column or ''}" for f in result.failures],
        "seconds": round(time.perf_counter() - started, 3),
        "report": str(report),
    }
