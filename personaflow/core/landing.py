"""The landing area's layout: where a day's batch file and a day's live events are, and which days
have landed. Every layer reads and writes the landing area through these names, so the layout is
decided once.

    landing/events/events_YYYY-MM-DD.csv   a day's batch (a shop export, or `personaflow generate`)
    landing/live/events_YYYY-MM-DD.jsonl   events posted to /events that day (group-committed)
    landing/users.csv, landing/items.csv   the latest customer and catalogue snapshots
"""

from __future__ import annotations

from datetime import date
from pathlib import Path


def batch_path(landing_dir: Path, day: date) -> Path:
    return landing_dir / "events" / f"events_{day.isoformat()}.csv"


def batch_dates(landing_dir: Path) -> list[date]:
    """The days for which a batch file has landed, oldest first."""
    names = sorted((landing_dir / "events").glob("events_*.csv"))
    return [date.fromisoformat(p.stem.removeprefix("events_")) for p in names]


def live_path(landing_dir: Path, day: date) -> Path:
    return Path(landing_dir) / "live" / f"events_{day.isoformat()}.jsonl"
