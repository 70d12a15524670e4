"""Has the night's file arrived? What the nightly DAG's `ingest.wait_for_batch` sensor asks.

A shop's export can be late. The sensor waits for `landing/events/events_<day>.csv` until the day
has ended plus PERSONAFLOW_BATCH_WAIT_HOURS; then the night is reported as missing data (a note on
the run and one email), its tasks are skipped, nothing is retried and nothing crashes. A landing area
that ended long before the run's day is a historic import (e.g. Online Retail, 2010-2011): a run
Airflow schedules for today has nothing to wait for and is skipped at once, without an email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from personaflow.core.landing import batch_dates, batch_path

# Newest landed day this far before the run's day: the landing area is a historic import.
HISTORIC_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class Arrival:
    status: str  # arrived | waiting | missing | historic
    reason: str
    path: Path


def batch_arrival(landing_dir: Path, day: date, now: datetime, wait_hours: float) -> Arrival:
    """Where the night's batch file stands at `now` (naive UTC)."""
    path = batch_path(landing_dir, day)
    if path.is_file():
        return Arrival("arrived", f"{path} has arrived", path)
    landed = batch_dates(landing_dir)
    newest = landed[-1] if landed else None
    if newest is not None and newest < day - HISTORIC_AFTER:
        return Arrival(
            "historic",
            f"no batch for {day}: the landing area ends on {newest} (a historic import); "
            "nothing to wait for. Replay its days with `personaflow backfill`.",
            path,
        )
    deadline = datetime.combine(day + timedelta(days=1), datetime.min.time()) + timedelta(hours=wait_hours)
    if now >= deadline:
        return Arrival(
            "missing",
            f"missing data: no batch file {path} for {day} by {deadline:%Y-%m-%d %H:%M} UTC "
            f"(waited {wait_hours:g} h after the day ended); the night was skipped, the production "
            f"model is unchanged. When the file lands: personaflow trigger --date {day}",
            path,
        )
    return Arrival("waiting", f"waiting for {path} until {deadline:%Y-%m-%d %H:%M} UTC", path)


def missing_data_email(arrival: Arrival, day: date, sender: str, recipients: list[str]) -> EmailMessage:
    from personaflow.core.alert import new_message

    msg = new_message(f"[personaflow] missing data: no batch for {day}", sender, recipients, "missing")
    msg.set_content(arrival.reason + "\n")
    return msg
