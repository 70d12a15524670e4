"""Ranking metrics on the hold-out window, for the model and the popularity baseline.

Relevance is binary (the user bought the item in the hold-out). Every train item is ranked, items the
user already bought included: repeat purchases are real in a shop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from training.data import Split

ScoresFn = Callable[[np.ndarray], np.ndarray]
"""Maps user indices (n,) to scores over all train items (n, n_items)."""

POPULARITY_WINDOW_DAYS = 30


def recall_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float:
    """|top-k ∩ relevant| / |relevant| (0 when nothing is relevant)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not relevant:
        return 0.0
    hits = sum(1 for item in list(ranked)[:k] if item in relevant)
    return hits / len(relevant)


def ndcg_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float:
    """Binary-relevance NDCG: sum 1/log2(rank+1) over hits in the top k, over the ideal for min(k, |rel|)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(pos + 2) for pos, item in enumerate(list(ranked)[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(pos + 2) for pos in range(min(k, len(relevant))))
    return dcg / ideal


def popularity_scores(split: Split, window_days: int = POPULARITY_WINDOW_DAYS) -> np.ndarray:
    """Purchases per train item in the last `window_days` before the cutoff.

    All-train purchases break ties (scaled far below one purchase) so the order is deterministic and
    still meaningful when the recent window is thin.
    """
    train = split.train
    dates = pd.to_datetime(train["event_date"]).dt.date
    recent = train.loc[dates >= split.cutoff - timedelta(days=window_days)]
    maps = split.maps
    scores = np.zeros(maps.n_items, dtype=np.float64)
    total = np.zeros(maps.n_items, dtype=np.float64)
    for frame, out in ((recent, scores), (train, total)):
        counts = frame.groupby("item_id")["n_purchases"].sum()
        idx = counts.index.map(maps.item_index).to_numpy(np.int64)
        np.add.at(out, idx, counts.to_numpy(np.float64))
    return scores + total / (total.max() + 1.0) * 1e-3


def popularity_ranking(split: Split, window_days: int = POPULARITY_WINDOW_DAYS) -> list[tuple[str, float]]:
    """(item_id, score) best first: what serving falls back to for unknown users."""
    scores = popularity_scores(split, window_days)
    order = np.argsort(-scores, kind="stable")
    return [(split.maps.item_ids[i], float(scores[i])) for i in order]


def popularity_scores_fn(split: Split, window_days: int = POPULARITY_WINDOW_DAYS) -> ScoresFn:
    scores = popularity_scores(split, window_days)
    return lambda users: np.broadcast_to(scores, (len(users), scores.shape[0]))


def evaluate(
    scores_fn: ScoresFn, split: Split, k: int = 10, batch_users: int = 1024
) -> dict[str, float | int]:
    """Mean recall@k and NDCG@k over users with hold-out purchases; plain floats for JSON/metadata."""
    users = sorted(split.test_truth)
    recalls: list[float] = []
    ndcgs: list[float] = []
    item_ids = np.asarray(split.maps.item_ids)
    for start in range(0, len(users), batch_users):
        chunk = users[start : start + batch_users]
        idx = np.array([split.maps.user_index[u] for u in chunk], dtype=np.int64)
        scores = np.asarray(scores_fn(idx))
        if scores.shape != (len(chunk), split.maps.n_items):
            raise ValueError(
                f"scores_fn returned shape {scores.shape}, want {(len(chunk), split.maps.n_items)}"
            )
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for user, row in zip(chunk, top, strict=True):
            ranked = item_ids[row].tolist()
            recalls.append(recall_at_k(ranked, split.test_truth[user], k))
            ndcgs.append(ndcg_at_k(ranked, split.test_truth[user], k))
    n = len(recalls)
    return {
        f"recall_at_{k}": float(np.mean(recalls)) if n else 0.0,
        f"ndcg_at_{k}": float(np.mean(ndcgs)) if n else 0.0,
        "n_test_users": n,
    }
