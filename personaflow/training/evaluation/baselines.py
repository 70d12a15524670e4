"""The baselines every model must beat, as score functions over (users, all train items).

- popularity over the last 30 days before the cut;
- the user's own purchase history ranked by count (people re-buy): ties by recency, then popularity;
- item-kNN: cosine similarity between item columns of the user-item matrix (scipy sparse);
- ALS on implicit feedback (the `implicit` package: a benchmark-only dependency, imported on use);
- the next-basket field's frequency baselines (Li et al., TOIS 2023): P-TopFreq, the user's own items by
  how many of their baskets hold them, and GP-TopFreq, the same then global basket popularity for the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personaflow.training.data.interactions import Split, cut_time, event_times
from personaflow.training.evaluation.metrics import ScoresFn
from personaflow.training.evaluation.sparse_top import SparseTop

POPULARITY_DAYS = 30


class SparseScores:
    """A ScoresFn of sparse per-(user, item) scores over a per-item fill (matrix[u] + fill), that also
    shows its parts: the re-ranker's candidate pools read the sparse rows instead of scoring the whole
    catalogue per user (personaflow/training/rerank/candidates.py), and `top` ranks a user from them
    (evaluation/sparse_top.py: the dense ranking's items and ties, memory linear in the stored scores).
    `exclude` (users x items, bought): those items ranked last (evaluation/rebuy.py `excluding`)."""

    def __init__(self, matrix: sp.csr_matrix, fill: np.ndarray, exclude: sp.csr_matrix | None = None) -> None:
        self.matrix = matrix.tocsr()
        self.fill = np.asarray(fill, dtype=np.float64)
        self.exclude = exclude
        self._top: SparseTop | None = None

    def __call__(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        rows = self.matrix[users].toarray() + self.fill
        if self.exclude is None:
            return rows
        from personaflow.training.evaluation.rebuy import mask_rows

        return mask_rows(rows, self.exclude[users])

    @property
    def top(self) -> SparseTop | None:
        """(users, k) -> top-k item indices, as ranking __call__'s rows (None: a NaN fill, ranked densely)."""
        if self._top is None:
            self._top = SparseTop(self.matrix, self.fill, self, exclude=self.exclude)
        return self._top if self._top.usable else None

    def excluding(self, bought: sp.csr_matrix) -> ScoresFn:
        """The same scores with `bought` items ranked last (rebuy.excluding keeps them sparse). Masked
        twice, the second mask goes below the first (mask_rows): that stays a dense mask."""
        if self.exclude is None:
            return SparseScores(self.matrix, self.fill, bought)
        from personaflow.training.evaluation.rebuy import mask_rows

        return lambda users: mask_rows(self(users), bought[np.asarray(users, dtype=np.int64)])


def user_item_matrix(split: Split, since: pd.Timestamp | None = None) -> sp.csr_matrix:
    """Purchase counts (n_users, n_items) from the training rows (optionally only those after `since`)."""
    train = split.train
    if since is not None:
        train = train.loc[event_times(train) >= since]
    rows = train["user_id"].map(split.maps.user_index).to_numpy(np.int64)
    cols = train["item_id"].map(split.maps.item_index).to_numpy(np.int64)
    vals = train["n_purchases"].to_numpy(np.float64)
    shape = (split.maps.n_users, split.maps.n_items)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix


def popularity_vector(split: Split, days: int = POPULARITY_DAYS) -> np.ndarray:
    """Purchases per item in the `days` before the cut; all-train purchases break ties (far below 1)."""
    since = cut_time(split) - pd.Timedelta(days=days)
    recent = np.asarray(user_item_matrix(split, since).sum(axis=0)).ravel()
    total = np.asarray(user_item_matrix(split).sum(axis=0)).ravel()
    return recent + total / (total.max() + 1.0) * 1e-3


def popularity(split: Split, days: int = POPULARITY_DAYS) -> ScoresFn:
    scores = popularity_vector(split, days)
    return lambda users: np.broadcast_to(scores, (len(users), scores.shape[0]))


def popularity_ranking(split: Split, days: int = POPULARITY_DAYS) -> list[tuple[str, float]]:
    """(item_id, score) best first: what serving falls back to for unknown users."""
    scores = popularity_vector(split, days)
    order = np.argsort(-scores, kind="stable")
    return [(split.maps.item_ids[i], float(scores[i])) for i in order]


def recency_matrix(split: Split) -> sp.csr_matrix:
    """Per (user, item): 1 / (1 + days between its last purchase and the cut); 0 when never bought."""
    train = split.train
    age = (cut_time(split) - event_times(train)).dt.total_seconds().to_numpy() / 86_400.0
    rows = train["user_id"].map(split.maps.user_index).to_numpy(np.int64)
    cols = train["item_id"].map(split.maps.item_index).to_numpy(np.int64)
    frame = pd.DataFrame({"r": rows, "c": cols, "age": age}).groupby(["r", "c"], as_index=False)["age"].min()
    vals = 1.0 / (1.0 + frame["age"].to_numpy())
    return sp.csr_matrix((vals, (frame["r"], frame["c"])), shape=(split.maps.n_users, split.maps.n_items))


def history_parts(split: Split) -> tuple[sp.csr_matrix, np.ndarray]:
    """own_history's two parts: a sparse (count + recency / 2) per bought item, and a dense popularity
    fill strictly below any recency tie-breaker. Saved with hybrid models so serving scores the same."""
    pop = popularity_vector(split)
    return (user_item_matrix(split) + recency_matrix(split) * 0.5).tocsr(), pop / (pop.max() + 1.0) * 1e-3


def own_history(split: Split) -> ScoresFn:
    """Count of the user's purchases of each item; recency (< 1) breaks ties, popularity fills the rest."""
    history, fill = history_parts(split)

    def scores_fn(users: np.ndarray) -> np.ndarray:
        return history[np.asarray(users, dtype=np.int64)].toarray() + fill

    return scores_fn


def item_knn(split: Split, neighbours: int = 200, shrink: float = 10.0) -> ScoresFn:
    """score(u, i) = sum over u's bought items j of cos(i, j) (top `neighbours` per item kept)."""
    binary = (user_item_matrix(split) > 0).astype(np.float64).tocsc()
    co = (binary.T @ binary).toarray()
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + shrink)
    np.fill_diagonal(sim, 0.0)
    if neighbours < sim.shape[0]:
        cut = -np.partition(-sim, neighbours - 1, axis=1)[:, neighbours - 1 : neighbours]
        sim = np.where(sim >= cut, sim, 0.0)
    history = binary.tocsr()
    pop = popularity_vector(split)
    fill = pop / (pop.max() + 1.0) * 1e-6  # users with no neighbours still get a full ranking

    def scores_fn(users: np.ndarray) -> np.ndarray:
        return np.asarray(history[np.asarray(users, dtype=np.int64)] @ sim.T) + fill

    return scores_fn


def als(
    split: Split,
    factors: int = 64,
    iterations: int = 15,
    reg: float = 0.05,
    alpha: float = 10.0,
    seed: int = 0,
) -> ScoresFn:
    """implicit's ALS on confidence 1 + alpha * log1p(count)."""
    import implicit  # benchmark-only dependency (pyproject extra `bench`)
    from threadpoolctl import threadpool_limits

    counts = user_item_matrix(split)
    conf = counts.copy()
    conf.data = 1.0 + alpha * np.log1p(conf.data)
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=factors, iterations=iterations, regularization=reg, random_state=seed
    )
    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not BLAS's
        model.fit(conf.astype(np.float32).tocsr(), show_progress=False)
    users_f, items_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda users: users_f[np.asarray(users, dtype=np.int64)] @ items_f.T


def basket_rows(split: Split) -> pd.DataFrame:
    """One row per distinct (user index `u`, item index `i`, basket time `t`) of the training purchases. A
    basket is one timestamp (an invoice) where rows carry `ts`, else one day (the nightly mart). Memory:
    linear in the training rows."""
    train = split.train
    if "n_purchases" in train:
        train = train.loc[train["n_purchases"] > 0]
    times = event_times(train)
    if "ts" not in train:
        times = times.dt.floor("D")
    return pd.DataFrame(
        {
            "u": train["user_id"].map(split.maps.user_index).to_numpy(np.int64),
            "i": train["item_id"].map(split.maps.item_index).to_numpy(np.int64),
            "t": times.to_numpy(),
        }
    ).drop_duplicates()


def basket_counts(split: Split) -> sp.csr_matrix:
    """Per (user, item): in how many of the user's training baskets the item is (`basket_rows`)."""
    frame = basket_rows(split)
    vals = np.ones(len(frame))
    matrix = sp.csr_matrix((vals, (frame["u"], frame["i"])), shape=(split.maps.n_users, split.maps.n_items))
    matrix.sum_duplicates()
    return matrix


def p_topfreq(split: Split) -> ScoresFn:
    """P-TopFreq: the user's own items by basket frequency. Items the user never bought all score 0, so
    they follow in catalogue order (the field's P-TopFreq recommends nothing there)."""
    counts = basket_counts(split)
    return lambda users: counts[np.asarray(users, dtype=np.int64)].toarray()


def gp_topfreq(split: Split) -> ScoresFn:
    """GP-TopFreq: the user's own items by basket frequency, then every other item by global basket
    frequency (a fill in [0, 1), below one basket; it also breaks the user's own ties)."""
    counts = basket_counts(split)
    total = np.asarray(counts.sum(axis=0)).ravel()
    fill = total / (total.max() + 1.0)
    return lambda users: counts[np.asarray(users, dtype=np.int64)].toarray() + fill


BASELINES = {
    "popularity": popularity,
    "own_history": own_history,
    "item_knn": item_knn,
    "als": als,
    "p_topfreq": p_topfreq,
    "gp_topfreq": gp_topfreq,
}
