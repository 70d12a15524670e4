"""Do people re-buy in this shop? Measured from its training rows; if not, already-bought items are left
out of every ranking (validation, evaluation, gate, blend and serving alike).

repeat rate = share of a user's purchase baskets' lines whose item that user bought in an earlier
basket (baskets: one timestamp, or one day in the nightly mart). Online Retail re-buys a lot; a shop
selling durable goods hardly at all, and there a recommender that ranks what you already own first is
wasting the shelf.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personaflow.training.data.interactions import IdMaps, Split, event_times
from personaflow.training.evaluation.metrics import ScoresFn

REBUY_MIN = 0.05  # below this repeat rate, bought items are excluded


def _purchases(train: pd.DataFrame) -> pd.DataFrame:
    """Purchase rows: of the interactions mart (views and carts too) its purchases, else every line."""
    return train.loc[train["n_purchases"] > 0] if "n_purchases" in train else train


def repeat_rate(split: Split) -> float:
    """Share of purchase lines (user, item, basket) that re-buy an item from an earlier basket."""
    train = _purchases(split.train)
    times = event_times(train)
    frame = pd.DataFrame({"u": train["user_id"].to_numpy(), "i": train["item_id"].to_numpy(), "t": times})
    frame = frame.drop_duplicates().sort_values("t", kind="stable")
    return float(frame.duplicated(["u", "i"]).mean()) if len(frame) else 0.0


def decide_exclusion(split: Split, setting: bool | None = None) -> tuple[bool, float]:
    """(exclude bought items?, the measured repeat rate); `setting` overrides the measurement."""
    rate = repeat_rate(split)
    return (rate < REBUY_MIN if setting is None else bool(setting)), rate


def bought_pairs(train: pd.DataFrame, maps: IdMaps) -> sp.csr_matrix:
    """1 per (user, item) bought in `train` (purchase rows of the interactions mart, or purchase lines)."""
    train = _purchases(train)
    rows = train["user_id"].map(maps.user_index).to_numpy(np.int64)
    cols = train["item_id"].map(maps.item_index).to_numpy(np.int64)
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(maps.n_users, maps.n_items))
    matrix.data[:] = 1.0
    return matrix


def bought_matrix(split: Split) -> sp.csr_matrix:
    """1 per (user, item) the user bought in the training rows."""
    return bought_pairs(split.train, split.maps)


def mask_rows(scores: np.ndarray, bought_rows: sp.csr_matrix) -> np.ndarray:
    """Bought items put below every other item of the row (a finite score: serving answers JSON)."""
    out = np.array(np.atleast_2d(scores), dtype=np.float64)
    finite = np.where(np.isfinite(out), out, np.inf)
    floor = np.min(finite, axis=1)
    floor = np.where(np.isfinite(floor), floor, 0.0) - 1.0
    rows, cols = bought_rows.nonzero()
    out[rows, cols] = floor[rows]
    return out if np.ndim(scores) > 1 else out[0]


def excluding(scores_fn: ScoresFn, bought: sp.csr_matrix) -> ScoresFn:
    """`scores_fn` with `bought` items last; a scorer that can exclude them itself (a sparse model:
    baselines.SparseScores, export.ModelScores) does, so it still ranks from its sparse rows."""
    if hasattr(scores_fn, "excluding"):
        return scores_fn.excluding(bought)
    return lambda users: mask_rows(scores_fn(users), bought[np.asarray(users, dtype=np.int64)])
