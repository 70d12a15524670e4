"""Bad request bodies are logged as one line per interval with a count, never one traceback each."""

from __future__ import annotations

import logging

from personaflow.serving.api import InvalidBodyLog, log


class _Lines(logging.Handler):
    """The records that reach the API's logger itself: a handler of its own, not caplog's on the root (which
    saw each record twice once another test in the same process had configured BentoML's logging)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_one_line_per_interval_with_the_count_of_the_rest():
    now = [100.0]
    limiter = InvalidBodyLog(every=10.0, clock=lambda: now[0])
    lines, level = _Lines(), log.level
    log.addHandler(lines)
    log.setLevel(logging.WARNING)
    try:
        logged = [limiter.note("/recommend", 1) for _ in range(30)]
        now[0] += 10.5
        logged.append(limiter.note("/profile", 2))
    finally:
        log.removeHandler(lines)
        log.setLevel(level)
    assert logged == [True] + [False] * 29 + [True]
    messages = [r.getMessage() for r in lines.records]
    assert len(messages) == 2 and all(r.exc_info is None for r in lines.records)
    assert "0 more" in messages[0] and "29 more" in messages[1] and "/profile" in messages[1]
