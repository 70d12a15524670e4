"""Group commit, shared by the live landing file (ingest/live.py) and the A/B exposure log
(experiments/exposures.py): one writer thread takes every record queued while its previous fsync ran,
appends them in one write and fsyncs once, so each request still waits for a durable line but a burst
costs one fsync, not one per request.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path


def take_batch(q: queue.SimpleQueue, max_batch: int) -> list:
    """Group commit's batch: wait for one queued item, then take whatever else is queued (up to
    `max_batch`), so requests arriving together share one write and one fsync."""
    batch = [q.get()]
    while len(batch) < max_batch:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch


def write_and_fsync(fd: int, data: bytes, path: Path) -> None:
    """One write of whole lines (O_APPEND: never interleaved with another process's), then fsync; a
    short write is an error, so no caller acknowledges a line that is not all on disk."""
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"{path}: short write ({written} of {len(data)} bytes)")
    os.fsync(fd)
