"""The re-ranker's SVD features (rerank/candidates.py: item_factors, Quotas.svd): PureSVD scores on a
hand-made two-taste shop, the same scores from both factorisations, the pools (the recipe's round trip
is in test_cadence.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from personaflow.training.data.purchases import split_purchases
from personaflow.training.evaluation.baselines import SparseScores, history_parts
from personaflow.training.rerank import candidates
from personaflow.training.rerank.candidates import (
    SVD_FEATURES,
    CandidateBuilder,
    Quotas,
    item_factors,
    log_counts,
)


def _two_tastes():
    """40 customers: 20 buy only from items a0..a9, 20 only from b0..b9; customer a-0 never bought a3,
    which every other a-customer bought."""
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2024-01-01 12:00")
    rows = []
    for taste in "ab":
        for u in range(20):
            bought = set(rng.choice(10, size=6, replace=False)) | {3}
            if (taste, u) == ("a", 0):
                bought.discard(3)
            for day, item in enumerate(sorted(bought)):
                rows.append((f"{taste}-{u}", f"{taste}{item}", start + pd.Timedelta(days=day)))
    rows.append(("a-1", "a3", start + pd.Timedelta(days=40)))  # one row in the test window
    return split_purchases(pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]), test_days=7)


def _score(counts: sp.csr_matrix, factors: np.ndarray, user: int, item: int) -> float:
    return float((log_counts(counts[[user]]) @ factors @ factors[item])[0])


def test_puresvd_scores_an_unbought_item_of_the_users_taste_above_the_other_tastes_items():
    split = _two_tastes()
    builder = CandidateBuilder(split, SparseScores(*history_parts(split)), Quotas(size=20, svd=True))
    counts, factors = builder.counts, item_factors(builder.counts, rank=2)
    assert factors.shape == (20, 2)
    u, item = split.maps.user_index, split.maps.item_index
    missing = _score(counts, factors, u["a-0"], item["a3"])
    assert missing > 0.25  # log(2) = 0.69 is a bought item's own entry
    for other in range(10):  # every item of the other taste scores ~0 for this user
        assert missing > 10 * abs(_score(counts, factors, u["a-0"], item[f"b{other}"]))


def test_both_factorisations_give_the_same_scores(monkeypatch):
    """ARPACK (many items) and eigh of the Gram matrix (few) span the same subspace where the spectrum has
    a gap at the rank, and the score x_u V V_i does not depend on the basis: the same numbers."""
    rng = np.random.default_rng(3)
    users, items, blocks = 300, 600, 5
    taste = rng.integers(0, blocks, size=users)
    rows, cols = [], []
    for user in range(users):
        own = np.flatnonzero(np.arange(items) % blocks == taste[user])
        picks = np.concatenate([rng.choice(own, 25, replace=False), rng.choice(items, 2, replace=False)])
        rows += [user] * picks.size
        cols += list(picks)
    counts = sp.csr_matrix((rng.integers(1, 4, len(rows)).astype(float), (rows, cols)), shape=(users, items))
    arpack = item_factors(counts, rank=blocks)
    monkeypatch.setattr(candidates, "DENSE_ITEMS", items)
    dense = item_factors(counts, rank=blocks)
    x = log_counts(counts)
    np.testing.assert_allclose(x @ arpack @ arpack.T, x @ dense @ dense.T, atol=2e-3)


def test_the_pools_carry_the_svd_features_only_when_asked():
    split = _two_tastes()
    retrieval = SparseScores(*history_parts(split))
    plain = CandidateBuilder(split, retrieval, Quotas(size=20))
    assert not set(SVD_FEATURES) & set(plain.feature_names) and plain.factors is None
    builder = CandidateBuilder(split, retrieval, Quotas(size=20, svd=True))
    assert builder.feature_names[-3:] == SVD_FEATURES
    users = np.array([split.maps.user_index["a-0"], split.maps.user_index["b-4"]])
    cands = builder.build(users)
    for row, user in enumerate(users):
        for j, item in enumerate(cands.items[row]):
            expected = _score(builder.counts, builder.factors, user, item)
            assert cands.features["svd_score"][row, j] == pytest.approx(expected, abs=1e-5)
    distinct = np.diff(builder.counts.indptr)[users]
    np.testing.assert_array_equal(cands.features["user_items"][:, 0], distinct)
    buyers = np.asarray((builder.counts > 0).sum(axis=0)).ravel()
    np.testing.assert_array_equal(cands.features["item_buyers"], buyers[cands.items])


def test_factors_of_an_empty_or_one_user_matrix_are_empty():
    assert item_factors(sp.csr_matrix((5, 7))).shape == (7, 0)
    assert item_factors(sp.csr_matrix(np.ones((1, 7)))).shape == (7, 0)
