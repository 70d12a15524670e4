"""Exposures: every answer an A/B test gave, one JSON line each, fsynced before the answer leaves
(the report attributes purchases to them, so a lost line would bias it).

    <home>/experiments/<experiment>/exposures_<day>.jsonl
    {"ts", "user_id", "arm", "model_version", "items": [...], "status", "latency_ms"}
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd


class ExposureLog:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        now = datetime.now(UTC)
        line = (json.dumps({"ts": now.isoformat(timespec="milliseconds"), **record}) + "\n").encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"exposures_{now.date().isoformat()}.jsonl"
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def read_exposures(folder: Path) -> pd.DataFrame:
    """Every exposure of an experiment as a frame (ts as naive UTC); empty before the first."""
    rows = [json.loads(line) for p in sorted(Path(folder).glob("exposures_*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["ts", "user_id", "arm", "model_version", "items", "status", "latency_ms"]
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None)
    return frame
