"""The validate stages: Great Expectations over a raw batch, an imported history, or the marts.

A failure quarantines (never deletes), emails and raises, so nothing downstream learns from it."""

from __future__ import annotations

from datetime import date
from typing import Any

from personaflow.core.settings import Settings
from personaflow.core.warehouse import location
from personaflow.pipeline._common import smtp_config


def validate_batch(batch_date: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the raw batch; a failure quarantines it, emails and raises."""
    from personaflow.quality.validate import validate_batch as run

    return run(location(s), batch_date, s.quarantine_dir, s.reports_dir, smtp_config(s))


def validate_history(first: date, last: date, s: Settings, progress=None) -> dict[str, Any]:
    """The batch suite over every loaded day in [first, last] in one process (an imported history)."""
    from personaflow.quality.history import validate_history as run

    return run(location(s), first, last, s.quarantine_dir, s.reports_dir, smtp_config(s), progress=progress)


def validate_marts(as_of: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the marts; a failure emails and raises before features and training."""
    from personaflow.quality.validate import validate_marts as run

    return run(location(s), as_of, s.reports_dir, smtp_config(s))
