"""Candidate generation for the re-ranker: a fixed-size pool per user and its per-(user, item) features.

Sources, each with a quota, pooled by their best normalised rank (rank inside a source / its quota),
so no source can crowd out the others; recent popularity fills up to `size`:
- retrieval: the top of any ScoresFn (BPR, SASRec, ...);
- history: the user's own purchases, by count then recency (people re-buy);
- co-purchase: neighbours of the user's recent items, cosine of item co-occurrence in the same
  user-day basket, weighted by how recently the user bought the anchor item;
- popularity: purchases in the last 30 days before the cut.
Features per (user, candidate): retrieval score (per-user min-max) and rank; times bought (all and in
the last 30 days) and days since last bought (NaN if never); co-purchase score; recent popularity;
item and user re-buy rates; source flags; and, given item groups (category, brand), the user's share
of purchases in the candidate's group.
Everything is computed from `split.train` (rows before the split's cut) and the ScoresFn alone, so a
validation view's candidates never see its validation window and the test's never see the test window.

Memory (issue 21): the builder holds sparse per-(user, item) tables (nnz of the training rows), the
item-item co-purchase cosine (at most the sum over baskets of basket size^2 entries) and, per item
group column, a sparse users x groups share table. `build(users)` works on a dense chunk of
len(users) x n_items per source; `chunks` cuts the users so one chunk holds at most CHUNK_CELLS
(user, item) cells, whatever the shop's size. A pass over all users costs O(n_users x n_items) time,
because a ScoresFn scores the whole catalogue; its memory stays that of one chunk plus the output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personaflow.training.data.interactions import Split, cut_time, event_times
from personaflow.training.evaluation.baselines import popularity_vector, recency_matrix, user_item_matrix
from personaflow.training.evaluation.metrics import ScoresFn

CROSS_FEATURES = (
    "ret_score", "ret_rank", "n_bought", "n_bought_recent", "days_since", "co_score", "pop_recent",
    "item_repeat_rate", "user_repeat_rate", "in_retrieval", "in_history", "in_copurchase",
)  # fmt: skip
RECENT_DAYS = 30
# at most this many (user, item) cells per chunk in `CandidateBuilder.chunks`: ~12 dense float64 arrays
# of that size live at once in `build`, ~200 MB; retail-30d (3,625 items) keeps its 512-user chunks
CHUNK_CELLS = 1 << 21


@dataclass(frozen=True)
class Quotas:
    size: int = 100
    retrieval: int = 50
    history: int = 50
    copurchase: int = 50


@dataclass(frozen=True)
class Candidates:
    """items[u_row, j] = the j-th candidate (item index) of users[u_row]; features share that layout."""

    users: np.ndarray  # (n,) user indices
    items: np.ndarray  # (n, size) int64
    features: dict[str, np.ndarray]  # name -> (n, size) float32; NaN = not defined (never bought)


def copurchase_similarity(split: Split) -> sp.csr_matrix:
    """Item-item cosine of co-occurrence inside (user, day) baskets of the training rows; zero diagonal."""
    train = split.train
    day = event_times(train).dt.floor("D").rename("day")
    basket = train.groupby([train["user_id"], day], sort=False).ngroup().to_numpy(np.int64)
    cols = train["item_id"].map(split.maps.item_index).to_numpy(np.int64)
    b = sp.csr_matrix((np.ones(cols.size), (basket, cols)), shape=(basket.max() + 1, split.maps.n_items))
    b.data = np.minimum(b.data, 1.0)  # the constructor sums repeats: a basket holds an item or not
    co = (b.T @ b).tocsr().astype(np.float64)
    norms = np.sqrt(co.diagonal())
    co.setdiag(0.0)
    co.eliminate_zeros()
    inv = sp.diags(1.0 / np.maximum(norms, 1e-12))
    return (inv @ co @ inv).tocsr().astype(np.float32)


class CandidateBuilder:
    """Per-split state (counts, recency, co-purchase, popularity) built once; `build(users)` per batch."""

    def __init__(
        self,
        split: Split,
        retrieval: ScoresFn,
        quotas: Quotas = Quotas(),
        item_groups: np.ndarray | None = None,
    ) -> None:
        self.split, self.retrieval = split, retrieval
        n_items = split.maps.n_items
        self.quotas = Quotas(
            size=min(quotas.size, n_items),
            retrieval=min(quotas.retrieval, n_items),
            history=min(quotas.history, n_items),
            copurchase=min(quotas.copurchase, n_items),
        )
        self.counts = user_item_matrix(split).tocsr()
        self.recent = user_item_matrix(split, cut_time(split) - pd.Timedelta(days=RECENT_DAYS)).tocsr()
        self.recency = recency_matrix(split).tocsr()  # 1 / (1 + days since last bought)
        # Re-buy propensities: of an item (share of its buyers who bought it again) and of a user
        # (share of the user's purchases that were re-buys); a shop's repeat structure in two numbers.
        buyers = np.asarray((self.counts > 0).sum(axis=0)).ravel()
        self.item_repeat = np.asarray((self.counts > 1).sum(axis=0)).ravel() / np.maximum(buyers, 1)
        total = np.asarray(self.counts.sum(axis=1)).ravel()
        distinct = np.diff(self.counts.indptr)
        self.user_repeat = (total - distinct) / np.maximum(total, 1)
        self.cosine = copurchase_similarity(split)
        self.pop = popularity_vector(split)
        self.pop_rank = np.argsort(np.argsort(-self.pop, kind="stable"), kind="stable").astype(np.float64)
        # item_groups: (n_items, G) integer codes (e.g. category, brand; 0 = missing) -> the user's share
        # of purchases in the candidate's group, a taste feature per group column.
        self.groups = np.zeros((n_items, 0), np.int64) if item_groups is None else np.asarray(item_groups)
        self.group_share = [self._share(self.groups[:, g]) for g in range(self.groups.shape[1])]

    def _share(self, codes: np.ndarray) -> sp.csr_matrix:
        """users x groups share of purchases, sparse (a brand column has thousands of groups)."""
        onehot = sp.csr_matrix(
            (np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, int(codes.max()) + 1)
        )
        per_user = (self.counts @ onehot).tocsr().astype(np.float64)
        per_user = (per_user @ sp.diags((np.arange(per_user.shape[1]) > 0).astype(np.float64))).tocsr()
        per_user.eliminate_zeros()  # "missing" (group 0) is no taste
        total = np.asarray(per_user.sum(axis=1)).ravel()
        return (sp.diags(1.0 / np.maximum(total, 1.0)) @ per_user).tocsr()

    def chunk_size(self, batch: int) -> int:
        """Users per chunk: at most `batch`, and at most CHUNK_CELLS (user, item) cells."""
        return max(1, min(batch, CHUNK_CELLS // max(self.split.maps.n_items, 1)))

    def chunks(self, users: np.ndarray, batch: int = 512) -> Iterator[Candidates]:
        """`build` over `users`, one bounded chunk at a time (chunk_size): a pass over every user never
        holds more than one chunk's dense arrays."""
        users = np.asarray(users, dtype=np.int64)
        step = self.chunk_size(batch)
        for start in range(0, users.size, step):
            yield self.build(users[start : start + step])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return CROSS_FEATURES + tuple(f"group{g}_share" for g in range(self.groups.shape[1]))

    def build(self, users: np.ndarray) -> Candidates:
        users = np.asarray(users, dtype=np.int64)
        q, n = self.quotas, users.size
        counts = self.counts[users].toarray()
        recency = self.recency[users].toarray()
        ret = np.asarray(self.retrieval(users), dtype=np.float64)
        ret = np.where(np.isfinite(ret), ret, np.nan)
        ret = np.where(np.isnan(ret), np.nanmin(ret, axis=1, keepdims=True), ret)
        co = np.asarray((self.recency[users] @ self.cosine).todense(), dtype=np.float64)

        def ranks(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
            order = np.argsort(-scores, axis=1, kind="stable")
            out = np.empty_like(scores)
            np.put_along_axis(out, order, np.arange(scores.shape[1], dtype=np.float64)[None, :], axis=1)
            return np.where(valid, out, np.inf)

        ret_rank = ranks(ret, np.ones_like(ret, bool))
        hist_rank = ranks(counts + 0.5 * recency, counts > 0)
        co_rank = ranks(co, co > 0)
        in_ret = ret_rank < q.retrieval
        in_hist = hist_rank < q.history
        in_co = co_rank < q.copurchase
        priority = np.minimum.reduce(
            [
                np.where(in_ret, ret_rank / q.retrieval, np.inf),
                np.where(in_hist, hist_rank / q.history, np.inf),
                np.where(in_co, co_rank / q.copurchase, np.inf),
            ]
        )
        # Popularity fill: after every sourced item, in popularity order.
        priority = np.where(np.isfinite(priority), priority, 1.0 + self.pop_rank[None, :] / len(self.pop))
        items = np.argsort(priority, axis=1, kind="stable")[:, : q.size]

        def take(matrix: np.ndarray) -> np.ndarray:
            return np.take_along_axis(matrix, items, axis=1)

        lo, hi = ret.min(axis=1, keepdims=True), ret.max(axis=1, keepdims=True)
        ret_scaled = (ret - lo) / np.where(hi > lo, hi - lo, 1.0)
        rec = take(recency)
        feats = {
            "ret_score": take(ret_scaled),
            "ret_rank": take(ret_rank),
            "n_bought": take(counts),
            "n_bought_recent": np.take_along_axis(self.recent[users].toarray(), items, axis=1),
            "days_since": np.where(rec > 0, 1.0 / np.where(rec > 0, rec, 1.0) - 1.0, np.nan),
            "co_score": take(co),
            "pop_recent": self.pop[items],
            "item_repeat_rate": self.item_repeat[items],
            "user_repeat_rate": np.repeat(self.user_repeat[users][:, None], q.size, axis=1),
            "in_retrieval": take(in_ret).astype(np.float64),
            "in_history": take(in_hist).astype(np.float64),
            "in_copurchase": take(in_co).astype(np.float64),
        }
        for g, share in enumerate(self.group_share):
            rows = share[users].toarray()  # chunk x groups
            feats[f"group{g}_share"] = np.take_along_axis(rows, self.groups[items, g], axis=1)
        assert all(v.shape == (n, q.size) for v in feats.values())
        return Candidates(users, items, {k: v.astype(np.float32) for k, v in feats.items()})


def recall_counts(cands: Candidates, split: Split) -> tuple[int, int]:
    """(truth items in the pools, truth items) over the users of `cands`: sums over chunks."""
    hits = total = 0
    for row, u in enumerate(cands.users):
        truth = split.test_truth.get(split.maps.user_ids[u], set())
        pool = {split.maps.item_ids[i] for i in cands.items[row]}
        hits += len(truth & pool)
        total += len(truth)
    return hits, total


def candidate_recall(cands: Candidates | Iterable[Candidates], split: Split) -> float:
    """Share of (test user, truth item) pairs whose item is in that user's pool (truth items unseen in
    training count as misses, as in the metrics): the ceiling of any re-ranker's recall. Takes one
    Candidates or a stream of chunks (CandidateBuilder.chunks), so it never needs every pool at once."""
    parts = [cands] if isinstance(cands, Candidates) else cands
    hits = total = 0
    for part in parts:
        h, t = recall_counts(part, split)
        hits, total = hits + h, total + t
    return hits / max(total, 1)
