"""A/B test routing at serving: which model answers a user, and the exposure each answer leaves.

Off unless `personaflow abtest start TAG --share S` wrote `experiments/current.json`; the file is
re-read when it changes (a stat per request), so a test starts, resizes and stops without a restart.
A user's arm is a stable hash (personaflow/experiments/assign.py): the same user gets the same arm on every
worker and every day of the test. The challenger's Ranker shares the production Ranker's catalogue
and side tables; only the model differs, so the arms differ in exactly one thing.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from personaflow.experiments.assign import arm
from personaflow.experiments.exposures import ExposureLog
from personaflow.experiments.state import Experiment, exposures_dir, read, state_path
from personaflow.serving.ranking import Ranker
from personaflow.training.registry.loading import load_model

log = logging.getLogger(__name__)


class ExperimentRouter:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._state_file = str(state_path(self.home))  # a plain os.stat per request, no Path objects
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self.current: Experiment | None = None
        self._challenger: Ranker | None = None
        self._base_tag: str | None = None
        self._log: ExposureLog | None = None

    def _refresh(self, production: Ranker) -> None:
        try:
            mtime = os.stat(self._state_file).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and (self.current is None or self._base_tag == production.tag):
            return
        with self._lock:
            self._mtime, self.current = mtime, read(self.home) if mtime is not None else None
            self._challenger = self._log = None
            if self.current is not None:
                try:
                    model = load_model(self.current.challenger)
                except ValueError:
                    log.exception("A/B challenger %s cannot be loaded: test paused", self.current.challenger)
                    self.current = None
                    return
                self._challenger = replace(production, model=model)
                self._base_tag = production.tag
                self._log = ExposureLog(exposures_dir(self.home, self.current.experiment))
                log.info("A/B test %s: %s vs production %s, share %.2f", self.current.experiment,
                         self.current.challenger, production.tag, self.current.share)  # fmt: skip

    def route(self, user_id: str, production: Ranker) -> tuple[str | None, Ranker]:
        """(arm or None when no test runs, the Ranker that answers this user)."""
        self._refresh(production)
        current, challenger = self.current, self._challenger
        if current is None or challenger is None:
            return None, production
        which = arm(current.experiment, user_id, current.share)
        return which, challenger if which == "challenger" else production

    def expose(self, user_id: str, which: str | None, tag: str, items: list[str], latency_ms: float,
               status: int = 200) -> Future | None:  # fmt: skip
        """The exposure's Future (done once it is fsynced: group commit), or None when no test runs."""
        if which is None or self._log is None:
            return None
        return self._log.submit({"user_id": user_id, "arm": which, "model_version": tag, "items": items,
                                 "status": status, "latency_ms": round(latency_ms, 3)})  # fmt: skip

