"""Sparse models (repeat-buy, TIFU-KNN, item-kNN, popularity) are ranked from their sparse rows, never a
dense test users x items block (evaluation/sparse_top.py, issue 21: the 1M night stopped in the gate's
dense evaluation), and the ranking is the dense one: the same top-k, ties included. Learned models are
scored over the catalogue in batches of bounded size (metrics.top_k)."""

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from personaflow.ingest.generate import generate_shop
from personaflow.training import export
from personaflow.training.data.purchases import load_online_retail, purchases_from_events, split_purchases
from personaflow.training.evaluation import metrics
from personaflow.training.evaluation.baselines import SparseScores
from personaflow.training.evaluation.metrics import per_user_metrics, top_rows
from personaflow.training.evaluation.rebuy import bought_matrix, decide_exclusion, excluding
from personaflow.training.recipe import Recipe, build

RETAIL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online-retail"


def _random_parts(seed: int, n_users: int = 80, n_items: int = 50):
    """Stored scores and a fill full of ties: small integers (and a few explicit zeros)."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(0, 4, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.15)
    matrix = sp.csr_matrix(dense.astype(np.float64))
    zeros = sp.csr_matrix((np.zeros(5), (rng.integers(0, n_users, 5), rng.integers(0, n_items, 5))),
                          shape=(n_users, n_items))  # fmt: skip
    matrix = (matrix + zeros).tocsr()  # explicit zeros stored: they must rank as the fill alone
    fill = rng.integers(0, 3, size=n_items) / 7.0
    return matrix, fill


def _spread(seed: int, shape: tuple[int, int], density: float, low: float, high: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    values = np.round(rng.uniform(low, high, size=shape), 1)  # rounded: ties
    return sp.csr_matrix(np.where(mask, values, 0.0))


@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("rerank", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_an_exported_sparse_model_is_ranked_as_its_dense_rows(k, rerank, exclude):
    matrix, fill = _random_parts(seed=k + 2 * rerank + 4 * exclude)
    n_users, n_items = matrix.shape
    items = np.random.default_rng(0).normal(size=(n_items, 8)).astype(np.float32)
    emb = export.baseline("tifu", matrix, fill, items)
    if rerank:
        emb = replace(emb, rerank=_spread(1, matrix.shape, 0.1, 1.0, 2.0))
    if exclude:
        emb = replace(emb, exclude=(_spread(2, matrix.shape, 0.3, 0.5, 1.0) > 0).astype(np.float64).tocsr())
    scores = export.ModelScores(emb)
    users = np.arange(n_users)
    np.testing.assert_array_equal(scores.top(users, k), top_rows(scores(users), k))


@pytest.mark.parametrize("exclude", [False, True])
def test_sparse_scores_are_ranked_as_their_dense_rows_and_keep_exclusion_sparse(exclude):
    matrix, fill = _random_parts(seed=11)
    fn = SparseScores(matrix, fill)
    if exclude:
        fn = excluding(fn, (_spread(3, matrix.shape, 0.3, 0.5, 1.0) > 0).astype(np.float64).tocsr())
        assert isinstance(fn, SparseScores)  # still ranked from its rows
    users = np.arange(matrix.shape[0])
    for k in (1, 5, 10, matrix.shape[1]):
        np.testing.assert_array_equal(fn.top(users, k), top_rows(fn(users), k))


def test_a_tie_at_the_boundary_is_settled_by_the_dense_row_and_only_there():
    # every fill equal: the k-th item of a user with few scores ties with every item left out
    matrix, _ = _random_parts(seed=5)
    fill = np.full(matrix.shape[1], 0.25)
    fn = SparseScores(matrix, fill)
    users = np.arange(matrix.shape[0])
    np.testing.assert_array_equal(fn.top(users, 10), top_rows(fn(users), 10))
    assert fn.top.fallback_users > 0
    # distinct fills: no tie, no dense row
    fn = SparseScores(matrix, np.arange(matrix.shape[1]) / 100.0)
    np.testing.assert_array_equal(fn.top(users, 10), top_rows(fn(users), 10))
    assert fn.top.fallback_users == 0


class _Counting:
    """A dense ScoresFn that counts the users it scored (the sparse path's fallback calls it)."""

    def __init__(self, fn):
        self.fn, self.users = fn, 0

    def __call__(self, users):
        self.users += len(users)
        return self.fn(users)


@lru_cache(maxsize=2)
def _real_split(shop: str):
    if shop == "online-retail":  # the real log, its last four months (test window: the last 30 days)
        purchases = load_online_retail(RETAIL)
        purchases = purchases.loc[purchases["ts"] >= pd.Timestamp("2011-08-09")]
        return split_purchases(purchases, test_days=30)
    shop = generate_shop(users=600, items=120, days=90, seed=3, rebuy=False)  # nobody re-buys
    return split_purchases(purchases_from_events(shop.events), test_days=14)


@pytest.mark.parametrize("shop", ["online-retail", "synthetic-norebuy"])
@pytest.mark.parametrize("model", ["popularity", "repeat_buy", "repeat_cadence", "tifu", "item_knn"])
def test_the_gate_ranks_every_sparse_model_from_its_rows_exactly_as_the_dense_path(shop, model):
    split = _real_split(shop)
    exclude, _ = decide_exclusion(split)
    assert exclude == (shop == "synthetic-norebuy")
    built = build(Recipe(model=model, val_days=14, exclude_bought=exclude), split)
    emb = built.exported
    variants = {"served": emb}
    # the re-ranked export: frozen candidate scores in (1, 2] over part of each user's row
    variants["reranked"] = replace(emb, rerank=_spread(4, emb.history.shape, 0.01, 1.0, 2.0))
    for name, variant in variants.items():
        scores = export.ModelScores(variant)
        assert scores.top is not None, name
        counting = _Counting(scores)
        scores._top.dense = counting  # the rows the sparse path could not decide alone
        sparse = per_user_metrics(scores, split)
        dense = per_user_metrics(lambda users, s=scores: s(users), split)  # no `top`: the dense path
        np.testing.assert_array_equal(sparse["top"], dense["top"], err_msg=name)
        np.testing.assert_array_equal(sparse["ndcg_at_10"], dense["ndcg_at_10"])
        # the dense rows were read only for the users the sparse path handed over: few of them
        assert counting.users == scores._top.fallback_users
        assert counting.users <= 0.05 * len(split.test_truth), (name, counting.users)
    # the validation view's scorer with bought items last (the recipe choice's scoring) stays sparse
    if exclude:
        val_fn = excluding(built.fitted.val_scores_fn, bought_matrix(built.fitted.val_split))
        assert getattr(val_fn, "top", None) is not None
        sparse = per_user_metrics(val_fn, built.fitted.val_split)["top"]
        dense = per_user_metrics(lambda u: val_fn(u), built.fitted.val_split)["top"]
        np.testing.assert_array_equal(sparse, dense)


def test_a_dense_model_is_scored_in_batches_of_bounded_size(monkeypatch):
    assert metrics.batch_rows(100_000) == 83  # users a batch at 100k items: 2^23 scores, not 1,024 rows
    split = _real_split("synthetic-norebuy")
    n_items = split.maps.n_items
    rng = np.random.default_rng(0)
    user_vecs = rng.normal(size=(split.maps.n_users, 4))
    item_vecs = rng.normal(size=(n_items, 4))
    seen = []

    def dense(users):
        seen.append(len(users))
        return user_vecs[users] @ item_vecs.T

    monkeypatch.setattr(metrics, "BLOCK_VALUES", 3 * n_items)
    bounded = per_user_metrics(dense, split)
    assert max(seen) == 3 and sum(seen) == len(split.test_truth)
    monkeypatch.setattr(metrics, "BLOCK_VALUES", 1 << 40)
    np.testing.assert_array_equal(bounded["top"], per_user_metrics(dense, split)["top"])


@pytest.mark.parametrize("size", [0, 1, 2, 1000])
def test_the_sort_based_unique_is_numpys_unique(size):
    """_sorted_unique replaces np.unique on the hot path (numpy 2.4's hash-based one was 40x slower on
    these keys): the same sorted distinct values, duplicates included in the input."""
    from personaflow.training.evaluation.sparse_top import _sorted_unique

    keys = np.random.default_rng(size).integers(0, max(1, size // 3), size).astype(np.int64)
    assert np.array_equal(_sorted_unique(keys), np.unique(keys))
