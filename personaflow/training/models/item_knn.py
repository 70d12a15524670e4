"""Item-kNN by sparse products only: top-k neighbours per item, top-n items per user, linear in users.

sim(j, i) = |buyers(j) & buyers(i)| / (sqrt(|buyers(j)| |buyers(i)|) + shrink) on the binary purchase
matrix B (users x items), the diagonal left out; every item keeps its `k` most similar items. A user's
score for item i is the sum of sim(j, i) over the items j they bought: their row of B @ S. Each user
keeps their `top_n` best items, sparse; popularity (far below any similarity) fills the rest, as in the
baselines, so every user gets a full ranking.

`k` is chosen on the validation view (models/fit.py validation_view) from a fixed grid, never by hand.

Memory bound: S holds n_items x k values. The co-occurrence B.T @ B is built for `chunk` items at a time
(at most chunk x n_items values, in practice the buyers' basket sizes summed) and cut to k per row at
once; scores are built for USER_CHUNK users at a time (at most min(items bought x k, n_items) values
each) and cut to top_n per user, so the stored scores are n_users x top_n. Time: the sum over users of
(items bought)^2 for S, the sum of (items bought) x k for the scores: linear in users at a bounded
basket size. No dense items x items or users x items matrix is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import SparseScores, popularity_vector, user_item_matrix
from personaflow.training.evaluation.metrics import TUNING_USERS, ScoresFn, evaluate, tuning_sample
from personaflow.training.evaluation.rebuy import bought_matrix, excluding

K_GRID = (20, 100, 400)  # neighbours per item, chosen on validation (the smallest wins a tie)
SHRINK = 10.0
TOP_N = 200  # items kept per user: far more than any served list
# users scored at a time: each one's min(items bought x k, n_items) scores are held before the cut to
# TOP_N (Online Retail, k 400: up to its 3,625 items per user, so 256 users < 1 M values)
USER_CHUNK = 256


@dataclass(frozen=True)
class KnnParams:
    k: int = 100
    shrink: float = SHRINK
    top_n: int = TOP_N


def top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's k largest values (ties: lower column first), vectorised over the whole matrix."""
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    # by row, then value down; lexsort is stable and sum_duplicates left each row's columns ascending, so
    # ties keep the lower column first without a third key (2.7x faster on 20 M entries: this sort is most
    # of item-kNN's scoring at 1 M customers, issue 21)
    order = np.lexsort((-matrix.data, rows))
    rank = np.arange(order.size) - np.repeat(matrix.indptr[:-1], counts)
    keep = order[rank < k]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)


def neighbours(binary: sp.csr_matrix, k: int, shrink: float = SHRINK, chunk: int = 2048) -> sp.csr_matrix:
    """S (n_items x n_items, k values a row): item j's k most similar items (cosine, shrunk)."""
    by_item = binary.T.tocsr()
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    blocks = []
    for start in range(0, by_item.shape[0], chunk):
        co = (by_item[start : start + chunk] @ binary).tocoo()
        rows = co.row + start
        off = rows != co.col  # an item is not its own neighbour
        vals = co.data[off] / (norms[rows[off]] * norms[co.col[off]] + shrink)
        block = sp.csr_matrix((vals, (co.row[off], co.col[off])), shape=(co.shape[0], binary.shape[1]))
        blocks.append(top_per_row(block, k))
    if not blocks:
        return sp.csr_matrix((0, binary.shape[1]))
    return sp.vstack(blocks).tocsr()


def knn_parts(
    split: Split,
    params: KnnParams,
    chunk: int = 2048,
    sim: sp.csr_matrix | None = None,
    user_chunk: int = USER_CHUNK,
    users: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Each user's top_n item-kNN scores (sparse) and the popularity fill under them (`sim`: neighbours
    already found on this split, at least params.k a row; cut to k here). `users` (sorted, distinct):
    only their rows are scored, the others left empty (tuning reads the tuning sample's rows alone)."""
    binary = (user_item_matrix(split) > 0).astype(np.float64).tocsr()
    sim = neighbours(binary, params.k, params.shrink, chunk) if sim is None else top_per_row(sim, params.k)
    if users is None:
        blocks = [
            top_per_row(binary[s : s + user_chunk] @ sim, params.top_n)
            for s in range(0, binary.shape[0], user_chunk)
        ]
        scores = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix(binary.shape)
    else:
        users = np.asarray(users, dtype=np.int64)
        blocks = [
            top_per_row(binary[users[s : s + user_chunk]] @ sim, params.top_n)
            for s in range(0, users.size, user_chunk)
        ]
        rows = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, binary.shape[1]))
        counts = np.zeros(binary.shape[0], dtype=np.int64)
        counts[users] = np.diff(rows.indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        scores = sp.csr_matrix((rows.data, rows.indices, indptr), shape=binary.shape)
    pop = popularity_vector(split)
    return scores, pop / (pop.max() + 1.0) * 1e-6


def products(split: Split, k: int) -> tuple[float, float]:
    """(neighbour search, scoring) sparse products of one `knn_parts` fit at `k` on this split: the
    co-occurrence B.T @ B takes sum over users of (items bought)^2; the scores B @ S take, over every
    bought (user, item j), the neighbours j keeps: min(k, j's co-bought items), bounded by the sum over
    j's buyers of their other items. The bound grows with the buyers per item until k caps it: a fit on
    a sample of the users does fewer products per user than on the whole shop (the probe's 1/8 of a
    100k shop kept 1/5 of the neighbours per item, issue 21). O(nnz) time and memory."""
    binary = (user_item_matrix(split) > 0).astype(np.float64).tocsr()
    deg = np.diff(binary.indptr).astype(np.float64)
    search = float((deg**2).sum())
    co = np.minimum(np.asarray(binary.T @ np.maximum(deg - 1.0, 0.0)).ravel(), binary.shape[1] - 1)
    buyers = np.diff(binary.tocsc().indptr).astype(np.float64)
    return search, float((buyers * np.minimum(float(k), co)).sum())


def fit_products(split: Split, tuning_users: int = TUNING_USERS) -> float:
    """Sparse products of a whole fit as recipe.fit_baseline runs it, counted on `split` (the validation
    view counted as the split, which holds it): the tuning's neighbour search at the grid's widest k and
    its scoring of the tuning sample at each k, then the final fit and the validation view's, each a
    search and a scoring of every user at the chosen k (the widest counted: it is not known yet)."""
    widest = max(K_GRID)
    search, _ = products(split, widest)
    scoring = {k: products(split, k)[1] for k in K_GRID}
    users = max(1, int(split.train["user_id"].nunique()))
    share = min(1.0, tuning_users / users)
    return 3 * search + 2 * scoring[widest] + share * sum(scoring.values())


def scorer(scores: sp.csr_matrix, fill: np.ndarray) -> ScoresFn:
    return SparseScores(scores, fill)  # ranked from its sparse rows (evaluation/sparse_top.py)


def tune(
    val: Split, exclude: bool = False, grid: tuple[int, ...] = K_GRID
) -> tuple[KnnParams, dict[str, float]]:
    """The grid's k with the best validation NDCG@10 (bought items last when `exclude`), and the curve.
    One neighbour search at the widest k; each k scores the tuning sample's users only (at most
    TUNING_USERS rows, ranked from their sparse rows: evaluation/sparse_top.py)."""
    bought = bought_matrix(val) if exclude else None
    curve: dict[str, float] = {}
    binary = (user_item_matrix(val) > 0).astype(np.float64).tocsr()
    widest = neighbours(binary, max(grid))  # found once; each k keeps the first k of every row
    scored_on = tuning_sample(val)  # at most TUNING_USERS validation users, seeded
    # the metric reads the sample's rows alone: only they are scored (O(sample), not O(users), per k)
    users = np.array(sorted(val.maps.user_index[u] for u in scored_on.test_truth), dtype=np.int64)
    for k in grid:
        fn = scorer(*knn_parts(val, KnnParams(k=k), sim=widest, users=users))
        curve[str(k)] = evaluate(fn if bought is None else excluding(fn, bought), scored_on)["ndcg_at_10"]
    best = max(grid, key=lambda k: (curve[str(k)], -k))
    return KnnParams(k=best), curve
