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
item and user re-buy rates; source flags; given item groups (category, brand), the user's share
of purchases in the candidate's group; and, with `Quotas.cadence`, the pair's repurchase cadence
(evaluation/cadence.py: its typical interval, days since / interval, and the chance it is due in the
window; NaN, NaN and 0 for an item bought on fewer than 2 days or never); and, with `Quotas.svd`, the
pair's PureSVD score (item_factors), the user's distinct items and the item's buyers.
Everything is computed from `split.train` (rows before the split's cut) and the ScoresFn alone, so a
validation view's candidates never see its validation window and the test's never see the test window.

Memory (issue 21): the builder holds sparse per-(user, item) tables (nnz of the training rows), the
item-item co-purchase cosine (at most the sum over baskets of basket size^2 entries) and, per item
group column, a sparse users x groups share table; with cadence, a few numbers per bought (user, item)
pair (evaluation/cadence.py, linear in the distinct (user, item, day) purchase rows); with svd, the
item factors (n_items x SVD_RANK floats). `build(users)`
works on a dense chunk of len(users) x n_items per source; `chunks` cuts the users so one chunk holds at
most CHUNK_CELLS (user, item) cells, whatever the shop's size. A pass over all users costs
O(n_users x n_items) time, because a ScoresFn scores the whole catalogue; its memory stays that of one
chunk plus the output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personaflow.training.data.interactions import Split, cut_time, event_times
from personaflow.training.evaluation.baselines import (
    SparseScores,
    popularity_vector,
    recency_matrix,
    user_item_matrix,
)
from personaflow.training.evaluation.cadence import cadence_features, cadence_table
from personaflow.training.evaluation.metrics import ScoresFn

CROSS_FEATURES = (
    "ret_score", "ret_rank", "n_bought", "n_bought_recent", "days_since", "co_score", "pop_recent",
    "item_repeat_rate", "user_repeat_rate", "in_retrieval", "in_history", "in_copurchase",
)  # fmt: skip
CADENCE_FEATURES = ("cad_interval", "cad_ratio", "cad_due")  # with Quotas.cadence (issue 21, item 4)
SVD_FEATURES = ("svd_score", "user_items", "item_buyers")  # with Quotas.svd
RECENT_DAYS = 30
# PureSVD's rank (item_factors). On Online Retail retail-30d, the re-ranker over repeat-buy on the
# choice's validation cut with the score alone (float64 factors): 16 factors 0.3300, 32 0.3309, 64
# 0.3323, 128 0.3306 (and 1.9x the fit); without the score 0.3284
SVD_RANK = 64
# below this many items the factors are the exact eigenvectors of the dense items x items Gram matrix
# (ARPACK needs k < min(shape), and eigh is the cheaper of the two at this size)
DENSE_ITEMS = 512
# at most this many (user, item) cells per chunk in `CandidateBuilder.chunks`: ~12 dense float64 arrays
# of that size live at once in `build`, ~200 MB; retail-30d (3,625 items) keeps its 512-user chunks
CHUNK_CELLS = 1 << 21


@dataclass(frozen=True)
class Quotas:
    size: int = 100
    retrieval: int = 50
    history: int = 50
    copurchase: int = 50
    # the pools also carry the cadence cross features (CADENCE_FEATURES). Here, with the pool's shape,
    # because every CandidateBuilder of a re-ranker is made from its config's quotas: the training
    # windows' and the serving split's pools then always carry the same features
    cadence: bool = False
    # the pools also carry SVD_FEATURES: each pair's PureSVD score (item_factors), the user's distinct
    # items and the item's buyers. Tried by the choice like cadence, kept where validation says they pay:
    # over the re-ranker without them (its validation cut, paired gain) on Online Retail retail-30d
    # +0.0037 [0.0012, 0.0063] (0.3321 vs 0.3284); measured before with float64 factors: the no-re-buy
    # shop +0.0044 [0.0004, 0.0087] (retail-30d) and +0.0091
    # [0.0041, 0.0146] (last basket), Online Retail's last basket +0.0012 [-0.0006, 0.0028], The
    # Complete Journey's -0.0003 [-0.0021, 0.0013] and retail-30d -0.0023 [-0.0036, -0.0011] (TIFU-KNN's
    # neighbours there already carry what the factors add)
    svd: bool = False


@dataclass(frozen=True)
class Candidates:
    """items[u_row, j] = the j-th candidate (item index) of users[u_row]; features share that layout."""

    users: np.ndarray  # (n,) user indices
    items: np.ndarray  # (n, size) int64
    features: dict[str, np.ndarray]  # name -> (n, size) float32; NaN = not defined (never bought)


def log_counts(counts: sp.csr_matrix) -> sp.csr_matrix:
    """log(1 + times bought), float32: what item_factors factorise and each user's row it projects."""
    x = counts.astype(np.float32)
    x.data = np.log1p(x.data)
    return x


def item_factors(counts: sp.csr_matrix, rank: int = SVD_RANK) -> np.ndarray:
    """PureSVD's item factors (Cremonesi, Koren and Turrin, RecSys 2010): the top `rank` right singular
    vectors V of the users x items matrix of log(1 + times bought), (n_items, k) float32. A user's score
    for item i is x_u V V_i^T: the user's row projected on the shop's main taste directions, a
    collaborative signal of item identity that the pool's counts, co-purchase and popularity lack (the
    former DeepFM members learnt it as item embeddings). The score does not depend on the basis of the
    factors' span, so ARPACK's and eigh's answers give the same scores.

    Cost: ARPACK's Lanczos iterations, each two sparse products over the nnz of `counts`; memory the
    factors and ~2k Lanczos vectors of n_items (k = rank): linear in users, items and purchases."""
    from scipy.sparse.linalg import svds

    x = log_counts(counts)
    k = min(rank, x.shape[0] - 1, x.shape[1] - 1)
    if x.nnz == 0 or k < 1:
        return np.zeros((x.shape[1], 0), np.float32)
    if x.shape[1] <= DENSE_ITEMS:
        _, vectors = np.linalg.eigh((x.T @ x).toarray().astype(np.float64))
        return np.ascontiguousarray(vectors[:, ::-1][:, :k], dtype=np.float32)  # eigh sorts ascending
    _, _, vt = svds(x, k=k, random_state=0)  # a seeded start vector: the same factors every run
    return np.ascontiguousarray(vt.T, dtype=np.float32)


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
            cadence=quotas.cadence,
            svd=quotas.svd,
        )
        self.counts = user_item_matrix(split).tocsr()
        self.recent = user_item_matrix(split, cut_time(split) - pd.Timedelta(days=RECENT_DAYS)).tocsr()
        self.recency = recency_matrix(split).tocsr()  # 1 / (1 + days since last bought)
        # Re-buy propensities: of an item (share of its buyers who bought it again) and of a user
        # (share of the user's purchases that were re-buys); a shop's repeat structure in two numbers.
        buyers = np.asarray((self.counts > 0).sum(axis=0)).ravel()
        self.buyers = buyers.astype(np.float64)
        self.item_repeat = np.asarray((self.counts > 1).sum(axis=0)).ravel() / np.maximum(buyers, 1)
        total = np.asarray(self.counts.sum(axis=1)).ravel()
        distinct = np.diff(self.counts.indptr)
        self.user_repeat = (total - distinct) / np.maximum(total, 1)
        self.user_items = distinct.astype(np.float64)  # distinct items bought (an SVD feature)
        self.cosine = copurchase_similarity(split)
        self.pop = popularity_vector(split)
        self.pop_rank = np.argsort(np.argsort(-self.pop, kind="stable"), kind="stable").astype(np.float64)
        self.pop_order = np.argsort(-self.pop, kind="stable")
        # A sparse retrieval (TIFU-KNN, repeat-buy, popularity) whose every stored score outranks every
        # fill-only item builds pools from its rows alone (_pick_sparse); anything else scores the
        # whole catalogue per user (_pick_dense)
        self.sparse = isinstance(retrieval, SparseScores) and retrieval.exclude is None and (
            retrieval.matrix.nnz == 0
            or retrieval.matrix.data.min() + retrieval.fill.min() > retrieval.fill.max()
        )
        if self.sparse:
            self.fill_order = np.lexsort((np.arange(n_items), -retrieval.fill))  # stable, as argsort
            self.fill_rank = np.empty(n_items, dtype=np.int64)
            self.fill_rank[self.fill_order] = np.arange(n_items)
        # item_groups: (n_items, G) integer codes (e.g. category, brand; 0 = missing) -> the user's share
        # of purchases in the candidate's group, a taste feature per group column.
        self.groups = np.zeros((n_items, 0), np.int64) if item_groups is None else np.asarray(item_groups)
        self.group_share = [self._share(self.groups[:, g]) for g in range(self.groups.shape[1])]
        # the split's own cut and window: a training window's pools are as of its cut, as serving's
        self.cadence = cadence_table(split) if self.quotas.cadence else None
        # (n_items, k): the users' side is projected per chunk in `build`, never held for the whole shop
        self.factors = item_factors(self.counts) if self.quotas.svd else None

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
        """Users per chunk: at most `batch`, and at most CHUNK_CELLS cells of its widest array: the
        whole catalogue per user for a dense retrieval (_pick_dense), the pool for a sparse one
        (_pick_sparse reads only each user's rows). Bounding a sparse pool by the catalogue made a
        100k-item shop score 20 users a chunk, each chunk paying the models' fixed cost (issue 21)."""
        width = self.quotas.size if self.sparse else self.split.maps.n_items
        return max(1, min(batch, CHUNK_CELLS // max(width, 1)))

    def chunks(self, users: np.ndarray, batch: int = 512) -> Iterator[Candidates]:
        """`build` over `users`, one bounded chunk at a time (chunk_size): a pass over every user never
        holds more than one chunk's dense arrays."""
        users = np.asarray(users, dtype=np.int64)
        step = self.chunk_size(batch)
        for start in range(0, users.size, step):
            yield self.build(users[start : start + step])

    @property
    def feature_names(self) -> tuple[str, ...]:
        groups = tuple(f"group{g}_share" for g in range(self.groups.shape[1]))
        svd = SVD_FEATURES if self.factors is not None else ()
        return CROSS_FEATURES + groups + (CADENCE_FEATURES if self.cadence is not None else ()) + svd

    def build(self, users: np.ndarray) -> Candidates:
        users = np.asarray(users, dtype=np.int64)
        q, n = self.quotas, users.size
        picked = self._pick_sparse(users) if self.sparse else self._pick_dense(users)
        items, ret_rank, ret_scaled, in_ret, in_hist, in_co, counts, rec, co = picked
        feats = {
            "ret_score": ret_scaled,
            "ret_rank": ret_rank,
            "n_bought": counts,
            "n_bought_recent": _pairs(self.recent[users], items),
            "days_since": np.where(rec > 0, 1.0 / np.where(rec > 0, rec, 1.0) - 1.0, np.nan),
            "co_score": co,
            "pop_recent": self.pop[items],
            "item_repeat_rate": self.item_repeat[items],
            "user_repeat_rate": np.repeat(self.user_repeat[users][:, None], q.size, axis=1),
            "in_retrieval": in_ret.astype(np.float64),
            "in_history": in_hist.astype(np.float64),
            "in_copurchase": in_co.astype(np.float64),
        }
        for g, share in enumerate(self.group_share):
            feats[f"group{g}_share"] = _pairs(share[users], self.groups[items, g])
        if self.cadence is not None:
            feats.update(cadence_features(self.cadence, users, items))
        if self.factors is not None:
            projected = log_counts(self.counts[users]) @ self.factors  # x_u V, (n, k)
            feats["svd_score"] = np.einsum("uk,unk->un", projected, self.factors[items])
            feats["user_items"] = np.repeat(self.user_items[users][:, None], q.size, axis=1)
            feats["item_buyers"] = self.buyers[items]
        assert all(v.shape == (n, q.size) for v in feats.values())
        return Candidates(users, items, {k: v.astype(np.float32) for k, v in feats.items()})

    def _pick_dense(self, users: np.ndarray) -> tuple[np.ndarray, ...]:
        """The pools from a dense ScoresFn: chunk x n_items arrays, O(n_items log n_items) per user."""
        q = self.quotas
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
        return (
            items, take(ret_rank), take(ret_scaled), take(in_ret), take(in_hist), take(in_co), take(counts),
            take(recency), take(co),
        )  # fmt: skip

    def _pick_sparse(self, users: np.ndarray) -> tuple[np.ndarray, ...]:
        """The same pools as _pick_dense from a SparseScores retrieval, reading only each user's sparse
        rows: O(nnz of the user's rows + pool) per user, whatever the catalogue's size. Every row entry
        outranks every fill-only item (checked at construction), so an item outside the row ranks by
        its fill among the items outside the row."""
        q, n = self.quotas, users.size
        fill, n_items = self.retrieval.fill, self.split.maps.n_items
        ret_rows, counts_rows = self.retrieval.matrix[users], self.counts[users]
        recency_rows = self.recency[users]
        co_rows = (recency_rows @ self.cosine).tocsr()
        items = np.empty((n, q.size), dtype=np.int64)
        ret_rank, ret_scaled = np.empty((n, q.size)), np.empty((n, q.size))
        flags = np.zeros((3, n, q.size), dtype=bool)
        # membership of item indices through one catalogue-wide mask, set and cleared per test: np.isin
        # sorts both arrays on each of the ~5 calls a user (4.4 of a 40 CPU-s re-ranker fit on Online
        # Retail's last baskets); the mask touches only the items asked about
        mark = np.zeros(n_items, dtype=bool)
        # sorted once for the per-row lookups (_lookup): indexing the sparse matrix per user cost 1.5 s
        recency_sorted = recency_rows if recency_rows.has_sorted_indices else recency_rows.sorted_indices()

        def member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
            mark[of] = True
            out = mark[values]
            mark[of] = False
            return out

        for row in range(n):
            rc, rv = _row(ret_rows, row)
            rv = rv + fill[rc]
            by_score = rc[np.lexsort((rc, -rv))]
            ret_top = by_score[: q.retrieval]
            if ret_top.size < q.retrieval:  # then fill-only items, by their fill
                head = self.fill_order[: q.retrieval + rc.size]
                ret_top = np.concatenate([ret_top, head[~member(head, rc)][: q.retrieval - ret_top.size]])
            hc, hv = _row(counts_rows, row)
            hc, hv = hc[hv > 0], hv[hv > 0]
            hv = hv + 0.5 * _lookup(*_row(recency_sorted, row), hc)
            hist_top = hc[np.lexsort((hc, -hv))][: q.history]
            cc, cv = _row(co_rows, row)
            cc, cv = cc[cv > 0], cv[cv > 0]
            co_top = cc[np.lexsort((cc, -cv))][: q.copurchase]
            cand = np.concatenate([ret_top, hist_top, co_top])
            prio = np.concatenate(
                [
                    np.arange(ret_top.size) / q.retrieval,
                    np.arange(hist_top.size) / q.history,
                    np.arange(co_top.size) / q.copurchase,
                ]
            )
            order = np.lexsort((prio, cand))  # each item's best priority: the first of its run
            cand, prio = cand[order], prio[order]
            first = np.concatenate([[True], cand[1:] != cand[:-1]])
            cand, prio = cand[first], prio[first]
            pool = cand[np.lexsort((cand, prio))][: q.size]
            if pool.size < q.size:  # popularity fill after every sourced item
                head = self.pop_order[: q.size + pool.size]
                pool = np.concatenate([pool, head[~member(head, pool)][: q.size - pool.size]])
            items[row] = pool
            flags[0, row], flags[1, row] = member(pool, ret_top), member(pool, hist_top)
            flags[2, row] = member(pool, co_top)
            # the retrieval's rank and min-max scaled score of each pooled item, over the whole catalogue
            by_item = np.argsort(by_score)  # by_score's positions in item order
            at = np.minimum(np.searchsorted(by_score[by_item], pool), max(rc.size - 1, 0))
            in_row = (by_score[by_item][at] == pool) if rc.size else np.zeros(pool.size, bool)
            pool_fill_rank = self.fill_rank[pool]
            outside = rc.size + pool_fill_rank - np.searchsorted(np.sort(self.fill_rank[rc]), pool_fill_rank)
            ret_rank[row] = np.where(in_row, by_item[at] if rc.size else 0, outside)
            own = np.argsort(rc)
            at = np.minimum(np.searchsorted(rc[own], pool), max(rc.size - 1, 0))
            scores = np.where(in_row, rv[own][at] if rc.size else 0.0, fill[pool])
            hi = rv.max() if rc.size else fill[self.fill_order[0]]
            if rc.size < n_items:  # the lowest fill outside the row
                tail = self.fill_order[::-1][: rc.size + 1]
                lo = fill[tail[~member(tail, rc)][0]]
            else:
                lo = rv.min()
            ret_scaled[row] = (scores - lo) / (hi - lo if hi > lo else 1.0)
        counts = _pairs(counts_rows, items)
        return (
            items, ret_rank, ret_scaled, flags[0], flags[1], flags[2], counts, _pairs(recency_rows, items),
            _pairs(co_rows, items),
        )  # fmt: skip


def _row(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[lo:hi].astype(np.int64), matrix.data[lo:hi].astype(np.float64)


def _lookup(cols: np.ndarray, vals: np.ndarray, items: np.ndarray) -> np.ndarray:
    """vals at `items` given sorted keys `cols` and their `vals`, 0 where not stored: one sparse row's
    (indices, data), or _pairs' flattened (row, column) keys."""
    if cols.size == 0:
        return np.zeros(items.shape)
    pos = np.minimum(np.searchsorted(cols, items), cols.size - 1)
    return np.where(cols[pos] == items, vals[pos], 0.0)


def _pairs(rows: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """rows[r, items[r, j]] for every (r, j), 0 where not stored: a sorted-key lookup, O(nnz + pairs)
    memory, never a dense rows x n_items array."""
    rows = rows.tocsr()
    if not rows.has_sorted_indices:
        rows = rows.sorted_indices()
    width = rows.shape[1]
    keys = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr)) * width + rows.indices
    want = (np.arange(items.shape[0], dtype=np.int64)[:, None] * width + items).ravel()
    return _lookup(keys, rows.data, want).astype(np.float64).reshape(items.shape)


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
