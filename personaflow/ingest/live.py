"""The live landing file: events accepted by POST /events, one JSON object a line, one file per UTC day.

Lives in ingest/ because both sides use it: the API (personaflow/serving/service.py)
writes it and the nightly load (personaflow/ingest/load.py) reads it.

Writer (the API): the line is appended and the file fsynced before the event is answered, so an
accepted event survives the server stopping right after its answer. Group commit: one writer thread
per process takes every line queued while the previous fsync ran, appends them in one write and
fsyncs once; each request waits for the fsync that covers its line (`submit` gives a Future). The file
for a new day is created with an fsync of its folder too (the directory entry must be durable as well).
Files are opened with O_APPEND and each batch is one write(2): several worker processes appending to
one file never interleave inside a line. Reader (the nightly load): every complete line; a torn last
line can only come from a write that never got its answer, so it is skipped.

`append_once` refuses to write an exact duplicate (equal on every business field, the batch rule's
duplicate key as far as live events have it) of an event already in the day's file: the nightly check
stops the night when too many rows are exact duplicates, so a client's retries must not add up to that.
Which events were seen lives in `seen`: this process's memory by default (one worker), or Redis
(personaflow/serving/live_counters.py RedisSeen) so that a retry landing on another worker is caught as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import uuid
from concurrent.futures import Future
from datetime import date, datetime
from pathlib import Path

from personaflow.core.group_commit import take_batch, write_and_fsync
from personaflow.core.landing import live_path

log = logging.getLogger(__name__)
LIVE_COLUMNS = (
    "event_id", "user_id", "item_id", "event_type", "event_ts", "session_id", "quantity", "price",
    "received_at",
)  # fmt: skip


# The fields two events must share to be exact duplicates (personaflow/quality/suites.py DUPLICATE_KEY, less
# the columns live events do not have: order_id, description, country).
DUPLICATE_FIELDS = ("user_id", "item_id", "event_type", "event_ts", "session_id", "quantity", "price")


def duplicate_key(record: dict) -> bytes:
    fields = json.dumps([record.get(f) for f in DUPLICATE_FIELDS], separators=(",", ":")).encode()
    return hashlib.blake2b(fields, digest_size=16).digest()


def live_record(
    user_id: str,
    item_id: str,
    event_type: str,
    ts: datetime,
    received: datetime,
    session_id: str | None,
    quantity: int,
    price: float,
) -> dict:
    """One accepted event as its landing line holds it (a fresh event id; seconds, like the batch)."""
    return {
        "event_id": f"live-{uuid.uuid4().hex}",
        "user_id": user_id,
        "item_id": item_id,
        "event_type": event_type,
        "event_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
        "session_id": session_id or f"live-{user_id}",
        "quantity": quantity,
        "price": price,
        "received_at": received.isoformat(),
    }


class LocalSeen:
    """Duplicate key -> first event id, in this process (exact with one writing process)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[date, bytes], str] = {}

    def claim_many(self, day: date, claims: list[tuple[bytes, str]]) -> list[str | None]:
        """For each (key, event_id): None when it is the first with its key (now claimed), else the
        first one's id."""
        out = []
        for key, event_id in claims:
            earlier = self._seen.setdefault((day, key), event_id)
            out.append(None if earlier == event_id else earlier)
        return out

    def release(self, day: date, key: bytes) -> None:
        self._seen.pop((day, key), None)

    def seed(self, day: date, seen: dict[bytes, str]) -> None:
        self._seen = {k: v for k, v in self._seen.items() if k[0] >= day}  # older days are closed
        for key, event_id in seen.items():
            self._seen.setdefault((day, key), event_id)



class LiveLog:
    """Appends events to their day's live file with group commit (see the module docstring).

    The writer thread does everything but the encoding: the dedupe claims of a batch (one Redis round
    trip for all of them), the write and the fsync; so the event loop never waits on a disk or Redis.
    """

    def __init__(self, landing_dir: Path, seen=None, max_batch: int = 1024) -> None:
        self.landing_dir = Path(landing_dir)
        self.seen = seen if seen is not None else LocalSeen()
        self.max_batch = max_batch
        self.fsyncs = 0  # file fsyncs done (group commit: fewer than the events appended)
        self.appended = 0
        self._lock = threading.Lock()  # the writer's start
        self._days: set[date] = set()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._fds: dict[date, int] = {}

    def submit(self, day: date, record: dict, dedupe: bool = True) -> Future:
        """Queue the event; the Future gives (path, None) once its line is fsynced, or (path, earlier
        event id) for a duplicate (with `dedupe`; not written)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        done: Future = Future()
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="live-log", daemon=True)
                self._writer.start()
        self._queue.put((day, line, duplicate_key(record), record["event_id"], dedupe, done))
        return done

    def append(self, day: date, record: dict) -> Path:
        return self.append_once(day, record, dedupe=False)[0]

    def append_once(self, day: date, record: dict, dedupe: bool = True) -> tuple[Path, str | None]:
        """Append and fsync the event (blocking); with `dedupe`, an exact duplicate of one already in the
        day's file is not written, and the earlier event's id comes back instead of None."""
        return self.submit(day, record, dedupe).result()

    def _load_day(self, day: date) -> None:
        """Before the first event of a day in this process: what the day's file already holds."""
        try:
            seen = {duplicate_key(r): r["event_id"] for r in read_live(live_path(self.landing_dir, day))}
        except ValueError:  # a damaged file is the nightly load's to report; appending goes on
            seen = {}
        self.seen.seed(day, seen)
        self._days.add(day)

    def _open(self, day: date) -> int:
        fd = self._fds.get(day)
        if fd is not None:
            return fd
        for old in [d for d in self._fds if d < day]:  # yesterday's file is done once today's opens
            os.close(self._fds.pop(old))
        path = live_path(self.landing_dir, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if not existed:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._fds[day] = fd
        return fd

    def _write_loop(self) -> None:
        while True:
            batch = take_batch(self._queue, self.max_batch)
            by_day: dict[date, list] = {}
            for item in batch:
                by_day.setdefault(item[0], []).append(item)
            for day, items in by_day.items():
                try:
                    self._commit(day, items)
                except Exception as exc:  # never leave a request waiting
                    for *_, done in items:
                        if not done.done():
                            done.set_exception(exc)

    def _claims(self, day: date, items: list) -> list[str | None] | None:
        """The batch's dedupe answers; None when the shared dedupe is down (written unchecked)."""
        try:
            if day not in self._days:
                self._load_day(day)
            return self.seen.claim_many(day, [(key, event_id) for _, _, key, event_id, _, _ in items])
        except Exception:  # an event is never refused for want of its dedupe: it may be stored twice
            log.exception("dedupe of %d live events not reachable; written unchecked", len(items))
            return None

    def _commit(self, day: date, items: list) -> None:
        path = live_path(self.landing_dir, day)
        claims = self._claims(day, items)
        writes, claimed, duplicates = [], [], []
        for n, (_, line, key, event_id, dedupe, done) in enumerate(items):
            earlier = claims[n] if claims is not None else None
            if dedupe and earlier is not None:
                duplicates.append((earlier, done))
                continue
            writes.append((line, event_id, done))
            if claims is not None and earlier is None:
                claimed.append(key)
        failed: Exception | None = None
        if writes:
            try:
                write_and_fsync(self._open(day), b"".join(line for line, _, _ in writes), path)
                self.fsyncs += 1
                self.appended += len(writes)
            except Exception as exc:  # none of these is accepted; a retry must not look like a duplicate
                failed = exc
                for key in claimed:
                    self.seen.release(day, key)
        lost = {event_id for _, event_id, _ in writes} if failed else set()
        for _, event_id, done in writes:
            if event_id in lost:
                done.set_exception(failed)
            else:
                done.set_result((path, None))
        for earlier, done in duplicates:  # answered once the event they repeat is durable (or not)
            if earlier in lost:
                done.set_exception(failed)
            else:
                done.set_result((path, earlier))

    def close(self) -> None:
        """Close the day files (events still queued are written by the next `submit`'s writer)."""
        for day in list(self._fds):
            os.close(self._fds.pop(day))


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
