"""Top-k of a sparse model (stored per-(user, item) scores over a per-item fill) without scoring the whole
catalogue per user: the same items in the same order, ties included, as ranking its dense rows.

A sparse model's dense row is `matrix[u] + fill` (repeat-buy, TIFU-KNN, item-kNN, popularity), in an
exported model then divided by the row's max (export.score_users' blend with a zero model part),
min-max scaled under re-ranked candidates, and with already-bought items put last. Every item the
user has no stored value for (no score, no re-ranked value, not bought) scores g_u(fill[item]) for
one non-decreasing g_u per user. So its k best such items are a prefix of the catalogue ordered by
fill (ties by item order): each user's top-k is found among

- S_u, the user's special items (stored score, re-ranked value or bought), and
- the first k + |S_u| and, where re-ranked candidates are scaled under, the last |S_u| + 1 items of
  that fill order (the prefix holds k items outside S_u and the highest fill outside it; the suffix
  the lowest, so the row's max and min, which the normalisation and the min-max scaling use, are the
  max and min over these columns),

each scored with the dense path's own arithmetic (bit for bit), sorted by (bought last, score down,
item up) as the dense ranking's stable sort does. Any item left out scores at most g_u(fill) of the
first item after the prefix; a user whose k-th score is not strictly above that bound (a tie the left
out items could join) is ranked from their dense row instead, so the result is always the dense one.

Memory: O(sum over the users of (3 |S_u| + k)) per call (a call is one batch of users, metrics.top_k),
never users x items; time the same times a log for the sort, plus O(n_items) per fallback user.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

EPS_MAX = 1e-12  # export's blend divides by max(row max, EPS_MAX) (training/rerank/hybrid.py blend_rows)


def fill_order(fill: np.ndarray) -> np.ndarray:
    """Items by fill, highest first, ties by item index (a stable sort): the order items without a
    stored score take in every user's dense row."""
    return np.argsort(-np.asarray(fill, dtype=np.float64), kind="stable")


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..l-1 for each l of `lengths`, concatenated."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def _keys(rows: sp.csr_matrix, width: int) -> np.ndarray:
    """row * width + column of every stored entry, sorted (canonical CSR)."""
    counts = np.diff(rows.indptr)
    return np.repeat(np.arange(rows.shape[0], dtype=np.int64), counts) * width + rows.indices


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique(keys) by one sort: numpy 2.4's np.unique goes through a hash table first, 40x slower
    on these keys (row * n_items + column, 3.7M of them: 4.8 CPU-s against 0.11); it took 150 of
    TIFU-KNN's 226 s fit on Online Retail (its tuning scores 9 grid points, issue 21)."""
    keys = np.sort(keys)
    if keys.size < 2:
        return keys
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def _canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = matrix.tocsr()
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()  # what toarray() shows for duplicates, and sorted columns
    return matrix


def _lookup(keys: np.ndarray, rows: sp.csr_matrix, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(stored value or 0.0 at each key, whether it is stored)."""
    stored = _keys(rows, width)
    if stored.size == 0:
        return np.zeros(keys.size), np.zeros(keys.size, dtype=bool)
    pos = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
    hit = stored[pos] == keys
    return np.where(hit, rows.data[pos].astype(np.float64), 0.0), hit


class SparseTop:
    """The top-k of the dense rows `dense(users)` of a sparse model, found from its sparse parts.

    `matrix` (users x items) + `fill` (items,) is the row before anything else; `normalise`: divided by
    max(row max, 1e-12) (export.score_users' blend, model part zero); `rerank`: stored values > 0 replace
    the row, min-max scaled into [0, 0.5] (export.score_users); `exclude`: bought items ranked last
    (evaluation/rebuy.py mask_rows). `dense` must return exactly those rows: it ranks the users the
    sparse path cannot decide alone (module docstring)."""

    def __init__(
        self,
        matrix: sp.csr_matrix,
        fill: np.ndarray,
        dense: Callable[[np.ndarray], np.ndarray],
        *,
        normalise: bool = False,
        rerank: sp.csr_matrix | None = None,
        exclude: sp.csr_matrix | None = None,
    ) -> None:
        self.matrix = _canonical(matrix)
        self.fill = np.asarray(fill, dtype=np.float64)
        self.dense = dense
        self.normalise = normalise
        self.rerank = _canonical(rerank) if rerank is not None else None
        self.exclude = _canonical(exclude) if exclude is not None else None
        self.order = fill_order(self.fill)
        # a NaN fill is a model fault the dense path reports (metrics.top_k): no sparse ranking of it
        self.usable = bool(np.isfinite(self.fill).all())
        self.fallback_users = 0  # users ranked from their dense row (a tie at the boundary), for tests

    def _values(self, row: np.ndarray, hist: np.ndarray, picked: np.ndarray | None, starts: np.ndarray):
        """The dense path's scores at these entries (sorted by row; `starts` each row's first entry),
        and the per-row transform g_u of a fill value as the same arithmetic."""
        steps = []
        val = hist
        if self.normalise:
            top = np.maximum(np.maximum.reduceat(val, starts), EPS_MAX)
            val = val / top[row]
            steps.append(lambda x, r, top=top: x / top[r])
        if picked is not None:
            lo, hi = np.minimum.reduceat(val, starts), np.maximum.reduceat(val, starts)
            span = hi - lo
            span = np.where(span > 0, span, 1.0)
            val = np.where(picked > 0, picked, (val - lo[row]) / span[row] * 0.5)
            steps.append(lambda x, r, lo=lo, span=span: (x - lo[r]) / span[r] * 0.5)

        def g(x: np.ndarray, r: np.ndarray) -> np.ndarray:
            for step in steps:
                x = step(x, r)
            return x

        return val, g

    def __call__(self, users: np.ndarray, k: int) -> np.ndarray:
        """(len(users), min(k, n_items)) item indices, best first: top_rows(dense(users), k)."""
        from personaflow.training.evaluation.metrics import top_rows

        users = np.asarray(users, dtype=np.int64)
        n_items = self.fill.size
        k = min(k, n_items)
        if users.size == 0:
            return np.zeros((0, k), dtype=np.int64)
        n = users.size
        stored = self.matrix[users]
        rer = self.rerank[users] if self.rerank is not None else None
        bought = self.exclude[users] if self.exclude is not None else None
        special = _sorted_unique(
            np.concatenate([_keys(p, n_items) for p in (stored, rer, bought) if p is not None])
        )
        s_count = np.bincount(special // n_items, minlength=n)
        head = np.minimum(n_items, k + s_count)  # the prefix of the fill order
        # and its suffix, for the row's min: only the re-ranked rows' min-max scaling reads it
        tail = np.minimum(n_items, s_count + 1) if rer is not None else np.zeros(n, dtype=np.int64)
        rows_head = np.repeat(np.arange(n, dtype=np.int64), head)
        rows_tail = np.repeat(np.arange(n, dtype=np.int64), tail)
        cols_head = self.order[_ranges(head)]
        cols_tail = self.order[n_items - np.repeat(tail, tail) + _ranges(tail)]
        keys = _sorted_unique(
            np.concatenate([special, rows_head * n_items + cols_head, rows_tail * n_items + cols_tail])
        )
        row, col = keys // n_items, keys % n_items
        starts = np.searchsorted(row, np.arange(n))
        h, _ = _lookup(keys, stored, n_items)
        hist = h + self.fill[col]  # 0.0 + fill where nothing is stored: as toarray() + fill
        picked = _lookup(keys, rer, n_items)[0] if rer is not None else None
        val, g = self._values(row, hist, picked, starts)
        is_bought = _lookup(keys, bought, n_items)[1] if bought is not None else np.zeros(keys.size, bool)
        if np.isnan(val).any():
            where = int(np.flatnonzero(np.isnan(val))[0])
            raise ValueError(
                f"scores are NaN for user index {users[row[where]]}, item index {col[where]} "
                f"({int(np.isnan(val).sum())} NaN scores in this batch)"
            )
        # row, bought last (all on one floor: by item), score down, item up
        order = np.lexsort((col, -np.where(is_bought, 0.0, val), is_bought, row))
        rank = np.arange(keys.size) - starts[row[order]]
        pick = order[rank < k]
        out = col[pick].reshape(n, k)
        # the k-th score against the best score any left-out item can have: g of the first fill after
        # the prefix (none left out where the prefix is the whole catalogue)
        open_rows = np.flatnonzero(head < n_items)
        if open_rows.size:
            kth = val[pick.reshape(n, k)[open_rows, k - 1]]
            bound = g(self.fill[self.order[head[open_rows]]], open_rows)
            tied = open_rows[~(kth > bound)]
            if tied.size:  # a tie the left-out items could join: the dense row decides
                self.fallback_users += int(tied.size)
                out[tied] = top_rows(np.atleast_2d(np.asarray(self.dense(users[tied]), dtype=np.float64)), k)
        return out
