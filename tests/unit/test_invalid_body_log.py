"""Bad request bodies are logged as one line per interval with a count, never one traceback each."""

from __future__ import annotations

import logging

from personaflow.serving.api import InvalidBodyLog, log


def test_one_line_per_interval_with_the_count_of_the_rest(caplog):
    now = [100.0]
    limiter = InvalidBodyLog(every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=log.name):
        logged = [limiter.note("/recommend", 1) for _ in range(30)]
        now[0] += 10.5
        logged.append(limiter.note("/profile", 2))
    assert logged == [True] + [False] * 29 + [True]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(r.exc_info is None for r in caplog.records)
    assert "0 more" in lines[0] and "29 more" in lines[1] and "/profile" in lines[1]
