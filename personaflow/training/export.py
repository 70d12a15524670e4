"""What serving needs from any fitted model: user and item vectors, scored as item_vecs @ user_vec + bias.

Every model of ours reduces to that at the end of a nightly run:
- matrix factorisation: its embeddings and item biases;
- two-tower: the towers' outputs over every user's and item's features;
- sequence models (SASRec, GRU): a user's vector is the encoder's last hidden state over their most
  recent purchases; its dot product with the item embeddings *is* the model's next-item logit, so
  the ranking is exactly the model's. It is computed once per night (a live purchase shows up in the
  user's history features at once, in this vector at the next run).
A hybrid adds the repeat-buy part (own purchase counts + recency, popularity fill) and its weight.
A baseline kind (repeat-buy, tifu-knn, popularity) is that part alone: zero user vectors, its sparse
per-(user, item) scores as the "history" with weight 0, and item vectors from a truncated SVD of the
purchase matrix so serving's similar-items still has embeddings to fall back on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.metrics import ScoresFn
from personaflow.training.evaluation.rebuy import mask_rows
from personaflow.training.evaluation.sparse_top import SparseTop
from personaflow.training.models.sequence import last_windows, user_sequences
from personaflow.training.rerank.hybrid import blend_rows

KINDS = {"bpr": "bpr-mf", "two_tower": "two-tower", "sasrec": "sasrec", "gru": "gru"}
BASELINE_KINDS = {"repeat_buy": "repeat-buy", "tifu": "tifu-knn", "popularity": "popularity"}


@dataclass(frozen=True)
class Embeddings:
    kind: str
    user_emb: np.ndarray  # float32 (n_users, dim)
    item_emb: np.ndarray  # float32 (n_items, dim)
    item_bias: np.ndarray  # float32 (n_items,)
    history: sp.csr_matrix | None = None  # hybrid: own-history score per (user, bought item)
    history_fill: np.ndarray | None = None  # hybrid: popularity fill under every history score
    blend_weight: float = 0.0  # hybrid: weight of the min-max scaled model score
    rerank: sp.csr_matrix | None = None  # re-ranked: each user's candidates' scores, in (1, 2]
    exclude: sp.csr_matrix | None = None  # a shop without re-buys: (user, item) bought, ranked last

    @property
    def is_hybrid(self) -> bool:
        return self.history is not None


@torch.no_grad()
def _sequence_vectors(module: torch.nn.Module, split: Split, max_len: int, batch: int = 1024) -> np.ndarray:
    module = module.cpu().eval()
    windows = last_windows(user_sequences(split.train, split.maps), np.arange(split.maps.n_users), max_len)
    out = [
        module.encode(torch.from_numpy(windows[start : start + batch]))[:, -1].float().numpy()
        for start in range(0, len(windows), batch)
    ]
    return np.concatenate(out).astype(np.float32)


def embeddings(name: str, module: torch.nn.Module, split: Split, max_len: int = 50) -> Embeddings:
    """Vectors of a model fitted by `training.models.fit.fit_model(name, split, ...)` on this split."""
    module = module.cpu().eval()
    if name == "bpr":
        return Embeddings(
            KINDS[name],
            module.user_emb.weight.detach().numpy().copy(),
            module.item_emb.weight.detach().numpy().copy(),
            module.item_bias.weight.detach().numpy().reshape(-1).copy(),
        )
    if name == "two_tower":
        with torch.no_grad():
            users, items = np.asarray(module.user_vectors()), np.asarray(module.item_vectors())
        return Embeddings(KINDS[name], users, items, np.zeros(items.shape[0], dtype=np.float32))
    if name in ("sasrec", "gru"):
        items = module.item.weight.detach()[1:].numpy().copy()  # token 0 is padding
        users = _sequence_vectors(module, split, max_len)
        return Embeddings(KINDS[name], users, items, np.zeros(items.shape[0], dtype=np.float32))
    raise ValueError(f"no export for model {name!r}; known: {sorted(KINDS)}")


def item_vectors(purchases: sp.csr_matrix, dim: int = 32, seed: int = 0) -> np.ndarray:
    """(n_items, dim) item vectors: a truncated SVD of the binary purchase matrix (for similar items)."""
    from scipy.sparse.linalg import svds

    binary = (purchases > 0).astype(np.float64)
    k = max(1, min(dim, min(binary.shape) - 1))
    if binary.nnz == 0 or k < 1:
        return np.zeros((binary.shape[1], dim), dtype=np.float32)
    v0 = np.random.default_rng(seed).random(min(binary.shape))
    _, s, vt = svds(binary, k=k, v0=v0)
    return (vt.T * np.sqrt(s)).astype(np.float32)


def baseline(name: str, scores: sp.csr_matrix, fill: np.ndarray, items: np.ndarray) -> Embeddings:
    """A baseline (BASELINE_KINDS) as a servable model: `scores` + `fill` ranks, exactly as it did."""
    if name not in BASELINE_KINDS:
        raise ValueError(f"no baseline {name!r}; known: {sorted(BASELINE_KINDS)}")
    n_users, n_items = scores.shape
    users = np.zeros((n_users, items.shape[1]), dtype=np.float32)
    return Embeddings(
        BASELINE_KINDS[name], users, items, np.zeros(n_items, dtype=np.float32), scores.tocsr(),
        np.asarray(fill, dtype=np.float64), 0.0,
    )  # fmt: skip


def with_rerank(emb: Embeddings, scores_fn, n_users: int, batch: int = 512) -> Embeddings:
    """Freeze a re-ranker's (personaflow/training/rerank/reranker.py) candidate scores for every user into a
    sparse matrix: serving puts them above the model's own (min-max scaled into [0, 0.5]) order, as the
    re-ranker did. Computed nightly: the candidates and their features are those of the training cut.

    A scorer with `pools` (reranker.RerankedScores) is streamed pool by pool: memory is the result,
    n_users x pool entries (12 B each), plus one candidate chunk; any other ScoresFn is read in blocks
    of `batch` users x the catalogue."""
    blocks = []
    if hasattr(scores_fn, "pools"):
        for users, items, scores in scores_fn.pools(np.arange(n_users)):
            rows = np.repeat(np.arange(users.size), items.shape[1])
            shape = (users.size, scores_fn.n_items)
            blocks.append(sp.csr_matrix((scores.ravel(), (rows, items.ravel())), shape=shape))
    else:
        for start in range(0, n_users, batch):
            block = np.asarray(scores_fn(np.arange(start, min(start + batch, n_users))))
            blocks.append(sp.csr_matrix(np.where(block > 1.0, block, 0.0)))
    matrix = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, emb.item_emb.shape[0]))
    return Embeddings(
        f"{emb.kind}+rerank", emb.user_emb, emb.item_emb, emb.item_bias, emb.history, emb.history_fill,
        emb.blend_weight, matrix,
    )  # fmt: skip


def with_history(emb: Embeddings, history: sp.csr_matrix, fill: np.ndarray, weight: float) -> Embeddings:
    """The hybrid of `emb` with the repeat-buy baseline (training.rerank.hybrid.blend, as stored)."""
    return Embeddings(
        f"{emb.kind}+history", emb.user_emb, emb.item_emb, emb.item_bias, history.tocsr(), fill, weight
    )


def score_users(model: Embeddings, user_idx: int | np.ndarray) -> np.ndarray:
    """Scores over all items for one user index (n_items,) or several (n, n_items): the model's dot
    product, blended with the repeat-buy history for a hybrid, under the re-ranked candidates if any.
    (Also scores a registry.loading.LoadedModel, which carries the same fields.)"""
    scores = model.user_emb[user_idx] @ model.item_emb.T + model.item_bias
    if model.history is not None:
        hist = model.history[np.atleast_1d(user_idx)].toarray() + model.history_fill
        scores = blend_rows(hist if np.ndim(user_idx) else hist[0], scores, model.blend_weight)
    if model.rerank is not None:
        # re-ranked candidates in (1, 2] above the rest of the catalogue in the model's order in [0, 0.5]
        rows = np.atleast_2d(scores).astype(np.float64)
        lo, span = rows.min(axis=1, keepdims=True), np.ptp(rows, axis=1, keepdims=True)
        rows = (rows - lo) / np.where(span > 0, span, 1.0) * 0.5
        picked = model.rerank[np.atleast_1d(user_idx)].toarray()
        out = np.where(picked > 0, picked, rows)
        scores = out if np.ndim(user_idx) else out[0]
    if (
        getattr(model, "exclude", None) is not None
    ):  # already-bought items last (personaflow/training/evaluation/rebuy.py)
        scores = mask_rows(scores, model.exclude[np.atleast_1d(user_idx)])
    return scores


def _sparse_only(model) -> bool:
    """Whether `model` scores as its sparse history alone: a baseline or item-kNN export (zero user
    vectors, no item bias), so its ranking is the history's plus the re-ranked candidates."""
    return (
        model.history is not None
        and model.history_fill is not None
        and not np.any(model.user_emb)
        and not np.any(model.item_bias)
        and bool(np.isfinite(model.item_emb).all())
        and bool(np.isfinite(model.blend_weight))
    )


class ModelScores:
    """`score_users(model, users)` as a ScoresFn (what serving and the gate score), with a `top(users, k)`
    where the model is sparse (`_sparse_only`): the same top-k, ties included, from its sparse rows
    (evaluation/sparse_top.py), so the gate never scores test users x the catalogue for a baseline.
    A learned model has no `top`: evaluation scores it in bounded batches (metrics.top_k).
    `exclude`: bought items ranked last on top of the model's own rule (rebuy.excluding)."""

    def __init__(self, model, exclude: sp.csr_matrix | None = None) -> None:
        self.model = model
        self.extra_exclude = exclude
        self._top: SparseTop | None = None
        self._checked = False

    def __call__(self, user_idx: int | np.ndarray) -> np.ndarray:
        scores = score_users(self.model, user_idx)
        if self.extra_exclude is None:
            return scores
        return mask_rows(scores, self.extra_exclude[np.atleast_1d(user_idx)])

    @property
    def top(self) -> SparseTop | None:
        if not self._checked:  # once per model: the check reads every user vector
            self._checked = True
            own = getattr(self.model, "exclude", None)
            if _sparse_only(self.model) and (own is None or self.extra_exclude is None):
                self._top = SparseTop(
                    self.model.history, self.model.history_fill, self, normalise=True,
                    rerank=self.model.rerank, exclude=own if own is not None else self.extra_exclude,
                )  # fmt: skip
        return self._top if self._top is not None and self._top.usable else None

    def excluding(self, bought: sp.csr_matrix) -> ScoresFn:
        if self.extra_exclude is None:
            return ModelScores(self.model, bought)
        return lambda users: mask_rows(self(users), bought[np.asarray(users, dtype=np.int64)])

