"""Model retention: keep what serving may need, prune the rest of the model store.

Every nightly run saves a candidate, so the store only grows. Kept, always: the production model,
every tag in its rollback history (`personaflow rollback` must be able to go back), and the newest
`keep_candidates` versions (PERSONAFLOW_KEEP_CANDIDATES, default 5: recent refused candidates stay
inspectable). Everything else is deleted from the BentoML store. Never the one serving: the
production tag is read from the pointer at the moment of pruning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personaflow.training.registry.pointer import read_pointer
from personaflow.training.registry.store import model_store, saved_models


def prune(pointer_path: Path, keep_candidates: int = 5, dry_run: bool = False) -> dict[str, Any]:
    """Delete the versions no rule keeps; returns what was kept (and why) and what was removed."""
    if keep_candidates < 0:
        raise ValueError(f"keep_candidates={keep_candidates}: must be 0 or more")
    pointer = read_pointer(pointer_path) or {}
    production = pointer.get("tag")
    history = [str(t) for t in pointer.get("history", [])]
    models = sorted(saved_models(), key=lambda m: m.info.creation_time, reverse=True)
    newest = {str(m.tag) for m in models[:keep_candidates]}
    kept: dict[str, str] = {}
    removed: list[str] = []
    for model in models:
        tag = str(model.tag)
        why = (
            "production" if tag == production
            else "rollback history" if tag in history
            else "recent candidate" if tag in newest
            else None
        )  # fmt: skip
        if why:
            kept[tag] = why
            continue
        removed.append(tag)
        if not dry_run:
            model_store().delete(tag)
    return {"kept": kept, "removed": removed, "dry_run": dry_run, "production": production}
