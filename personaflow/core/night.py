"""The night's ledger: which task of tonight's run failed or was skipped, and why.

The DAG's tasks write it (personaflow/orchestration/dag_tasks.py) and the nightly report reads it, so
the page can say first whether tonight's run succeeded and which stage stopped it, whatever ran the
night (the scheduler, `trigger`, `run-dag`). One small JSON file per batch day; a new run of the same
day (a retry from the UI, a backfill) starts it afresh.

    reports/nights/night_<day>.json   {"run_id": ..., "tasks": {task_id: {"state", "reason", "at"}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any


def night_path(reports_dir: Path, day: date) -> Path:
    return Path(reports_dir) / "nights" / f"night_{day.isoformat()}.json"


def read_night(reports_dir: Path, day: date) -> dict[str, Any] | None:
    path = night_path(reports_dir, day)
    return json.loads(path.read_text()) if path.exists() else None


def record_task(reports_dir: Path, day: date, run_id: str, task_id: str, state: str, reason: str) -> None:
    """Note a task that did not succeed (`failed`, `skipped`) in the day's ledger of run `run_id`."""
    found = read_night(reports_dir, day) or {}
    tasks = found.get("tasks", {}) if found.get("run_id") == run_id else {}
    first_line = (reason or "no message").strip().splitlines()[0][:500]
    tasks[task_id] = {"state": state, "reason": first_line, "at": datetime.now(UTC).isoformat()}
    path = night_path(reports_dir, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".night-", dir=path.parent)  # the report may read it meanwhile
    with os.fdopen(fd, "w") as handle:
        json.dump({"run_id": run_id, "day": day.isoformat(), "tasks": tasks}, handle, indent=2)
    os.replace(tmp, path)
