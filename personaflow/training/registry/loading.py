"""Saved models loaded for serving and re-scoring: numpy only, no autograd (see
personaflow/training/export.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from personaflow.training.data.interactions import IdMaps
from personaflow.training.evaluation.metrics import ScoresFn
from personaflow.training.export import Embeddings, ModelScores
from personaflow.training.registry.pointer import read_pointer
from personaflow.training.registry.store import (
    EXCLUDE_FILE,
    FILL_FILE,
    HISTORY_FILE,
    IDS_FILE,
    POPULARITY_FILE,
    RERANK_FILE,
    STATE_FILE,
    get_model,
    metrics_of,
)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to answer requests: numpy only, no autograd (see personaflow/training/export.py)."""

    tag: str
    metrics: dict[str, Any]
    user_emb: np.ndarray
    item_emb: np.ndarray
    item_bias: np.ndarray
    maps: IdMaps
    popularity: list[tuple[str, float]]
    kind: str = "bpr-mf"
    history: sp.csr_matrix | None = None
    history_fill: np.ndarray | None = None
    blend_weight: float = 0.0
    rerank: sp.csr_matrix | None = None
    exclude: sp.csr_matrix | None = None

    @classmethod
    def of(
        cls, emb: Embeddings, maps: IdMaps, popularity: list[tuple[str, float]], tag: str = "candidate"
    ) -> LoadedModel:
        """A just-trained model, scored exactly as it will be once saved and loaded."""
        return cls(
            tag, {}, emb.user_emb, emb.item_emb, emb.item_bias, maps, popularity, emb.kind,
            emb.history, emb.history_fill, emb.blend_weight, emb.rerank, emb.exclude,
        )  # fmt: skip

    @cached_property
    def scores(self) -> ModelScores:
        """Scores over all items for one user index (n_items,) or several (n, n_items): `scores(idx)`.
        Also `scores.top(users, k)` for a sparse model (export.ModelScores: evaluation ranks it from its
        sparse rows). Built once per model (a frozen dataclass still has its __dict__ for this)."""
        return ModelScores(self)

    def recommend(self, user_id: str, k: int) -> tuple[list[tuple[str, float]], str | None]:
        """Top-k (item_id, score) for a known user; popularity (flagged) for an unknown one."""
        idx = self.maps.user_index.get(user_id)
        if idx is None:
            return self.popularity[:k], "popularity"
        scores = self.scores(idx)
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.maps.item_ids[i], float(scores[i])) for i in top], None


def load_model(tag: str) -> LoadedModel:
    model = get_model(tag)
    state = torch.load(model.path_of(STATE_FILE), map_location="cpu", weights_only=True)
    maps = IdMaps.from_json(json.loads(Path(model.path_of(IDS_FILE)).read_text()))
    popularity = [(str(i), float(s)) for i, s in json.loads(Path(model.path_of(POPULARITY_FILE)).read_text())]
    hybrid = Path(model.path_of(HISTORY_FILE)).exists()
    reranked = Path(model.path_of(RERANK_FILE)).exists()
    excluded = Path(model.path_of(EXCLUDE_FILE)).exists()
    return LoadedModel(
        tag=str(model.tag),
        metrics=metrics_of(model),
        user_emb=state["user_emb.weight"].numpy(),
        item_emb=state["item_emb.weight"].numpy(),
        item_bias=state["item_bias.weight"].numpy().reshape(-1),
        maps=maps,
        popularity=popularity,
        kind=str(model.info.metadata.get("kind", "bpr-mf")),
        history=sp.load_npz(model.path_of(HISTORY_FILE)).tocsr() if hybrid else None,
        history_fill=np.load(model.path_of(FILL_FILE)) if hybrid else None,
        blend_weight=float(model.info.metadata.get("blend_weight", 0.0)),
        rerank=sp.load_npz(model.path_of(RERANK_FILE)).tocsr() if reranked else None,
        exclude=sp.load_npz(model.path_of(EXCLUDE_FILE)).tocsr() if excluded else None,
    )


def load_production(pointer_path: Path) -> LoadedModel:
    pointer = read_pointer(pointer_path)
    if not pointer:
        raise FileNotFoundError(
            f"no production model: pointer {pointer_path} does not exist (promote one first)"
        )
    return load_model(pointer["tag"])


def transferred_scores_fn(model: LoadedModel, maps: IdMaps) -> ScoresFn:
    """Score another split's model (production) over *this* split's users and items (`maps`).

    So production and a candidate can be compared on the same test users, truth and item set. Users
    the model does not know get its popularity order, as serving would give them; items it does not
    know score -inf (after every item it can rank); its items outside `maps` are simply not rankable.
    """
    item_src = np.array([model.maps.item_index.get(i, -1) for i in maps.item_ids], dtype=np.int64)
    user_src = np.array([model.maps.user_index.get(u, -1) for u in maps.user_ids], dtype=np.int64)
    known_items = np.flatnonzero(item_src >= 0)
    columns = item_src[known_items]
    # Rank positions, not raw scores, so the order is exactly the model's popularity list.
    pop_pos = {item: pos for pos, (item, _) in enumerate(model.popularity)}
    fallback = np.array(
        [len(pop_pos) - pop_pos[i] if i in pop_pos else -np.inf for i in maps.item_ids], dtype=np.float64
    )

    def scores_fn(users: np.ndarray) -> np.ndarray:
        src = user_src[np.asarray(users, dtype=np.int64)]
        out = np.tile(fallback, (len(src), 1))
        known = np.flatnonzero(src >= 0)
        rows = np.full((len(known), maps.n_items), -np.inf)
        if known.size:  # the model's own scoring (hybrids included), on the items both sides know
            rows[:, known_items] = np.atleast_2d(model.scores(src[known]))[:, columns]
        out[known] = rows
        return out

    return scores_fn
