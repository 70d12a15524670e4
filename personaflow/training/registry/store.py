"""Candidates in the BentoML model store: save one, get one, what it recorded.

Models are saved as a state_dict plus JSON side files (not `bentoml.pytorch`, whose loader needs
`weights_only=False`). The store follows the settings' bentoml_home (BENTOML_HOME) at call time, not
BentoML's home cached at first import, so a test or a DAG run can point it elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import scipy.sparse as sp
import torch
from bentoml._internal.models import ModelStore
from bentoml.exceptions import NotFound

from personaflow.core.settings import load
from personaflow.training.data.interactions import IdMaps
from personaflow.training.export import Embeddings
from personaflow.training.models.bpr import MatrixFactorization

MODEL_NAME = "personaflow-recommender"
STATE_FILE = "state_dict.pt"
IDS_FILE = "ids.json"
POPULARITY_FILE = "popularity.json"
HISTORY_FILE = "history.npz"
FILL_FILE = "history_fill.npy"
RERANK_FILE = "rerank.npz"
EXCLUDE_FILE = "exclude.npz"


def model_store() -> ModelStore:
    # BentoML caches its home on first use; build the store from the settings each call instead.
    home = load().bentoml_home
    (home / "models").mkdir(parents=True, exist_ok=True)
    return ModelStore(home / "models")


def get_model(tag: str) -> bentoml.Model:
    try:
        return model_store().get(tag)
    except NotFound as exc:
        raise ValueError(f"model {tag!r} is not in the model store: {exc}") from exc


def saved_models() -> list[bentoml.Model]:
    """Every saved version of the recommender (none yet: empty)."""
    try:
        return list(model_store().list(MODEL_NAME))
    except NotFound:
        return []


def save_candidate(
    model: MatrixFactorization | Embeddings,
    maps: IdMaps,
    popularity: list[tuple[str, float]],
    metrics: dict[str, Any],
    params: dict[str, Any],
) -> str:
    """Save a trained model as a new candidate version; returns its full tag ("name:version").

    Any model is stored as what serving scores with (personaflow/training/export.py): user and item vectors
    and item biases, plus, for a hybrid, the repeat-buy history matrix and the blend weight.
    """
    if isinstance(model, MatrixFactorization):
        model = Embeddings(
            "bpr-mf",
            model.user_emb.weight.detach().cpu().numpy(),
            model.item_emb.weight.detach().cpu().numpy(),
            model.item_bias.weight.detach().cpu().numpy().reshape(-1),
        )
    state = {
        "user_emb.weight": torch.from_numpy(np.ascontiguousarray(model.user_emb, dtype=np.float32)),
        "item_emb.weight": torch.from_numpy(np.ascontiguousarray(model.item_emb, dtype=np.float32)),
        "item_bias.weight": torch.from_numpy(np.ascontiguousarray(model.item_bias, dtype=np.float32)),
    }
    with bentoml.models.create(
        MODEL_NAME,
        labels={"project": "personaflow", "kind": model.kind},
        metadata={
            "metrics": dict(metrics),
            "params": dict(params),
            "dim": int(model.user_emb.shape[1]),
            "kind": model.kind,
            "blend_weight": float(model.blend_weight),
            "exclude_bought": model.exclude is not None,
        },
        _model_store=model_store(),
    ) as ref:
        torch.save(state, ref.path_of(STATE_FILE))
        Path(ref.path_of(IDS_FILE)).write_text(json.dumps(maps.to_json()))
        Path(ref.path_of(POPULARITY_FILE)).write_text(
            json.dumps([[item, float(score)] for item, score in popularity])
        )
        if model.is_hybrid:
            sp.save_npz(ref.path_of(HISTORY_FILE), model.history.tocsr())
            np.save(ref.path_of(FILL_FILE), np.asarray(model.history_fill, dtype=np.float64))
        if model.rerank is not None:
            sp.save_npz(ref.path_of(RERANK_FILE), model.rerank.tocsr())
        if model.exclude is not None:
            sp.save_npz(ref.path_of(EXCLUDE_FILE), model.exclude.tocsr())
    return str(ref.tag)


def metrics_of(model: bentoml.Model) -> dict[str, Any]:
    return dict(model.info.metadata.get("metrics", {}))


def model_info(tag: str) -> dict[str, Any]:
    """What serving's /metadata shows about a saved version: when it was saved, its metrics, params."""
    model = get_model(tag)
    return {
        "tag": str(model.tag),
        "created": model.info.creation_time.isoformat(),
        "kind": str(model.info.metadata.get("kind", "bpr-mf")),
        "metrics": metrics_of(model),
        "params": dict(model.info.metadata.get("params", {})),
    }
