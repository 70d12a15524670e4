"""Hot swaps of the served model: the `Ranker` is rebuilt when the production pointer file (a promotion,
a rollback) or one of the nightly feature files changes, and handed over as one new reference, so a
request in flight finishes on the model it started with (personaflow/serving/service.py)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from personaflow.serving.co_purchase import load_rules
from personaflow.serving.online import load_catalogue, load_segment_popularity, load_text_neighbours
from personaflow.serving.ranking import Ranker
from personaflow.serving.reasons import load_history
from personaflow.training.registry.loading import load_production
from personaflow.training.registry.pointer import read_pointer
from personaflow.training.registry.store import model_info

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 0.5
# Files the nightly features stage rewrites; a change rebuilds the Ranker like a model swap does.
WATCHED_FEATURE_FILES = (
    "item_features.parquet", "co_purchase.parquet", "segment_popularity.parquet", "text_neighbours.parquet",
    "purchase_history.parquet",
    "returned_items.parquet",
)  # fmt: skip


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class ModelWatcher:
    """Builds the production Ranker and its /metadata; `start` watches for changes in a thread."""

    def __init__(self, pointer: Path, features_dir: Path) -> None:
        self.pointer = pointer
        self.features_dir = features_dir
        self._watched = self._watch_state()  # before the first build: a change during it is not missed

    def _watch_state(self) -> tuple[int | None, ...]:
        return _mtime(self.pointer), *(_mtime(self.features_dir / name) for name in WATCHED_FEATURE_FILES)

    def build(self) -> tuple[Ranker, dict]:
        model = load_production(self.pointer)
        ranker = Ranker(
            model,
            load_catalogue(self.features_dir),
            load_rules(self.features_dir),
            load_segment_popularity(self.features_dir),
            load_text_neighbours(self.features_dir),
            load_history(self.features_dir),
        )
        pointer = read_pointer(self.pointer) or {}
        info = model_info(model.tag)
        meta = {
            "model_version": model.tag,
            "trained_at": info["created"],
            "promoted_at": pointer.get("promoted_at"),
            "metrics": {k: v for k, v in info["metrics"].items() if isinstance(v, int | float | str)},
            "n_users": model.maps.n_users,
            "n_items": model.maps.n_items,
        }
        return ranker, meta

    def start(self, serving: Callable[[], Ranker], swap: Callable[[Ranker, dict], None]) -> None:
        """Watch in a daemon thread; `serving()` is the Ranker in use, `swap` puts a new one in."""
        threading.Thread(target=self._watch, args=(serving, swap), name="model-watcher", daemon=True).start()

    def _watch(self, serving: Callable[[], Ranker], swap: Callable[[Ranker, dict], None]) -> None:
        stop = threading.Event()
        while not stop.wait(RELOAD_CHECK_SECONDS):
            state = self._watch_state()
            if state == self._watched or state[0] is None:
                continue
            try:
                ranker, meta = self.build()
            except Exception:  # keep serving the old model rather than failing requests
                log.exception("reload from %s failed; still serving %s", self.pointer, serving().tag)
                self._watched = state
                continue
            if ranker.tag != serving().tag:
                log.info("production model changed: %s -> %s", serving().tag, ranker.tag)
            swap(ranker, meta)
            self._watched = state
            gc.collect()  # drop the old model now, then keep the new one out of later collections
            gc.freeze()
