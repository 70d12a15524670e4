"""Exposures: every answer an A/B test gave, one JSON line each, fsynced before the answer leaves
(the report attributes purchases to them, so a lost line would bias it); written by group commit.

    <home>/experiments/<experiment>/exposures_<day>.jsonl
    {"ts", "user_id", "arm", "model_version", "items": [...], "status", "latency_ms"}
"""

from __future__ import annotations

import json
import os
import queue
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from personaflow.core.group_commit import take_batch, write_and_fsync


class ExposureLog:
    """Group commit (personaflow/core/group_commit.py), as the live landing file does: one writer thread
    takes every line queued while its previous fsync ran, appends them in one write and fsyncs once; each
    answer waits for the fsync that covers its line (`submit` gives a Future), so a line is still durable
    before its answer leaves, at one fsync per group instead of one per answer."""

    def __init__(self, folder: Path, max_batch: int = 1024) -> None:
        self.folder = Path(folder)
        self.max_batch = max_batch
        self.fsyncs = 0  # fewer than the lines appended under load
        self._lock = threading.Lock()  # the writer's start
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def submit(self, record: dict) -> Future:
        """Queue the exposure; the Future is done (None) once its line is fsynced."""
        now = datetime.now(UTC)
        line = (json.dumps({"ts": now.isoformat(timespec="milliseconds"), **record}) + "\n").encode()
        done: Future = Future()
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="exposures", daemon=True)
                self._writer.start()
        self._queue.put((now.date().isoformat(), line, done))
        return done

    def append(self, record: dict) -> None:
        """Append and fsync one exposure (blocking)."""
        self.submit(record).result()

    def _write_loop(self) -> None:
        while True:
            batch = take_batch(self._queue, self.max_batch)
            by_day: dict[str, list] = {}
            for day, line, done in batch:
                by_day.setdefault(day, []).append((line, done))
            for day, items in by_day.items():
                try:
                    self._commit(self.folder / f"exposures_{day}.jsonl", b"".join(line for line, _ in items))
                except Exception as exc:  # never leave an answer waiting
                    for _, done in items:
                        done.set_exception(exc)
                    continue
                for _, done in items:
                    done.set_result(None)

    def _commit(self, path: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            write_and_fsync(fd, data, path)
            self.fsyncs += 1
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
