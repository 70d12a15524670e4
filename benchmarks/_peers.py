"""Peers the project did not write, as ScoresFns over a personaflow Split (benchmark-only extras, pyproject
`bench`): cornac 3.0.1's TIFU-KNN and UP-CF, implicit 0.7.3's ALS, BPR and item-kNN (BM25).

Each peer is tuned on the same validation cut as our models (`training.models.fit.validation_view`:
retail-30d's inner time cut, or each user's basket before the last) over a small grid, reported.

Checked before trusted (shared/STACK.md), and the fixes stated:
- cornac TIFU-KNN: `score` averages the neighbours with `np.mean` without `axis`, a constant, so its
  ranking is the user's own vector whatever alpha and k. Fixed here: the mean over the neighbours
  (axis 0). Its exact KD-tree query over dense item vectors is replaced by the same exact Euclidean
  k-nearest search done in batches (the KD-tree in thousands of dimensions is a brute force one user at
  a time); the user vectors are cornac's own `_compute_user_vector` (fit: all training baskets but the
  last, as cornac fits; query: all of them).
- cornac UP-CF: `score` indexes `.tocsr()[0]`, 1-D with scipy's sparse arrays (similaripy 0.7.0), and
  segfaults. Fixed here and batched: the same asymmetric cosine (similaripy, top 100 of the stacked
  [query; training users] rows, the query itself included) and the same user-wise popularity of the
  last `recency` baskets; `check_upcf` compares it with cornac's own fixed per-user score.
Memory: TIFU-KNN holds dense users x items vectors and a batch x users distance block, UP-CF a
batch x users similarity block: quadratic, a benchmark peer at a few thousand users, not a nightly step.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import basket_rows
from personaflow.training.evaluation.metrics import ScoresFn, evaluate

BATCH = 512


def baskets_of(split: Split) -> list[list[list[int]]]:
    """Per user index, the training baskets in time order as lists of item indices (a basket: one
    timestamp, or one day where rows have no `ts`)."""
    frame = basket_rows(split)
    out: list[list[list[int]]] = [[] for _ in range(split.maps.n_users)]
    for (u, _), items in frame.sort_values(["u", "t"], kind="stable").groupby(["u", "t"], sort=False)["i"]:
        out[int(u)].append(items.tolist())
    return out


# --- cornac TIFU-KNN (fixed neighbour mean) ---


def _tifu_model(n_items: int, within: float, group: float, n_groups: int):
    import cornac

    model = cornac.models.TIFUKNN(within_decay_rate=within, group_decay_rate=group, n_groups=n_groups)
    model.iid_map, model.num_items = None, n_items  # what cornac's fit sets; total_items reads them
    return model


def _tifu_vectors(split: Split, within: float, group: float, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors from all training baskets, neighbour vectors from all but the last), cornac's code."""
    model = _tifu_model(split.maps.n_items, within, group, n_groups)
    baskets = baskets_of(split)
    query = np.asarray([model._compute_user_vector(b) for b in baskets], dtype=np.float32)
    pool = np.asarray([model._compute_user_vector(b[:-1]) for b in baskets], dtype=np.float32)
    return query, pool


def neighbour_means(query: np.ndarray, pool: np.ndarray, users: np.ndarray, ks: tuple) -> dict:
    """k -> (users, items) mean of each user's k nearest pool vectors, one distance pass for all k."""
    users = np.asarray(users, dtype=np.int64)
    out = {k: np.empty((users.size, query.shape[1]), dtype=np.float32) for k in ks}
    top = min(max(ks), pool.shape[0])
    p_sq = (pool.astype(np.float64) ** 2).sum(1)
    for s in range(0, users.size, BATCH):
        chunk = users[s : s + BATCH]
        q = query[chunk]
        dist = (q.astype(np.float64) ** 2).sum(1)[:, None] + p_sq[None, :] - 2.0 * (q @ pool.T)
        near = np.argpartition(dist, top - 1, axis=1)[:, :top]
        near = np.take_along_axis(near, np.argsort(np.take_along_axis(dist, near, 1), axis=1), 1)
        for k in ks:
            out[k][s : s + chunk.size] = pool[near[:, : min(k, top)]].mean(axis=1)
    return out


def tifu_scores(query: np.ndarray, near: np.ndarray, users: np.ndarray, alpha: float) -> ScoresFn:
    """The fixed cornac score for `users` (whose neighbour means `near` holds, row by row)."""
    row_of = {int(u): r for r, u in enumerate(users)}

    def scores_fn(batch: np.ndarray) -> np.ndarray:
        rows = np.array([row_of[int(u)] for u in batch], dtype=np.int64)
        return alpha * query[np.asarray(batch, dtype=np.int64)] + (1 - alpha) * near[rows]

    return scores_fn


def _truth_users(split: Split) -> np.ndarray:
    return np.array(sorted(split.maps.user_index[u] for u in split.test_truth), dtype=np.int64)


TIFU_GRID = {
    "within": (0.9, 1.0),
    "group": (0.7,),
    "n_groups": (7,),
    "k": (100, 300),
    "alpha": (0.5, 0.7, 0.9),
}


def cornac_tifu(split: Split, val: Split) -> tuple[ScoresFn, dict]:
    best, curve = (-1.0, None), {}
    users = _truth_users(val)
    for within, group, n_groups in itertools.product(
        TIFU_GRID["within"], TIFU_GRID["group"], TIFU_GRID["n_groups"]
    ):
        query, pool = _tifu_vectors(val, within, group, n_groups)
        means = neighbour_means(query, pool, users, TIFU_GRID["k"])
        for k, alpha in itertools.product(TIFU_GRID["k"], TIFU_GRID["alpha"]):
            ndcg = evaluate(tifu_scores(query, means[k], users, alpha), val)["ndcg_at_10"]
            params = (within, group, n_groups, k, alpha)
            curve[str(params)] = round(ndcg, 4)
            best = max(best, (ndcg, params), key=lambda x: x[0])
    within, group, n_groups, k, alpha = best[1]
    query, pool = _tifu_vectors(split, within, group, n_groups)
    users = _truth_users(split)
    near = neighbour_means(query, pool, users, (k,))[k]
    info = {
        "params": dict(within=within, group=group, n_groups=n_groups, k=k, alpha=alpha),
        "val_curve": curve,
    }
    return tifu_scores(query, near, users, alpha), info


# --- cornac UP-CF (fixed indexing, batched) ---


def _upcf_parts(split: Split, recency: int) -> tuple[sp.csr_matrix, sp.csr_matrix, list]:
    """(user x item line counts as cornac's uir matrix, user-wise popularity of the last `recency`
    baskets, the baskets)."""
    baskets = baskets_of(split)
    rows, cols, vals = [], [], []
    for u, bs in enumerate(baskets):
        recent = bs[-recency:] if recency > 0 else bs
        counts: dict[int, int] = {}
        for b in recent:
            for i in set(b):
                counts[i] = counts.get(i, 0) + 1
        denom = min(recency, len(recent)) if recency > 0 else len(recent)
        for i, c in counts.items():
            rows.append(u)
            cols.append(i)
            vals.append(c / max(denom, 1))
    shape = (split.maps.n_users, split.maps.n_items)
    pop = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=shape)
    u_i = [(u, i) for u, bs in enumerate(baskets) for b in bs for i in b]
    uir = sp.csr_matrix(
        (np.ones(len(u_i), np.float32), ([a for a, _ in u_i], [b for _, b in u_i])), shape=shape
    )
    uir.sum_duplicates()
    return uir, pop, baskets


def upcf_scores(split: Split, recency: int, locality: float, asymmetry: float, k: int = 100) -> ScoresFn:
    """score(u) = sum over u's top-k asymmetric-cosine neighbours v (u's own query row included, as
    cornac stacks it on top) of sim^locality * popularity_v."""
    import similaripy as sim

    uir, pop, baskets = _upcf_parts(split, recency)
    binary = uir.copy()
    binary.data[:] = 1.0
    uir_t = sp.csr_matrix(uir.T)

    def scores_fn(users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        q = binary[users]
        q_norm = np.asarray(q.sum(axis=1)).ravel()  # binary: squared norm = count
        others = sim.asymmetric_cosine(
            q, uir_t, alpha=asymmetry, k=k, verbose=False, format_output="csr"
        ).tocsr()
        # the query's similarity to itself (cornac's row 0): q.q / (|q|^2a |q|^2(1-a)) = 1 when q is not empty
        self_sim = (q_norm > 0).astype(np.float64)
        out = np.zeros((users.size, split.maps.n_items))
        for r in range(users.size):
            lo, hi = others.indptr[r], others.indptr[r + 1]
            vals, cols = others.data[lo:hi].astype(np.float64), others.indices[lo:hi]
            if vals.size >= k and self_sim[r] <= vals.min():
                keep_self = False
            else:
                keep_self = self_sim[r] > 0
                if keep_self and vals.size >= k:  # the self row displaces the k-th neighbour
                    drop = np.argmin(vals)
                    vals, cols = np.delete(vals, drop), np.delete(cols, drop)
            row = np.asarray(
                (
                    sp.csr_matrix(
                        (vals**locality, (np.zeros_like(cols), cols)), shape=(1, split.maps.n_users)
                    )
                    @ pop
                ).todense()
            ).ravel()
            if keep_self:
                row += self_sim[r] ** locality * pop[users[r]].toarray().ravel()
            out[r] = row
        return out

    return scores_fn


UPCF_GRID = {"recency": (1, 5, 25), "locality": (1, 5), "asymmetry": (0.25,)}


def cornac_upcf(split: Split, val: Split) -> tuple[ScoresFn, dict]:
    best, curve = (-1.0, None), {}
    for params in itertools.product(UPCF_GRID["recency"], UPCF_GRID["locality"], UPCF_GRID["asymmetry"]):
        ndcg = evaluate(upcf_scores(val, *params), val)["ndcg_at_10"]
        curve[str(params)] = round(ndcg, 4)
        best = max(best, (ndcg, params), key=lambda x: x[0])
    recency, locality, asymmetry = best[1]
    info = {"params": dict(recency=recency, locality=locality, asymmetry=asymmetry), "val_curve": curve}
    return upcf_scores(split, *best[1]), info


def check_upcf(split: Split, n_users: int = 20, params: tuple = (1, 1, 0.25)) -> float:
    """Mean share of the top 10 the batched UP-CF and cornac's own per-user score (with the `[[0]]`
    fix) agree on, over the first `n_users` users: the peer is checked before it is trusted. (Scores
    differ slightly where neighbours tie at the 100th place: similaripy keeps either.)"""
    import cornac
    import similaripy as sim
    from scipy.sparse import csr_matrix, vstack

    uir, pop, baskets = _upcf_parts(split, params[0])
    model = cornac.models.UPCF(recency=params[0], locality=params[1], asymmetry=params[2])
    model.iid_map, model.num_items = None, split.maps.n_items
    model.user_item_matrix, model.user_wise_popularity = uir, pop
    users = np.arange(min(n_users, split.maps.n_users))
    ours = upcf_scores(split, *params)(users)
    agree = []
    for r, u in enumerate(users):
        hist = baskets[u]
        items = sorted(set(itertools.chain.from_iterable(hist)))
        current = csr_matrix(
            (np.ones(len(items)), (np.zeros(len(items)), items)), shape=(1, model.total_items)
        )
        popularity = vstack([model._get_user_wise_popularity(hist), pop])
        sims = sim.asymmetric_cosine(vstack([current, uir]), alpha=params[2], target_rows=[0], verbose=False)
        theirs = (
            sim.dot_product(sims.power(params[1]).tocsr()[[0]], popularity, verbose=False).toarray().ravel()
        )
        top = set(np.argsort(-theirs, kind="stable")[:10]) & set(np.argsort(-ours[r], kind="stable")[:10])
        agree.append(len(top) / 10)
    return float(np.mean(agree))


# --- implicit: ALS, BPR, item-kNN (BM25) ---


def _counts(split: Split) -> sp.csr_matrix:
    from personaflow.training.evaluation.baselines import user_item_matrix

    return user_item_matrix(split).astype(np.float32).tocsr()


def _factor_scores(model) -> ScoresFn:
    users_f, items_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda users: users_f[np.asarray(users, dtype=np.int64)] @ items_f.T


def implicit_als(split: Split, factors: int, reg: float, alpha: float, seed: int = 0) -> ScoresFn:
    import implicit
    from threadpoolctl import threadpool_limits

    conf = _counts(split)
    conf.data = 1.0 + alpha * np.log1p(conf.data)
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=factors, iterations=15, regularization=reg, random_state=seed
    )
    with threadpool_limits(1, "blas"):
        model.fit(conf, show_progress=False)
    return _factor_scores(model)


def implicit_bpr(split: Split, factors: int, lr: float, reg: float, seed: int = 0) -> ScoresFn:
    import implicit

    binary = _counts(split)
    binary.data[:] = 1.0
    model = implicit.cpu.bpr.BayesianPersonalizedRanking(
        factors=factors, learning_rate=lr, regularization=reg, iterations=100, random_state=seed
    )
    model.fit(binary, show_progress=False)
    return _factor_scores(model)


def implicit_knn(split: Split, k: int, k1: float, b: float) -> ScoresFn:
    from implicit.nearest_neighbours import BM25Recommender

    counts = _counts(split)
    model = BM25Recommender(K=k, K1=k1, B=b)
    model.fit(counts, show_progress=False)
    sim_t = model.similarity.T.tocsr()

    def scores_fn(users: np.ndarray) -> np.ndarray:
        return np.asarray((counts[np.asarray(users, dtype=np.int64)] @ sim_t).todense())

    return scores_fn


IMPLICIT_GRIDS = {
    "als": (implicit_als, {"factors": (32, 128), "reg": (0.05, 1.0), "alpha": (1.0, 10.0)}),
    "bpr": (implicit_bpr, {"factors": (64,), "lr": (0.01, 0.05), "reg": (0.001, 0.01)}),
    "item_knn_bm25": (implicit_knn, {"k": (50, 200), "k1": (1.2,), "b": (0.25, 0.75)}),
}


def tuned_implicit(name: str, split: Split, val: Split) -> tuple[ScoresFn, dict]:
    make, grid = IMPLICIT_GRIDS[name]
    best, curve = (-1.0, None), {}
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        ndcg = evaluate(make(val, **params), val)["ndcg_at_10"]
        curve[str(values)] = round(ndcg, 4)
        best = max(best, (ndcg, params), key=lambda x: x[0])
    return make(split, **best[1]), {"params": best[1], "val_curve": curve}


def make_peers(split: Split, val: Split) -> dict:
    """name -> () -> (ScoresFn, info), each tuned on `val`."""
    return {
        "cornac_tifuknn": lambda: cornac_tifu(split, val),
        "cornac_upcf": lambda: cornac_upcf(split, val),
        "implicit_als": lambda: tuned_implicit("als", split, val),
        "implicit_bpr": lambda: tuned_implicit("bpr", split, val),
        "implicit_item_knn_bm25": lambda: tuned_implicit("item_knn_bm25", split, val),
    }
