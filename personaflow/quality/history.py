"""Validate a whole imported history with the nightly batch suite, in one process: every day checked.

Importing a year of a shop's log must not mean 374 DAG runs, nor skipping validation. This runs the
same per-batch expectations (personaflow/quality/suites.py) day by day over one read of raw.events, without a
GX Data Docs page per day (rendering is what costs: ~0.45 s a day against ~0.15 s to validate). Pages are
rendered for the days that failed or warned, where a person will look. Then, as the nightly run does:
- a critical day is quarantined (its rows move to quarantine.events, the landing file is copied);
- one alert goes out for the whole history: the failed days, then the first failed day in detail;
- every day's outcome lands in raw.batch_validations (marts.data_quality_days shows it per day) and
  in one JSON report.
Unlike a nightly run, a failed day does not stop the build: its rows are out of raw.events, the other
days go on, and the summary says which days were left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.alert import SmtpConfig, send_alert
from personaflow.core.warehouse import Location
from personaflow.quality.alert import build_alert
from personaflow.quality.checks import CheckResult, check_raw_batch
from personaflow.quality.frames import read_frame
from personaflow.quality.quarantine import accept_batch, quarantine_batch
from personaflow.quality.records import record_validations
from personaflow.quality.suites import Thresholds

DOCS_FOR_AT_MOST = 20  # Data Docs pages rendered for failed/warned days (the rest: JSON report)
Progress = Callable[[str], None]


def validate_history(
    warehouse: Location,
    first: date,
    last: date,
    quarantine_dir: Path,
    reports_dir: Path,
    smtp: SmtpConfig,
    *,
    now: datetime | None = None,
    limits: Thresholds | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check every loaded batch in [first, last]; quarantine critical days, alert once, record all."""
    limits = limits or Thresholds()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    batches, events = _read(warehouse, first, last)
    by_day = {pd.Timestamp(d).date(): frame for d, frame in events.groupby("batch_date", sort=True)}
    results: dict[date, tuple[str, CheckResult]] = {}
    history: list[int] = []  # row counts of earlier loaded batches, oldest first
    fmt = "synthetic"
    for n, batch in enumerate(batches.itertuples(index=False), start=1):
        day = pd.Timestamp(batch.batch_date).date()
        frame = by_day.get(day, events.iloc[0:0])
        fmt = _format(frame, fmt)
        result = check_raw_batch(
            frame, day, expected_rows=int(batch.row_count), source_format=fmt,
            trailing_rows=history[::-1][: limits.trailing_batches], now=now, limits=limits,
            previous_rows=_int_or_none(getattr(batch, "previous_rows", None)),
        )  # fmt: skip
        results[day] = (fmt, result)
        history.append(int(batch.row_count))
        if progress and (n % 50 == 0 or n == len(batches)):
            progress(f"validated {n}/{len(batches)} days ({time.perf_counter() - started:.0f}s)")
    held = {pd.Timestamp(b.batch_date).date() for b in batches.itertuples(index=False)
            if _int_or_none(getattr(b, "previous_rows", None)) is not None}  # fmt: skip
    failed = [d for d, (_, r) in results.items() if r.failures]
    warned = [d for d, (_, r) in results.items() if r.warnings and not r.failures]
    shown = [*failed, *warned][:DOCS_FOR_AT_MOST]
    docs = _render_docs(by_day, batches, results, shown, now, limits, reports_dir)
    quarantined = {
        d: str(quarantine_batch(warehouse, d, quarantine_dir, [asdict(f) for f in results[d][1].failures]))
        for d in failed
    }
    for day, (_, result) in results.items():
        if not result.failures and day in held:
            accept_batch(warehouse, day)
    record_validations(warehouse, [(d, "raw_events", r, docs.get(d)) for d, (_, r) in results.items()])
    report = _write_report(reports_dir, first, last, results, docs, quarantined)
    alert = {}
    if failed or warned:
        alert = _alert(first, last, results, failed, warned, quarantined, smtp, reports_dir)
    return {
        "stage": "raw_events_history",
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "days": len(results),
        "rows": int(sum(r.n_rows for _, r in results.values())),
        "ok_days": sum(1 for _, r in results.values() if r.severity == "ok"),
        "warning_days": [d.isoformat() for d in warned],
        "failed_days": [d.isoformat() for d in failed],
        "quarantined": {d.isoformat(): p for d, p in quarantined.items()},
        "expectations": int(sum(r.n_expectations for _, r in results.values())),
        "report": str(report),
        "data_docs": {d.isoformat(): p for d, p in docs.items()},
        **alert,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _int_or_none(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _read(warehouse: Location, first: date, last: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One read of the whole range, on either engine: per-day GX queries in PostgreSQL would cost ~25
    round trips a day (a year of days: minutes), one read and pandas a few seconds."""
    with wh.connect(warehouse, read_only=True) as con:
        batches = read_frame(
            con,
            "select * from raw.batches where batch_date between $1 and $2 and status = 'loaded' "
            "order by batch_date",
            [first, last],
        )
        events = read_frame(
            con,
            "select * from raw.events where batch_date between $1 and $2 order by batch_date, source_row",
            [first, last],
        )
    return batches, events


def _format(frame: pd.DataFrame, earlier: str) -> str:
    """The day's landing format (live rows ride along); an empty day keeps the one before it."""
    formats = frame["source_format"].dropna()
    formats = formats[formats != "live"]
    return str(formats.mode().iloc[0]) if len(formats) else earlier


def _render_docs(by_day, batches, results, days, now, limits, reports_dir) -> dict[date, str]:
    """Data Docs pages for the days a person needs to open (the checks run again, with docs on)."""
    rows = {pd.Timestamp(b.batch_date).date(): b for b in batches.itertuples(index=False)}
    pages = {}
    for day in days:
        fmt, _ = results[day]
        frame = by_day.get(day, next(iter(by_day.values())).iloc[0:0] if by_day else pd.DataFrame())
        rendered = check_raw_batch(
            frame, day, expected_rows=int(rows[day].row_count), source_format=fmt, now=now, limits=limits,
            docs_dir=reports_dir / "quality",
        )  # fmt: skip
        if rendered.docs:
            pages[day] = rendered.docs
    return pages


def _write_report(reports_dir, first, last, results, docs, quarantined) -> Path:
    path = reports_dir / "quality" / f"raw_events_history_{first}_{last}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    days = {
        d.isoformat(): {
            "source_format": fmt, "severity": r.severity, "rows": r.n_rows, "expectations": r.n_expectations,
            "failed": [f.describe() for f in r.failures], "warnings": [f.describe() for f in r.warnings],
            "notices": [f.describe() for f in r.notices], "data_docs": docs.get(d),
            "quarantined": quarantined.get(d),
        }  # fmt: skip
        for d, (fmt, r) in results.items()
    }
    payload = {"first_day": str(first), "last_day": str(last), "days": days}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _alert(first, last, results, failed, warned, quarantined, smtp, reports_dir) -> dict[str, Any]:
    """One email for the whole history: the list of days, then the worst day in detail."""
    worst = failed[0] if failed else warned[0]
    lines = [f"History {first} .. {last}: {len(results)} days checked with the nightly batch suite."]
    if failed:
        days = ", ".join(f"{d} -> {quarantined[d]}" for d in failed)
        lines.append(
            f"{len(failed)} day(s) FAILED and were quarantined (their rows left raw.events; the other days "
            f"were built): {days}"
        )
    if warned:
        lines.append(f"{len(warned)} day(s) passed with warnings: " + ", ".join(map(str, warned[:60])))
    lines.append(f"Details of {worst} follow.")
    message = build_alert(
        stage="raw_events_history", target=f"{first}..{last}", result=results[worst][1],
        sender=smtp.sender, recipients=smtp.recipients, note="\n".join(lines),
    )  # fmt: skip
    sent, eml = send_alert(message, smtp, reports_dir)
    return {"alert_sent": sent, "alert_eml": str(eml)}
