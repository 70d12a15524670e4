"""The production pointer: a JSON file we own, {"tag", "promoted_at", "history": [older tags, newest
last]}, moved only by `promote` (through personaflow/training/gate.py) or `rollback`, and written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from personaflow.training.gate import GATE_METRIC, decide, gain_of, said
from personaflow.training.registry.store import get_model, metrics_of, saved_models

log = logging.getLogger(__name__)


def read_pointer(pointer_path: Path) -> dict[str, Any] | None:
    path = Path(pointer_path)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_pointer(pointer_path: Path, payload: dict[str, Any]) -> None:
    # Atomic replace: the server polls this file and must never read half of it.
    path = Path(pointer_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pointer-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def production_score(metrics: dict[str, Any], current: str | None) -> tuple[float | None, str]:
    """Production's ndcg to beat and how it was measured.

    Preferred: production re-scored on the candidate's own split (recorded at training time), valid
    only if production is still the model that was scored. Otherwise production's recorded number,
    which comes from another hold-out window: the gate still runs, but says it is not like for like.
    """
    if current is None:
        return None, "no production model"
    same = metrics.get(f"production_{GATE_METRIC}")
    if same is not None and metrics.get("production_tag") == current:
        return float(same), str(metrics.get("gate_production_basis", "on the candidate's split"))
    try:
        recorded = metrics_of(get_model(current)).get(GATE_METRIC)
    except ValueError:
        return None, f"production {current} is gone from the store"  # nothing to compare against
    return recorded, "as recorded on its own hold-out window (not re-scored on the candidate's split)"


def promote(
    tag: str,
    pointer_path: Path,
    min_gain: float = 0.0,
    evidence: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Move production to `tag` only if the gate (personaflow/training/gate.py `decide`) lets it through.

    `evidence`: the gate's evidence measured afresh (today's split, personaflow/training/registry/fair.py);
    without
    it, what the candidate recorded at training time. A refusal is a normal answer (promoted=False plus
    a reason), not an exception; the pointer is untouched then. `force` promotes despite a refusal: the
    overridden reason is logged, returned and written into the pointer.
    """
    candidate = get_model(tag)
    tag = str(candidate.tag)  # resolves "name:latest" to the concrete version
    metrics = {**metrics_of(candidate), **(evidence or {})}
    pointer = read_pointer(pointer_path)
    current = pointer["tag"] if pointer else None
    prod, basis = production_score(metrics, current)
    decision, reason = decide(tag, metrics, current, prod, basis, min_gain)
    decision["evidence"] = "measured now" if evidence else "recorded at training time"
    if reason is not None and (not force or current == tag):
        return {**decision, "promoted": False, "reason": reason}
    overridden = reason

    history = list(pointer.get("history", [])) if pointer else []
    if current is not None:
        history.append(current)
    payload = {
        "tag": tag,
        "promoted_at": datetime.now(UTC).isoformat(),
        "history": history,
        "metrics": metrics,
    }
    if overridden is not None:
        log.warning("FORCED promotion of %s over %s despite the gate: %s", tag, current, overridden)
        payload.update(forced=True, gate_overridden=overridden)
        write_pointer(pointer_path, payload)
        return {
            **decision,
            "promoted": True,
            "forced": True,
            "reason": f"FORCED despite the gate: {overridden}",
        }
    write_pointer(pointer_path, payload)
    # Say what the evidence says: a gain with its paired interval, never "beats" where the interval
    # includes 0 (a retrain of production's recipe, or a baseline, passes the gate without a clear win).
    vs_prod, vs_base = gain_of(metrics, "gate_vs_production"), gain_of(metrics, "gate_vs_baseline")
    if vs_prod is not None and prod is not None:
        beaten = said(f"vs production {prod:.4f} {basis}: gain", vs_prod)
    else:
        beaten = f"production {prod:.4f} {basis}" if prod is not None else basis
    cand, base = decision["candidate_ndcg_at_10"], decision["baseline_ndcg_at_10"]
    best = decision.get("best_baseline")
    if best is not None and metrics.get("gate_candidate_baseline") == best:
        reason = (
            f"the best baseline ({best}, ndcg@10 {cand:.4f}) serves: no learned model beat it; {beaten}"
        )
    elif best is not None:
        over_best = (
            said(f"gain over the best baseline {best} {decision['best_baseline_ndcg_at_10']:.4f}", vs_base)
            if vs_base is not None
            else f"above the best baseline {best} {decision['best_baseline_ndcg_at_10']:.4f}"
        )
        reason = f"ndcg@10 {cand:.4f}; {over_best}; popularity {base:.4f}; {beaten}"
    else:
        reason = f"ndcg@10 {cand:.4f} above popularity {base:.4f}; {beaten}"
    return {**decision, "promoted": True, "reason": reason}


def rollback(pointer_path: Path) -> str:
    """Point production back at the previously promoted tag; returns that tag."""
    pointer = read_pointer(pointer_path)
    if not pointer or not pointer.get("history"):
        raise ValueError(f"nothing to roll back to: {pointer_path} has no previous production model")
    history = list(pointer["history"])
    previous = history.pop()
    write_pointer(
        pointer_path,
        {
            "tag": previous,
            "promoted_at": datetime.now(UTC).isoformat(),
            "history": history,
            "metrics": metrics_of(get_model(previous)),
            "rolled_back_from": pointer["tag"],
        },
    )
    return previous


def list_models(pointer_path: Path) -> list[dict[str, Any]]:
    """Every saved version, oldest first: tag, created (ISO), metrics, is_production."""
    pointer = read_pointer(pointer_path)
    current = pointer["tag"] if pointer else None
    models = saved_models()
    rows = [
        {
            "tag": str(m.tag),
            "created": m.info.creation_time.isoformat(),
            "kind": str(m.info.metadata.get("kind", "bpr-mf")),
            "metrics": metrics_of(m),
            "is_production": str(m.tag) == current,
        }
        for m in models
    ]
    return sorted(rows, key=lambda r: r["created"])
