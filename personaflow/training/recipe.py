"""A model's recipe (what the nightly run trains: model, hybrid, re-ranker, epochs, ...) and `build`, which
fits it on a split and returns what serving will score (personaflow/training/export.py).

Recipes are recorded with every saved model (its params), so the gate can re-fit production's recipe on
a candidate's cut when production's own artefact has seen the candidate's test window. That includes
whether the re-ranker was kept with the customers' demographic bands (`demographics`, chosen where they
pay: training/choice.py): a re-fit without them would be another model than the one that was promoted.
The same holds for the re-ranker's repurchase-cadence features (`cadence`, evaluation/cadence.py).
Baselines (repeat-buy, TIFU-KNN, popularity) are recipes too: servable models like any other, fitted
in seconds (TIFU-KNN's parameters tuned on the validation view, never on the test window). So is
item-kNN (models/item_knn.py), a collaborative model served the same way (sparse per-user scores) but
not a gate baseline: it must beat them. So is repeat_cadence (evaluation/cadence.py): repeat-buy's scores
weighted by how due each bought item is, its weight chosen on the validation view.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from personaflow.training import export
from personaflow.training.data.features import FeatureSource, with_demographics
from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import (
    SparseScores,
    history_parts,
    popularity_vector,
    user_item_matrix,
)
from personaflow.training.evaluation.cadence import cadence_parts, tune_cadence
from personaflow.training.evaluation.rebuy import bought_matrix
from personaflow.training.evaluation.tifu import TifuParams, tifu_parts, tune_tifu
from personaflow.training.models import item_knn
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import MODELS, FitResult, fit_model, validation_view
from personaflow.training.rerank.hybrid import hybrid as blend_with_history
from personaflow.training.rerank.reranker import RerankConfig, fit_reranker

BASELINES = tuple(export.BASELINE_KINDS)
COLLABORATIVE = ("item_knn",)  # fitted without epochs, served as sparse per-user scores like a baseline
REPEAT_AWARE = ("repeat_cadence",)  # the same, from the user's own history: not a gate baseline either
SPARSE = (*BASELINES, *COLLABORATIVE, *REPEAT_AWARE)
SPARSE_KINDS = {**export.BASELINE_KINDS, "item_knn": "item-knn", "repeat_cadence": "repeat-cadence"}
KNOWN = (*MODELS, *SPARSE)
# CPU seconds a learned fit may be estimated to take (FitConfig.budget_s): above it the fit is refused
# after its first epoch (models/fit.py OverBudget), never cut short. Its length is early stopping's.
FIT_BUDGET_S = 300.0
# Adam's learning rate per learned model (3e-3 for any other). SASRec at 3e-3 was still climbing when its
# MAX_EPOCHS (training/choice.py) ended it; at 6e-3 it gets there in fewer epochs. The choice's fit, seed
# 42, one thread (issue 21; benchmarks/results/models.json `*_option_sasrec_*`): Online Retail retail-30d
# validation NDCG@10 0.1865 in 70 CPU-s (10 epochs at 3e-3), 0.1913 in 43 (7 at 6e-3); The Complete
# Journey retail-30d 0.2478 in 235 CPU-s, 0.2400 in 152 (far below TIFU-KNN's 0.4065 either way)
LEARNING_RATE = {"sasrec": 6e-3}


def learning_rate(model: str) -> float:
    """Adam's learning rate for a learned `model` (LEARNING_RATE, else 3e-3)."""
    return LEARNING_RATE.get(model, 3e-3)


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
    # the re-ranker's user features include the demographic bands as of the cut (data/features.py
    # with_demographics); only meaningful with rerank, so a recipe without it never carries it
    demographics: bool = False
    # the re-ranker's pools carry each (user, item)'s repurchase cadence (evaluation/cadence.py): only
    # meaningful with rerank, as demographics
    cadence: bool = False
    # the re-ranker's pools carry the PureSVD score and the breadth counts (rerank/candidates.py
    # SVD_FEATURES): only meaningful with rerank, as demographics
    svd: bool = False

    def __post_init__(self) -> None:
        if self.model not in KNOWN:
            raise ValueError(f"unknown model {self.model!r}; choose one of {KNOWN}")
        if self.demographics and not self.rerank:
            raise ValueError("demographics=True is a re-ranker feature set: it needs rerank=True")
        if self.cadence and not self.rerank:
            raise ValueError("cadence=True is a re-ranker feature set: it needs rerank=True")
        if self.svd and not self.rerank:
            raise ValueError("svd=True is a re-ranker feature set: it needs rerank=True")

    @property
    def is_baseline(self) -> bool:
        return self.model in BASELINES and not self.rerank

    @property
    def key(self) -> tuple[str, bool, bool, bool, bool, bool, bool]:
        """What makes two recipes the same model (epochs, seed and cut aside)."""
        hybrid = self.hybrid and self.model not in SPARSE
        return (
            self.model, hybrid, self.rerank, self.exclude_bought, self.demographics, self.cadence, self.svd
        )  # fmt: skip

    @property
    def rerank_config(self) -> RerankConfig:
        """The re-ranker's config for this recipe: the defaults, its pools with cadence and the SVD
        features where recorded."""
        cfg = RerankConfig()
        return replace(cfg, quotas=replace(cfg.quotas, cadence=self.cadence, svd=self.svd))

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Recipe:
        """The recipe a saved model's params recorded (older models: bpr, as they were; models saved before
        `demographics`, `cadence` or `svd` was recorded read False, which is what their re-fit did then)."""
        rerank = bool(params.get("rerank", False))
        return cls(
            model=str(params.get("model", "bpr")), hybrid=bool(params.get("hybrid", False)),
            rerank=rerank, epochs=int(params.get("epochs", 20)),
            dim=int(params.get("dim", 64)), seed=int(params.get("seed", 0)),
            val_days=int(params.get("holdout_days", 7)),
            exclude_bought=bool(params.get("exclude_bought", False)),
            demographics=rerank and bool(params.get("demographics", False)),
            cadence=rerank and bool(params.get("cadence", False)),
            svd=rerank and bool(params.get("svd", False)),
        )  # fmt: skip


@dataclass
class Built:
    exported: export.Embeddings
    fitted: FitResult
    extra: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0


def baseline_parts(
    name: str, split: Split, val: Split | None = None, exclude: bool = False
) -> tuple[sp.csr_matrix, np.ndarray, dict]:
    """A sparse model's scores, popularity fill and info (TIFU-KNN, item-kNN: parameters tuned on `val`,
    bought items last there when `exclude`)."""
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
    if name == "item_knn":
        kparams, curve = item_knn.tune(val, exclude) if val is not None else (item_knn.KnnParams(), {})
        scores, fill = item_knn.knn_parts(split, kparams)
        return scores, fill, {"item_knn_params": asdict(kparams), "item_knn_val_ndcg_curve": curve}
    if name == "repeat_cadence":
        weight, curve = tune_cadence(val) if val is not None else (1.0, {})
        scores, fill = cadence_parts(split, weight)
        return scores, fill, {"cadence_weight": weight, "cadence_val_ndcg_curve": curve}
    raise ValueError(f"unknown baseline {name!r}; choose one of {SPARSE}")


def _parts_at(name: str, view: Split, info: dict) -> tuple[sp.csr_matrix, np.ndarray]:
    """The same sparse model, with the parameters chosen once (`info`), fitted at another cut."""
    if name == "tifu":
        return tifu_parts(view, TifuParams(**info["tifu_params"]))
    if name == "item_knn":
        return item_knn.knn_parts(view, item_knn.KnnParams(**info["item_knn_params"]))
    if name == "repeat_cadence":
        return cadence_parts(view, info["cadence_weight"])
    return baseline_parts(name, view)[:2]


def _sparse_fn(scores: sp.csr_matrix, fill: np.ndarray):
    # SparseScores: the re-ranker's candidate pools read its rows, not the whole catalogue per user
    return SparseScores(scores, fill)


def fit_baseline(
    name: str, split: Split, val_days: int, exclude: bool = False
) -> tuple[FitResult, sp.csr_matrix, np.ndarray, dict]:
    """A sparse model (baseline or item-kNN) as a FitResult (so a re-ranker can take its candidates),
    plus its saved parts."""
    val = validation_view(split, val_days)
    scores, fill, info = baseline_parts(name, split, val, exclude)
    val_scores, val_fill = _parts_at(name, val, info)  # the validation view's own scorer

    def scorer_at(view: Split):  # the same parameters at an earlier cut (re-ranker training windows)
        return _sparse_fn(*_parts_at(name, view, info))

    fitted = FitResult(
        name, _sparse_fn(scores, fill), [], 0, "cpu", _sparse_fn(val_scores, val_fill), val, None, scorer_at
    )  # fmt: skip
    return fitted, scores, fill, info


def build(
    recipe: Recipe,
    split: Split,
    features: FeatureSource | None = None,
    budget_s: float | None = FIT_BUDGET_S,
    customers: Any = None,
) -> Built:
    """Fit `recipe` on `split.train`; the result is scored exactly as serving will score it. A learned
    fit estimated above `budget_s` CPU seconds is refused (models/fit.py OverBudget), never cut short.
    `customers` (the shop's customer table, every version with valid_from): needed when the recipe's
    re-ranker uses demographics, read as of the split's cut (O(users) more feature memory)."""
    if recipe.rerank and features is None:
        raise ValueError("rerank=True needs a feature source (features=...) for the DeepFM re-ranker")
    rerank_features = features  # the retrieval learns from the plain features, as the choice fitted it
    if recipe.demographics:
        if customers is None or not len(customers):
            raise ValueError(
                "the recipe's re-ranker uses demographics: it needs the shop's customer table (customers=...)"
            )
        rerank_features = with_demographics(features, customers)
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if recipe.model in SPARSE:
        fitted, scores, fill, extra = fit_baseline(
            recipe.model, split, recipe.val_days, recipe.exclude_bought
        )
        items = export.item_vectors(user_item_matrix(split))
        exported = export.Embeddings(
            SPARSE_KINDS[recipe.model], np.zeros((split.maps.n_users, items.shape[1]), dtype=np.float32),
            items, np.zeros(split.maps.n_items, dtype=np.float32), scores.tocsr(),
            np.asarray(fill, dtype=np.float64), 0.0,
        )  # fmt: skip
    else:
        cfg = FitConfig(
            epochs=recipe.epochs, dim=recipe.dim, seed=recipe.seed, val_days=recipe.val_days,
            lr=learning_rate(recipe.model),
            exclude_bought=recipe.exclude_bought, budget_s=budget_s,
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
        reranked, info = fit_reranker(split, fitted, rerank_features, recipe.rerank_config)
        exported = export.with_rerank(exported, reranked, split.maps.n_users)
        extra.update({f"rerank_{k}": v for k, v in info.items()})
    if recipe.exclude_bought:
        exported = replace(exported, exclude=bought_matrix(split))
    return Built(exported, fitted, extra, time.perf_counter() - started)
