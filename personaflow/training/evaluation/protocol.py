"""The retail-30d benchmark protocol's scoring half: means, bootstrap intervals and coverage of a ScoresFn.

The split (purchases, the cut, who is a test user, what is their truth) is
personaflow/training/data/purchases.py;
the metrics are personaflow/training/evaluation/metrics.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.bootstrap import bootstrap_ci
from personaflow.training.evaluation.metrics import ScoresFn, part_means, per_user_metrics


def score(
    scores_fn: ScoresFn, split: Split, k: int = 10, n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Means, bootstrap 95% intervals and catalogue coverage, the repeat/explore split; also the per-user
    arrays (for gates)."""
    per_user = per_user_metrics(scores_fn, split, k)
    out: dict[str, Any] = {"n_test_users": int(len(per_user["users"]))}
    for name in (f"recall_at_{k}", f"ndcg_at_{k}", f"mrr_at_{k}"):
        values = per_user[name]
        out[name] = float(values.mean()) if values.size else 0.0
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bootstrap_ci(values, n_boot, seed)
    out["coverage"] = float(np.unique(per_user["top"]).size / split.maps.n_items)
    out.update(part_means(per_user, k))  # repeat/explore means and shares (metrics.py's docstring)
    return out, per_user
