"""A hybrid of the repeat-buy baseline and a learned model: honest about what wins in retail.

score(u, i) = history(u, i) / max_i history(u, i) + w * minmax_i(model(u, i))

history is the own-purchase-count baseline (count, recency tie-break, popularity fill). Per-user
min-max scaling puts both in [0, 1] so one weight `w` is meaningful for every user. `w` is chosen on
the validation split carved from the training period (never the test window); w = 0 would be the
baseline itself, so the grid starts above 0 and the tuning result is reported.
"""

from __future__ import annotations

import numpy as np

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import own_history
from personaflow.training.evaluation.metrics import ScoresFn, evaluate
from personaflow.training.evaluation.rebuy import bought_matrix, excluding

WEIGHTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)


def blend_rows(history_rows: np.ndarray, model_rows: np.ndarray, weight: float) -> np.ndarray:
    """history / its row max + weight * per-row min-max(model), for one row (n_items,) or a batch."""
    hist = np.atleast_2d(np.asarray(history_rows, dtype=np.float64))
    hist = hist / np.maximum(hist.max(axis=1, keepdims=True), 1e-12)
    model = np.atleast_2d(np.asarray(model_rows, dtype=np.float64))
    lo = model.min(axis=1, keepdims=True)
    span = model.max(axis=1, keepdims=True) - lo
    out = hist + weight * (model - lo) / np.where(span > 0, span, 1.0)
    return out if np.ndim(model_rows) > 1 else out[0]


def blend(history_fn: ScoresFn, model_fn: ScoresFn, weight: float) -> ScoresFn:
    return lambda users: blend_rows(history_fn(users), model_fn(users), weight)


def tune_weight(
    val_split: Split, val_model_fn: ScoresFn, weights: tuple[float, ...] = WEIGHTS, exclude: bool = False
) -> tuple[float, dict[str, float]]:
    """The weight with the best validation NDCG@10, and the whole curve (for the report); `exclude`:
    bought items ranked last, as they will be served (personaflow/training/evaluation/rebuy.py)."""
    history = own_history(val_split)
    bought = bought_matrix(val_split) if exclude else None

    def scored(w: float) -> float:
        fn = blend(history, val_model_fn, w)
        return evaluate(fn if bought is None else excluding(fn, bought), val_split)["ndcg_at_10"]

    curve = {str(w): scored(w) for w in weights}
    best = max(weights, key=lambda w: curve[str(w)])
    return best, curve


def hybrid(
    split: Split, model_fn: ScoresFn, val_split: Split, val_model_fn: ScoresFn, exclude: bool = False
) -> tuple[ScoresFn, dict]:
    weight, curve = tune_weight(val_split, val_model_fn, exclude=exclude)
    fn = blend(own_history(split), model_fn, weight)
    return (excluding(fn, bought_matrix(split)) if exclude else fn), {
        "weight": weight,
        "val_ndcg_curve": curve,
    }
