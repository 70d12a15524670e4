"""The live landing file: events accepted by POST /events, one JSON object a line, one file per UTC day.

Lives in ingest/ because both sides use it: the API (serving/service.py)
writes it and the nightly load (ingest/load.py) reads it.

Writer (the API): append the line and fsync the file before answering, so an accepted event survives
the server stopping right after its answer. The file for a new day is created with an fsync of its
folder too (the directory entry must be durable as well). Reader (the nightly load): every complete
line; a torn last line can only come from a write that never got its answer, so it is skipped.

`append_once` refuses to write an exact duplicate (equal on every business field, the batch rule's
duplicate key as far as live events have it) of an event already in the day's file: the nightly check
stops the night when too many rows are exact duplicates, so a client's retries must not add up to that.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import date
from pathlib import Path

LIVE_COLUMNS = (
    "event_id", "user_id", "item_id", "event_type", "event_ts", "session_id", "quantity", "price",
    "received_at",
)  # fmt: skip


# The fields two events must share to be exact duplicates (quality/suites.py DUPLICATE_KEY, less the
# columns live events do not have: order_id, description, country).
DUPLICATE_FIELDS = ("user_id", "item_id", "event_type", "event_ts", "session_id", "quantity", "price")


def duplicate_key(record: dict) -> bytes:
    fields = json.dumps([record.get(f) for f in DUPLICATE_FIELDS], separators=(",", ":")).encode()
    return hashlib.blake2b(fields, digest_size=16).digest()


def live_path(landing_dir: Path, day: date) -> Path:
    return Path(landing_dir) / "live" / f"events_{day.isoformat()}.jsonl"


class LiveLog:
    """Appends events to today's live file; one lock orders the appends of all threads of a process.

    Files are opened with O_APPEND, so appends from several processes (workers) never interleave
    inside a line of up to PIPE_BUF-ish sizes on a local file system; our lines are ~250 bytes.
    """

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = Path(landing_dir)
        self._lock = threading.Lock()
        self._day: date | None = None
        self._fd: int | None = None
        self._seen: dict[bytes, str] = {}  # duplicate key -> event_id, for the open day

    def _open(self, day: date) -> int:
        if self._day == day and self._fd is not None:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
        path = live_path(self.landing_dir, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        try:
            self._seen = {duplicate_key(r): r["event_id"] for r in read_live(path)} if existed else {}
        except ValueError:  # a damaged file is the nightly load's to report; appending goes on
            self._seen = {}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not existed:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._day = day
        return self._fd

    def append(self, day: date, record: dict) -> Path:
        return self.append_once(day, record, dedupe=False)[0]

    def append_once(self, day: date, record: dict, dedupe: bool = True) -> tuple[Path, str | None]:
        """Append and fsync the event; with `dedupe`, an exact duplicate of one already in the day's file
        is not written, and the earlier event's id comes back instead of None."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        key = duplicate_key(record)
        with self._lock:
            fd = self._open(day)
            earlier = self._seen.get(key)
            if dedupe and earlier is not None:
                return live_path(self.landing_dir, day), earlier
            os.write(fd, line)
            os.fsync(fd)
            self._seen.setdefault(key, record["event_id"])
        return live_path(self.landing_dir, day), None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_live(path: Path) -> list[dict]:
    """Every complete event of a live file ([] when there is none); a bad middle line is an error."""
    return [record for _, record in read_live_lines(path)]


def read_live_lines(path: Path) -> list[tuple[int, dict]]:
    """Like `read_live`, with each event's 1-based line number (raw.events.source_row)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            if number == len(lines):  # torn final line (no newline): never acknowledged
                break
            raise ValueError(f"{path}:{number}: not a JSON event line: {exc}") from exc
        missing = [c for c in LIVE_COLUMNS[:-1] if c not in record]
        if missing:
            raise ValueError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        records.append((number, record))
    return records
