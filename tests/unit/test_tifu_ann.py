"""TIFU-KNN's neighbour search without all-pairs: the ANN path agrees with the exact one."""

import numpy as np
import pytest
import scipy.sparse as sp

from personaflow.ingest.generate import generate_shop
from personaflow.training.data.purchases import purchases_from_events, split_purchases
from personaflow.training.evaluation.baselines import popularity_vector
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.evaluation.tifu import (
    NeighbourSearch,
    TifuParams,
    neighbour_mean,
    personal_vectors,
    search_method,
    tifu,
    tifu_parts,
    tune_tifu,
)


@pytest.fixture(scope="module")
def shop_split():
    shop = generate_shop(users=3000, items=300, days=40, seed=3)
    return split_purchases(purchases_from_events(shop.events), test_days=10)


def _cosines(r: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.asarray(r.multiply(r).sum(axis=1)).ravel())
    unit = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ r
    sim = (unit[users] @ unit.T).toarray()
    sim[np.arange(users.size), users] = -np.inf
    return sim


@pytest.mark.parametrize("k", [10, 50])
def test_ann_neighbours_agree_with_exact_ones(shop_split, k):
    r = personal_vectors(shop_split, 0.9)
    users = np.arange(r.shape[0])
    exact = NeighbourSearch(r, k, "exact").query(users)
    ann_search = NeighbourSearch(r, k, "ann")
    assert ann_search.method == "ann" and r.shape[1] > 64  # the reduced (SVD) path, not a dense copy
    ann = ann_search.query(users)
    assert ann.shape == (users.size, k) and (ann >= 0).all() and (ann != users[:, None]).all()
    assert all(np.unique(row).size == k for row in ann)  # no neighbour twice
    # recall@k, tie-aware: an ANN neighbour counts when its exact cosine reaches the exact k-th best
    # (many users share the k-th cosine, often 0, and any of them is an exact answer)
    sim = _cosines(r, users)
    kth = np.take_along_axis(sim, exact, axis=1).min(axis=1)
    recall = (np.take_along_axis(sim, ann, axis=1) >= kth[:, None] - 1e-12).mean()
    assert recall >= 0.95, recall


def test_neighbour_mean_rows_for_some_users_are_those_of_all_users(shop_split):
    r = personal_vectors(shop_split, 0.8)
    users = np.array([5, 0, 17, 400])
    full = neighbour_mean(r, 20, search="ann", batch=128)
    some = neighbour_mean(r, 20, search="ann", users=users)
    assert full.shape == r.shape and some.shape == (4, r.shape[1])
    np.testing.assert_allclose(some.toarray(), full[users].toarray())
    # each row is a mean of 20 other users' rows: its mass is the mean of theirs (r rows sum to <= 1)
    row_mass = np.asarray(r.sum(axis=1)).ravel()
    assert np.asarray(full.sum(axis=1)).ravel().max() <= row_mass.max() + 1e-9


def test_auto_search_is_exact_for_a_small_shop_and_ann_above_the_threshold():
    assert search_method(500) == "exact" and search_method(50_000) == "ann"
    assert search_method(500, "ann") == "ann" and search_method(50_000, "exact") == "exact"
    assert search_method(2_000, exact_max_users=1_000) == "ann"
    with pytest.raises(ValueError, match="unknown neighbour search"):
        search_method(10, "brute")


def test_tifu_with_ann_scores_as_well_as_exact(shop_split):
    params = TifuParams(neighbours=50, alpha=0.6)
    scores = {}
    for search in ("exact", "ann"):
        matrix, fill = tifu_parts(shop_split, TifuParams(**{**params.__dict__, "search": search}))
        assert np.diff(matrix.indptr).max() <= params.keep
        scores[search] = evaluate(lambda u, m=matrix, f=fill: m[u].toarray() + f, shop_split)["ndcg_at_10"]
    pop = popularity_vector(shop_split)
    popular = evaluate(lambda u: np.tile(pop, (len(u), 1)), shop_split)["ndcg_at_10"]
    assert scores["exact"] > popular  # the check below compares two working models
    assert abs(scores["ann"] - scores["exact"]) <= 0.02, scores


def test_tune_tifu_scores_only_validation_users_and_matches_the_full_search(shop_split):
    """The tuning queries neighbours for the validation users only: its curve equals the one from
    every user's neighbour mean (the exact search makes the two comparable to the last digit)."""
    grid = {"decay": (0.8, 1.0), "neighbours": (30,), "alpha": (0.4, 0.8)}
    params, curve = tune_tifu(shop_split, grid, search="exact")
    pop = popularity_vector(shop_split)
    fill = pop / (pop.max() + 1.0) * 1e-7
    for decay in grid["decay"]:
        r = personal_vectors(shop_split, decay)
        near = neighbour_mean(r, 30, search="exact")
        for alpha in grid["alpha"]:
            full = (alpha * r + (1 - alpha) * near).tocsr()
            want = evaluate(lambda u, m=full: m[u].toarray() + fill, shop_split)["ndcg_at_10"]
            assert curve[str((decay, 30, alpha))] == pytest.approx(want, abs=1e-12)
    assert curve[str((params.decay, 30, params.alpha))] == max(curve.values())


def test_tune_tifu_scores_each_grid_point_as_the_served_model_ranks(shop_split):
    """Each tuning row is cut to its `keep` best and lifted over the fill as tifu_parts does the served
    model's (issue 21: the cut made the tuning 5x cheaper): with rows cut to 20 of 300 items, every point
    of the curve is the NDCG@10 of the model tifu() would serve with those parameters, and the best is
    picked."""
    grid = {"decay": (0.8, 1.0), "neighbours": (30,), "alpha": (0.4, 0.8)}
    params, curve = tune_tifu(shop_split, grid, search="exact", keep=20)
    for decay, alpha in [(d, a) for d in grid["decay"] for a in grid["alpha"]]:
        served = tifu(
            shop_split, TifuParams(decay=decay, neighbours=30, alpha=alpha, keep=20, search="exact")
        )
        want = evaluate(served, shop_split)["ndcg_at_10"]
        assert curve[str((decay, 30, alpha))] == pytest.approx(want, abs=1e-12)
    assert params.keep == 20
    assert curve[str((params.decay, 30, params.alpha))] == max(curve.values())
