"""POST /audiences: the customers a marketer picks, answered from tonight's audience inputs.

The nightly `profiles.audiences` task writes the profiles (RFM, K-means segment, churn score) and what
each customer bought as Parquet beside the other serving files (personaflow/pipeline/audiences.py); this
reads them once and again whenever they change, and selects with the same code as the CLI
(personaflow/profiles/audiences.py), so `personaflow audience` and the API give the same answer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.profiles.audiences import (
    BOUGHT_FILE,
    PROFILES_FILE,
    AudienceSpec,
    check_labels,
    select,
    summarise,
)


class AudienceInputs:
    def __init__(self, features_dir: Path) -> None:
        self._paths = (Path(features_dir) / PROFILES_FILE, Path(features_dir) / BOUGHT_FILE)
        self._lock = threading.Lock()
        self._state: tuple[int, int] | None = None
        self._frames: tuple[pd.DataFrame, pd.DataFrame] | None = None

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """(profiles, bought), re-read when the nightly run rewrote them; None before the first night."""
        try:
            state = tuple(p.stat().st_mtime_ns for p in self._paths)
        except FileNotFoundError:
            return None
        with self._lock:
            if state != self._state:
                self._frames = (pd.read_parquet(self._paths[0]), pd.read_parquet(self._paths[1]))
                self._state = state  # type: ignore[assignment]
            return self._frames


def answer(inputs: AudienceInputs, spec: AudienceSpec, limit: int) -> dict[str, Any] | None:
    frames = inputs.frames()
    if frames is None:
        return None
    profile, bought = frames
    check_labels(profile, spec)  # an unknown K-means label: AudienceError naming tonight's labels
    members = select(profile, bought, spec)
    as_of = str(pd.Timestamp(profile["as_of_date"].iloc[0]).date()) if len(profile) else None
    rows = members.head(limit).astype(object).where(members.head(limit).notna(), None).to_dict("records")
    return {"audience": spec.name, "as_of": as_of, **summarise(members, len(profile)), "members": rows}
