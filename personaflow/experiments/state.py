"""The running A/B test, if any: `<home>/experiments/current.json` {experiment, challenger, share,
started_at}, written by `personaflow abtest start`, removed by `abtest stop`. The API re-reads it when
it changes, so starting, resizing or stopping a test needs no restart."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Experiment:
    experiment: str
    challenger: str  # the challenger's model tag; control is whatever production serves
    share: float  # of users in the challenger arm
    started_at: str


def state_path(home: Path) -> Path:
    return Path(home) / "experiments" / "current.json"


def exposures_dir(home: Path, experiment: str) -> Path:
    return Path(home) / "experiments" / experiment


def start(home: Path, challenger: str, share: float, experiment: str | None = None) -> Experiment:
    if not 0 < share < 1:
        raise ValueError(f"--share {share}: the challenger's share of users must be in (0, 1)")
    name = experiment or "ab-" + challenger.split(":")[-1][:12]
    current = Experiment(name, challenger, share, datetime.now(UTC).isoformat(timespec="seconds"))
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".current.json.tmp")
    tmp.write_text(json.dumps(asdict(current), indent=2))
    os.replace(tmp, path)
    return current


def stop(home: Path) -> Experiment | None:
    found = read(home)
    state_path(home).unlink(missing_ok=True)
    return found


def read(home: Path) -> Experiment | None:
    path = state_path(home)
    return Experiment(**json.loads(path.read_text())) if path.exists() else None
