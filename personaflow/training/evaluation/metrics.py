"""Ranking metrics on the hold-out window, for any model given as a ScoresFn (and the baselines).

Relevance is binary (the user bought the item in the hold-out). Every train item is ranked, items the
user already bought included: repeat purchases are real in a shop.

Repeat and explore (the next-basket field's split, Li et al., "A Next Basket Recommendation Reality
Check", TOIS 2023): a user's truth splits into *repeat* items (bought by that user in the training rows)
and *explore* items (never bought by them). The same top-k list is scored against each part alone:
repeat recall = hits among the repeat truth / |repeat truth|, repeat NDCG with the ideal of
min(k, |repeat truth|); users whose truth has no repeat item have no repeat score (NaN per user, left out
of the repeat mean), and the same for explore. A total can hide a model that only re-orders history:
these two say where its hits come from. Memory: one set of bought items per test user (linear in the
training rows), never a users x items matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from personaflow.training.data.interactions import Split

ScoresFn = Callable[[np.ndarray], np.ndarray]
"""Maps user indices (n,) to scores over all train items (n, n_items)."""


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


def mrr_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float:
    """1 / rank of the first hit in the top k (0 when none)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for pos, item in enumerate(list(ranked)[:k]):
        if item in relevant:
            return 1.0 / (pos + 1)
    return 0.0


TUNING_USERS = 5000  # validation users a model's parameters are tuned on (a seeded sample beyond it)


def tuning_sample(split: Split, n: int = TUNING_USERS, seed: int = 0) -> Split:
    """`split` with at most `n` test users, a fixed seeded sample: tuning a grid on every validation
    user of a 1M-customer shop scored each of them over the whole catalogue per grid point (users x
    items, issue 21), where 5,000 users already separate the grid points. A shop with fewer keeps all."""
    if len(split.test_truth) <= n:
        return split
    from dataclasses import replace

    users = np.random.default_rng(seed).choice(sorted(split.test_truth), size=n, replace=False)
    return replace(split, test_truth={str(u): split.test_truth[str(u)] for u in users})


# Dense scoring holds at most this many (user, item) scores per batch (64 MB as float64; a model's
# scoring makes a few such arrays): at 100k items a batch is 83 users, not 1,024 x the catalogue
BLOCK_VALUES = 1 << 23


def batch_rows(n_items: int, batch_users: int = 1024, block_values: int | None = None) -> int:
    """Users scored at once over the whole catalogue: at most `batch_users`, at most `block_values`
    (BLOCK_VALUES) scores in all, at least one user."""
    block = BLOCK_VALUES if block_values is None else block_values
    return max(1, min(batch_users, block // max(1, n_items)))


def top_k(
    scores_fn: ScoresFn, split: Split, k: int = 10, batch_users: int = 1024
) -> tuple[list[str], np.ndarray]:
    """Test users (sorted) and their top-k item indices (n_users, k), best first, ties by item order.

    A scorer with a `top(users, k)` (a sparse model: evaluation/sparse_top.py) ranks from its sparse
    rows, never a dense users x items block: memory O(batch_users x its stored scores per user). Any
    other is scored over the whole catalogue in batches of at most BLOCK_VALUES scores (batch_rows):
    memory O(BLOCK_VALUES), time O(test users x items).
    NaN scores are a model fault, not a ranking: they raise, naming the first user and item.
    """
    users = sorted(split.test_truth)
    out = np.zeros((len(users), min(k, split.maps.n_items)), dtype=np.int64)
    top = getattr(scores_fn, "top", None)
    batch = batch_users if top is not None else batch_rows(split.maps.n_items, batch_users)
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        idx = np.array([split.maps.user_index[u] for u in chunk], dtype=np.int64)
        if top is not None:
            out[start : start + len(chunk)] = top(idx, out.shape[1])
            continue
        scores = np.asarray(scores_fn(idx), dtype=np.float64)
        if scores.shape != (len(chunk), split.maps.n_items):
            raise ValueError(
                f"scores_fn returned shape {scores.shape}, want {(len(chunk), split.maps.n_items)}"
            )
        nan = np.isnan(scores)
        if nan.any():
            row, col = np.argwhere(nan)[0]
            raise ValueError(
                f"scores_fn returned NaN for user {chunk[row]!r}, item {split.maps.item_ids[col]!r} "
                f"({int(nan.sum())} NaN scores in this batch)"
            )
        out[start : start + len(chunk)] = top_rows(scores, out.shape[1])
    return users, out


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k best columns, best first, ties by column order: what a stable argsort's first k
    columns are, found by a linear-time partition per row and a sort of the k (plus ties) found, not a
    sort of the whole catalogue per user (O(n_items) instead of O(n_items log n_items); issue 21)."""
    n = scores.shape[1]
    if k >= n // 4:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    neg = -scores
    threshold = np.partition(neg, k - 1, axis=1)[:, k - 1]  # each row's k-th best score (negated)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for row in range(scores.shape[0]):
        cols = np.flatnonzero(neg[row] <= threshold[row])  # the k best and any ties, in column order
        out[row] = cols[np.argsort(neg[row, cols], kind="stable")[:k]]
    return out


def bought_items(split: Split, users: Sequence[str]) -> dict[str, set[str]]:
    """The items each of `users` bought in the training rows (purchase rows of the interactions mart,
    every line of a purchases split): what makes a truth item a repeat."""
    train = split.train
    if "n_purchases" in train:
        train = train.loc[train["n_purchases"] > 0]
    train = train.loc[train["user_id"].isin(set(users)), ["user_id", "item_id"]]
    out: dict[str, set[str]] = {str(u): set() for u in users}
    for user, items in train.groupby("user_id", sort=False)["item_id"]:
        out[str(user)] = set(items)
    return out


def _scored_part(ranked: list[Any], part: set[Any], k: int) -> tuple[float, float]:
    """(recall, ndcg) of `ranked` against one part of the truth; NaN when the part is empty."""
    if not part:
        return math.nan, math.nan
    return recall_at_k(ranked, part, k), ndcg_at_k(ranked, part, k)


def per_user_metrics(
    scores_fn: ScoresFn, split: Split, k: int = 10, batch_users: int = 1024
) -> dict[str, np.ndarray]:
    """Recall/NDCG/MRR@k per test user (sorted by user id) plus the top-k indices, for CIs and gates;
    also recall/NDCG@k on the repeat and the explore part of each truth (NaN where that part is empty)."""
    users, top = top_k(scores_fn, split, k, batch_users)
    item_ids = np.asarray(split.maps.item_ids)
    bought = bought_items(split, users)
    rows = []
    for user, row in zip(users, top, strict=True):
        ranked, truth = item_ids[row].tolist(), split.test_truth[user]
        repeat = truth & bought[user]
        rows.append(
            (
                recall_at_k(ranked, truth, k),
                ndcg_at_k(ranked, truth, k),
                mrr_at_k(ranked, truth, k),
                *_scored_part(ranked, repeat, k),
                *_scored_part(ranked, truth - repeat, k),
            )
        )
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return {
        "users": np.asarray(users, dtype=object),
        f"recall_at_{k}": arr[:, 0],
        f"ndcg_at_{k}": arr[:, 1],
        f"mrr_at_{k}": arr[:, 2],
        f"repeat_recall_at_{k}": arr[:, 3],
        f"repeat_ndcg_at_{k}": arr[:, 4],
        f"explore_recall_at_{k}": arr[:, 5],
        f"explore_ndcg_at_{k}": arr[:, 6],
        "top": top,
    }


def part_means(per_user: dict[str, np.ndarray], k: int = 10) -> dict[str, float | int]:
    """The repeat/explore means of per-user metrics (users without that part left out), how many users
    each mean is over, and the share of test users with any explore item (0.0 where nobody is scored)."""
    n = len(per_user["users"])
    out: dict[str, float | int] = {}
    for part in ("repeat", "explore"):
        recall = per_user[f"{part}_recall_at_{k}"]
        scored = ~np.isnan(recall)
        out[f"{part}_recall_at_{k}"] = float(recall[scored].mean()) if scored.any() else 0.0
        ndcg = per_user[f"{part}_ndcg_at_{k}"]
        out[f"{part}_ndcg_at_{k}"] = float(ndcg[scored].mean()) if scored.any() else 0.0
        out[f"{part}_users"] = int(scored.sum())
        out[f"{part}_user_share"] = float(scored.sum() / n) if n else 0.0
    return out


def evaluate(
    scores_fn: ScoresFn, split: Split, k: int = 10, batch_users: int = 1024
) -> dict[str, float | int]:
    """Mean recall@k and NDCG@k over users with hold-out purchases; plain floats for JSON/metadata.
    Also the repeat/explore split (`repeat_ndcg_at_10`, `explore_recall_at_10`, ..., `explore_user_share`:
    see the module docstring)."""
    per_user = per_user_metrics(scores_fn, split, k, batch_users)
    n = len(per_user["users"])
    return {
        f"recall_at_{k}": float(per_user[f"recall_at_{k}"].mean()) if n else 0.0,
        f"ndcg_at_{k}": float(per_user[f"ndcg_at_{k}"].mean()) if n else 0.0,
        "n_test_users": n,
        **part_means(per_user, k),
    }
