"""The ingest stage: a day's landed batch, every pending batch, or a shop export into the raw layer."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from personaflow.core.settings import Settings
from personaflow.core.warehouse import location

log = logging.getLogger(__name__)


def ingest(batch_date: date, s: Settings, max_rejects: int = 0) -> dict[str, Any]:
    """Load the day's batch (and the latest users/items snapshot) into the raw layer."""
    from personaflow.core.forgotten import keep_table, scrub_landing
    from personaflow.core.landing import batch_path
    from personaflow.ingest.load import load_batch, load_dimensions

    scrub_landing([batch_path(s.landing_dir, batch_date)], s)
    dims = load_dimensions(location(s), s.landing_dir)
    keep = lambda table: keep_table(table, s)  # noqa: E731 - forgotten customers never load again
    return {**load_batch(location(s), s.landing_dir, batch_date, max_rejects=max_rejects, keep=keep), **dims}


def ingest_history(through: date, s: Settings, since: date | None = None) -> list[dict[str, Any]]:
    """Catch up every landed batch in [since, through] that was never loaded, or whose file changed
    since it was (first install, replay, backfill of a date range)."""
    from personaflow.core.forgotten import keep_table, scrub_landing
    from personaflow.core.landing import batch_dates, batch_path
    from personaflow.ingest.load import load_dimensions, load_pending

    days = [d for d in batch_dates(s.landing_dir) if d <= through and (since is None or d >= since)]
    scrub_landing([batch_path(s.landing_dir, d) for d in days], s)
    load_dimensions(location(s), s.landing_dir)
    return load_pending(location(s), s.landing_dir, through, since=since, keep=lambda t: keep_table(t, s))


def import_events(
    path: Path,
    source_format: str,
    s: Settings,
    mapping: str | None = None,
    load: bool = True,
    through: date | None = None,
    max_rejects: int = 0,
    overwrite: bool = False,
    constants: dict[str, str] | None = None,
    empty_days: str = "land",
) -> dict[str, Any]:
    """Land a shop export as daily batch files; with `load`, load its days (up to `through`) too.
    `constants` fill columns a csv/parquet export lacks (e.g. event_type = purchase). `empty_days`
    ("land", "skip", "auto"): whether days without events become (header-only) batches too; "auto", what
    `personaflow history` uses, lands them unless the log is sparse (personaflow/ingest/landing.py).

    Without `load` the files wait for the nightly DAG to load and validate them day by day.
    """
    from personaflow.core.forgotten import drop_forgotten
    from personaflow.ingest.formats import parse_mapping
    from personaflow.ingest.landing import import_events as land
    from personaflow.ingest.landing import import_warnings, imported_days
    from personaflow.quality.row_faults import set_aside

    report = land(
        path, source_format, s.landing_dir, parse_mapping(mapping), max_rejects, overwrite,
        keep=lambda frame: drop_forgotten(frame, s), screen=set_aside, constants=constants,
        empty_days=empty_days,
    )  # fmt: skip
    for warning in import_warnings(report):  # stderr (CLI) and the task log (Airflow)
        log.warning(warning)
    days = imported_days(report)
    if load and days:
        from personaflow.core.landing import batch_dates

        last = min(through or days[1], days[1])
        loaded = ingest_history(last, s, since=days[0])
        landed = sum(1 for d in batch_dates(s.landing_dir) if days[0] <= d <= last)  # not every day: sparse
        report["loaded"] = {
            "through": last.isoformat(),
            "batches": len(loaded),
            "rows": sum(int(b["rows"]) for b in loaded),
            # Loaded before from the same file (a replay of the import), or quarantined: left as they are.
            "skipped": landed - len(loaded),
        }
    return report
