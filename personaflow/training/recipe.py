"""A model's recipe (what the nightly run trains: model, hybrid, re-ranker, epochs, ...) and `build`, which
fits it on a split and returns what serving will score (personaflow/training/export.py).

Recipes are recorded with every saved model (its params), so the gate can re-fit production's recipe on
a candidate's cut when production's own artefact has seen the candidate's test window.
Baselines (repeat-buy, TIFU-KNN, popularity) are recipes too: servable models like any other, fitted
in seconds (TIFU-KNN's parameters tuned on the validation view, never on the test window).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from personaflow.training import export
from personaflow.training.data.features import FeatureSource
from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import history_parts, popularity_vector, user_item_matrix
from personaflow.training.evaluation.rebuy import bought_matrix
from personaflow.training.evaluation.tifu import TifuParams, tifu_parts, tune_tifu
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import MODELS, FitResult, fit_model, validation_view
from personaflow.training.rerank.hybrid import hybrid as blend_with_history
from personaflow.training.rerank.reranker import fit_reranker

BASELINES = tuple(export.BASELINE_KINDS)
KNOWN = (*MODELS, *BASELINES)
# CPU seconds a learned fit may be estimated to take (FitConfig.budget_s): above it the fit is refused
# after its first epoch (models/fit.py OverBudget), never cut short. Its length is early stopping's.
FIT_BUDGET_S = 300.0


@dataclass(frozen=True)
class Recipe:
    model: str = "bpr"
    hybrid: bool = False
    rerank: bool = False
    epochs: int = 20
    dim: int = 64
    seed: int = 0
    val_days: int = 7
    exclude_bought: bool = False  # a shop without re-buys: bought items last everywhere

    def __post_init__(self) -> None:
        if self.model not in KNOWN:
            raise ValueError(f"unknown model {self.model!r}; choose one of {KNOWN}")

    @property
    def is_baseline(self) -> bool:
        return self.model in BASELINES and not self.rerank

    @property
    def key(self) -> tuple[str, bool, bool, bool]:
        """What makes two recipes the same model (epochs, seed and cut aside)."""
        return (self.model, self.hybrid and self.model not in BASELINES, self.rerank, self.exclude_bought)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Recipe:
        """The recipe a saved model's params recorded (older models: bpr, as they were)."""
        return cls(
            model=str(params.get("model", "bpr")), hybrid=bool(params.get("hybrid", False)),
            rerank=bool(params.get("rerank", False)), epochs=int(params.get("epochs", 20)),
            dim=int(params.get("dim", 64)), seed=int(params.get("seed", 0)),
            val_days=int(params.get("holdout_days", 7)),
            exclude_bought=bool(params.get("exclude_bought", False)),
        )  # fmt: skip


@dataclass
class Built:
    exported: export.Embeddings
    fitted: FitResult
    extra: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0


def baseline_parts(
    name: str, split: Split, val: Split | None = None
) -> tuple[sp.csr_matrix, np.ndarray, dict]:
    """A baseline's sparse scores, popularity fill and info (TIFU-KNN: parameters tuned on `val`)."""
    if name == "repeat_buy":
        scores, fill = history_parts(split)
        return scores, fill, {}
    if name == "popularity":
        pop = popularity_vector(split)
        return sp.csr_matrix((split.maps.n_users, split.maps.n_items)), pop / (pop.max() + 1.0), {}
    if name == "tifu":
        params, curve = tune_tifu(val) if val is not None else (None, {})
        params = params or TifuParams()
        scores, fill = tifu_parts(split, params)
        best = max(curve.values(), default=0.0)
        return scores, fill, {"tifu_params": asdict(params), "tifu_val_best_ndcg_at_10": best}
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def _sparse_fn(scores: sp.csr_matrix, fill: np.ndarray):
    return lambda users: scores[np.asarray(users, dtype=np.int64)].toarray() + fill


def fit_baseline(name: str, split: Split, val_days: int) -> tuple[FitResult, sp.csr_matrix, np.ndarray, dict]:
    """A baseline as a FitResult (so a re-ranker can take its candidates), plus its saved parts."""
    val = validation_view(split, val_days)
    scores, fill, info = baseline_parts(name, split, val)
    if name == "tifu":  # the validation view's own scorer, with the parameters chosen on it
        val_scores, val_fill = tifu_parts(val, TifuParams(**info["tifu_params"]))
    else:
        val_scores, val_fill, _ = baseline_parts(name, val)

    def scorer_at(view: Split):  # the same parameters at an earlier cut (re-ranker training windows)
        if name == "tifu":
            return _sparse_fn(*tifu_parts(view, TifuParams(**info["tifu_params"])))
        return _sparse_fn(*baseline_parts(name, view)[:2])

    fitted = FitResult(
        name, _sparse_fn(scores, fill), [], 0, "cpu", _sparse_fn(val_scores, val_fill), val, None, scorer_at
    )  # fmt: skip
    return fitted, scores, fill, info


def build(recipe: Recipe, split: Split, features: FeatureSource | None = None) -> Built:
    """Fit `recipe` on `split.train`; the result is scored exactly as serving will score it."""
    if recipe.rerank and features is None:
        raise ValueError("rerank=True needs a feature source (features=...) for the DeepFM re-ranker")
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if recipe.model in BASELINES:
        fitted, scores, fill, extra = fit_baseline(recipe.model, split, recipe.val_days)
        exported = export.baseline(recipe.model, scores, fill, export.item_vectors(user_item_matrix(split)))
    else:
        cfg = FitConfig(
            epochs=recipe.epochs, dim=recipe.dim, seed=recipe.seed, val_days=recipe.val_days, lr=3e-3,
            exclude_bought=recipe.exclude_bought, budget_s=FIT_BUDGET_S,
        )  # fmt: skip
        fitted = fit_model(recipe.model, split, cfg, features=features)
        exported = export.embeddings(recipe.model, fitted.module, split, cfg.max_len)
        if recipe.hybrid:
            _, info = blend_with_history(
                split, fitted.scores_fn, fitted.val_split, fitted.val_scores_fn, recipe.exclude_bought
            )
            exported = export.with_history(exported, *history_parts(split), info["weight"])
            extra = {"blend_weight": info["weight"], "blend_val_ndcg_curve": info["val_ndcg_curve"]}
    if recipe.rerank:
        reranked, info = fit_reranker(split, fitted, features)
        exported = export.with_rerank(exported, reranked, split.maps.n_users)
        extra.update({f"rerank_{k}": v for k, v in info.items()})
    if recipe.exclude_bought:
        exported = replace(exported, exclude=bought_matrix(split))
    return Built(exported, fitted, extra, time.perf_counter() - started)
