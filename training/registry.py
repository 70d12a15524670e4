"""Candidates in the BentoML model store; production is our own pointer file, moved only by a gate.

BentoML's `:latest` means "newest saved", not "approved", and open-source BentoML has no rollback, so
the production pointer is a JSON file we own: {"tag", "promoted_at", "history": [older tags, newest
last]}. Models are saved as a state_dict plus JSON side files (not `bentoml.pytorch`, whose loader
needs `weights_only=False`). The store follows BENTOML_HOME at call time, not at first import, so a
test or a DAG run can point it elsewhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# Usage tracking posts to the internet on every save; this machine (and CI) has none.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

import bentoml  # noqa: E402
import torch  # noqa: E402
from bentoml._internal.models import ModelStore  # noqa: E402
from bentoml.exceptions import NotFound  # noqa: E402

from training.data import IdMaps  # noqa: E402
from training.export import Embeddings, score_users  # noqa: E402
from training.model import MatrixFactorization  # noqa: E402

MODEL_NAME = "personaflow-recommender"
STATE_FILE = "state_dict.pt"
IDS_FILE = "ids.json"
POPULARITY_FILE = "popularity.json"
HISTORY_FILE = "history.npz"
FILL_FILE = "history_fill.npy"
RERANK_FILE = "rerank.npz"
GATE_METRIC = "ndcg_at_10"


def _store() -> ModelStore:
    # BentoML caches its home on first use; build the store from the env each call instead.
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()
    (home / "models").mkdir(parents=True, exist_ok=True)
    return ModelStore(home / "models")


def _get(tag: str) -> bentoml.Model:
    try:
        return _store().get(tag)
    except NotFound as exc:
        raise ValueError(f"model {tag!r} is not in the model store: {exc}") from exc


def save_candidate(
    model: MatrixFactorization | Embeddings,
    maps: IdMaps,
    popularity: list[tuple[str, float]],
    metrics: dict[str, Any],
    params: dict[str, Any],
) -> str:
    """Save a trained model as a new candidate version; returns its full tag ("name:version").

    Any model is stored as what serving scores with (training/export.py): user and item vectors and
    item biases, plus, for a hybrid, the repeat-buy history matrix and the blend weight.
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
        },
        _model_store=_store(),
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
    return str(ref.tag)


def read_pointer(pointer_path: Path) -> dict[str, Any] | None:
    path = Path(pointer_path)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _write_pointer(pointer_path: Path, payload: dict[str, Any]) -> None:
    # Atomic replace: the server polls this file and must never read half of it.
    path = Path(pointer_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pointer-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def _metrics(model: bentoml.Model) -> dict[str, Any]:
    return dict(model.info.metadata.get("metrics", {}))


def _production_score(metrics: dict[str, Any], current: str | None) -> tuple[float | None, str]:
    """Production's ndcg to beat and how it was measured.

    Preferred: production re-scored on the candidate's own split (recorded at training time), valid
    only if production is still the model that was scored. Otherwise production's recorded number,
    which comes from another hold-out window: the gate still runs, but says it is not like for like.
    """
    if current is None:
        return None, "no production model"
    same = metrics.get(f"production_{GATE_METRIC}")
    if same is not None and metrics.get("production_tag") == current:
        return float(same), "on the candidate's split"
    try:
        recorded = _metrics(_get(current)).get(GATE_METRIC)
    except ValueError:
        return None, f"production {current} is gone from the store"  # nothing to compare against
    return recorded, "as recorded on its own hold-out window (not re-scored on the candidate's split)"


def promote(tag: str, pointer_path: Path, min_gain: float = 0.0) -> dict[str, Any]:
    """Move production to `tag` only if its ndcg_at_10 beats its popularity baseline and production.

    "Beats" means by more than `min_gain`; production's ndcg is taken on the candidate's split when the
    candidate recorded it (see `_production_score`). A refusal is a normal answer (promoted=False plus
    a reason), not an exception; the pointer is untouched then.
    """
    candidate = _get(tag)
    tag = str(candidate.tag)  # resolves "name:latest" to the concrete version
    metrics = _metrics(candidate)
    cand = metrics.get(GATE_METRIC)
    base = metrics.get(f"baseline_{GATE_METRIC}")
    pointer = read_pointer(pointer_path)
    current = pointer["tag"] if pointer else None
    prod, basis = _production_score(metrics, current)
    decision: dict[str, Any] = {
        "tag": tag,
        "previous": current,
        "candidate_ndcg_at_10": cand,
        "baseline_ndcg_at_10": base,
        "production_ndcg_at_10": prod,
        "production_basis": basis,
        "min_gain": min_gain,
    }
    reason = None
    if cand is None or base is None:
        reason = f"candidate {tag} lacks metrics {GATE_METRIC!r}/baseline_{GATE_METRIC!r} in its metadata"
    elif current == tag:
        reason = f"{tag} is already in production"
    elif not cand > base + min_gain:
        reason = f"candidate ndcg@10 {cand:.4f} does not beat popularity baseline {base:.4f} (+{min_gain})"
    elif prod is not None and not cand > prod + min_gain:
        reason = (
            f"candidate ndcg@10 {cand:.4f} does not beat production {current} {prod:.4f} {basis} "
            f"(+{min_gain})"
        )
    # Evidence recorded at training time: sanity, paired bootstrap vs production, low-activity slice.
    from training.gate import check

    refusals = check(metrics, same_split_production=basis == "on the candidate's split")
    decision["gate_checks"] = refusals
    if reason is None and refusals:
        reason = "; ".join(refusals)
    if reason is not None:
        return {**decision, "promoted": False, "reason": reason}

    history = list(pointer.get("history", [])) if pointer else []
    if current is not None:
        history.append(current)
    _write_pointer(
        pointer_path,
        {"tag": tag, "promoted_at": datetime.now(UTC).isoformat(), "history": history, "metrics": metrics},
    )
    beaten = f"production {prod:.4f} {basis}" if prod is not None else basis
    return {
        **decision,
        "promoted": True,
        "reason": f"ndcg@10 {cand:.4f} beats baseline {base:.4f} and {beaten}",
    }


def rollback(pointer_path: Path) -> str:
    """Point production back at the previously promoted tag; returns that tag."""
    pointer = read_pointer(pointer_path)
    if not pointer or not pointer.get("history"):
        raise ValueError(f"nothing to roll back to: {pointer_path} has no previous production model")
    history = list(pointer["history"])
    previous = history.pop()
    _write_pointer(
        pointer_path,
        {
            "tag": previous,
            "promoted_at": datetime.now(UTC).isoformat(),
            "history": history,
            "metrics": _metrics(_get(previous)),
            "rolled_back_from": pointer["tag"],
        },
    )
    return previous


def list_models(pointer_path: Path) -> list[dict[str, Any]]:
    """Every saved version, oldest first: tag, created (ISO), metrics, is_production."""
    pointer = read_pointer(pointer_path)
    current = pointer["tag"] if pointer else None
    try:
        models = _store().list(MODEL_NAME)
    except NotFound:
        return []
    rows = [
        {
            "tag": str(m.tag),
            "created": m.info.creation_time.isoformat(),
            "kind": str(m.info.metadata.get("kind", "bpr-mf")),
            "metrics": _metrics(m),
            "is_production": str(m.tag) == current,
        }
        for m in models
    ]
    return sorted(rows, key=lambda r: r["created"])


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to answer requests: numpy only, no autograd (see training/export.py)."""

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

    @classmethod
    def of(
        cls, emb: Embeddings, maps: IdMaps, popularity: list[tuple[str, float]], tag: str = "candidate"
    ) -> LoadedModel:
        """A just-trained model, scored exactly as it will be once saved and loaded."""
        return cls(
            tag, {}, emb.user_emb, emb.item_emb, emb.item_bias, maps, popularity, emb.kind,
            emb.history, emb.history_fill, emb.blend_weight, emb.rerank,
        )  # fmt: skip

    def scores(self, user_idx: int | np.ndarray) -> np.ndarray:
        """Scores over all items for one user index (n_items,) or several (n, n_items)."""
        return score_users(self, user_idx)

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
    model = _get(tag)
    state = torch.load(model.path_of(STATE_FILE), map_location="cpu", weights_only=True)
    maps = IdMaps.from_json(json.loads(Path(model.path_of(IDS_FILE)).read_text()))
    popularity = [(str(i), float(s)) for i, s in json.loads(Path(model.path_of(POPULARITY_FILE)).read_text())]
    hybrid = Path(model.path_of(HISTORY_FILE)).exists()
    reranked = Path(model.path_of(RERANK_FILE)).exists()
    return LoadedModel(
        tag=str(model.tag),
        metrics=_metrics(model),
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
    )


def load_production(pointer_path: Path) -> LoadedModel:
    pointer = read_pointer(pointer_path)
    if not pointer:
        raise FileNotFoundError(
            f"no production model: pointer {pointer_path} does not exist (promote one first)"
        )
    return load_model(pointer["tag"])


def model_info(tag: str) -> dict[str, Any]:
    """What serving's /metadata shows about a saved version: when it was saved, its metrics, params."""
    model = _get(tag)
    return {
        "tag": str(model.tag),
        "created": model.info.creation_time.isoformat(),
        "kind": str(model.info.metadata.get("kind", "bpr-mf")),
        "metrics": _metrics(model),
        "params": dict(model.info.metadata.get("params", {})),
    }
