"""Models scored fairly on one split: neither the candidate nor production may have seen its test window.

A saved model has seen every day before its recorded `cutoff`. On a split whose test window starts at
or after that cutoff, its own artefact is scored there ("a window after both cuts"). Otherwise (a newer
production against an older candidate, a model trained on everything) its recipe is re-fitted on the
split's cut and that fit is scored instead: the old artefact would be graded on days it trained on.
`evidence` puts the candidate, the baselines and production through personaflow/training/gate.py on one split.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from personaflow.training.data.features import FeatureSource
from personaflow.training.data.interactions import Split, split_fingerprint
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.evaluation.metrics import ScoresFn
from personaflow.training.evaluation.rebuy import bought_matrix, excluding
from personaflow.training.gate import gate_evidence
from personaflow.training.recipe import BASELINES, Built, Recipe, build
from personaflow.training.registry.loading import LoadedModel, load_model, transferred_scores_fn
from personaflow.training.registry.pointer import read_pointer
from personaflow.training.registry.store import model_info

log = logging.getLogger(__name__)
AFTER_BOTH_CUTS = "scored on a test window after both cuts"


def saw_window(params: dict[str, Any], split: Split) -> bool:
    """Whether a model with these recorded params trained on any day of `split`'s test window."""
    cut = params.get("cutoff")
    return cut is not None and date.fromisoformat(str(cut)[:10]) > split.cutoff


def scored_fairly(
    tag: str, split: Split, features: FeatureSource | None = None, customers: Any = None
) -> tuple[ScoresFn, str, Recipe]:
    """Scores of saved model `tag` over `split` that never saw its test window, how, and its recipe.
    A re-fit is of the whole recipe as recorded: a re-ranker that kept the demographic bands is re-fitted
    with them (as of this cut, from `customers`), else it would be judged as a model nobody promoted."""
    params = model_info(tag)["params"]
    recipe = Recipe.from_params(params)
    if not saw_window(params, split):
        return transferred_scores_fn(load_model(tag), split.maps), AFTER_BOTH_CUTS, recipe
    log.info("%s trained past %s: re-fitting its recipe %s on this cut", tag, split.cutoff, recipe.key)
    built = build(recipe, split, features, customers=customers)
    fn = LoadedModel.of(built.exported, split.maps, popularity_ranking(split), tag).scores
    return (
        fn,
        f"its recipe re-fit on this cut (its own model, cut {params['cutoff']}, trained on this window)",
        recipe,
    )


def baseline_models(
    split: Split,
    val_days: int,
    exclude_bought: bool = False,
    fitted: dict[str, Built] | None = None,
    refused: frozenset[str] = frozenset(),
) -> dict[str, Built]:
    """name -> training.recipe.Built for every servable baseline on this split.

    `fitted`: baselines already fitted on this very split with these settings (the recipe choice fits
    them all, training/choice.py), taken as they are instead of fitted twice: TIFU-KNN's tuning is the
    costliest baseline (147 CPU-s at 100k customers). Each is a shallow copy, so what is added to one's
    `extra` does not reach the other. `refused`: baselines the choice refused over its CPU budget
    (TIFU-KNN at 1M customers): a model the night cannot afford to fit is not one it could serve, so
    it is left out of the gate's comparison rather than fitted anyway; the result names them."""
    fitted = fitted or {}
    return {
        name: (
            replace(fitted[name], extra=dict(fitted[name].extra))
            if name in fitted
            else build(Recipe(model=name, val_days=val_days, exclude_bought=exclude_bought), split)
        )
        for name in BASELINES
        if name not in refused or name == "popularity"  # the floor is never refused
    }


def evidence(
    candidate_fn: ScoresFn,
    split: Split,
    recipe: Recipe,
    baselines: dict[str, ScoresFn],
    pointer_path: Path | None,
    features: FeatureSource | None = None,
    candidate_tag: str | None = None,
    customers: Any = None,
) -> dict[str, Any]:
    """The gate's evidence for a candidate of `recipe` on `split`, production scored fairly.

    `candidate_tag`: a saved candidate (manual promotion); without it the candidate is being fitted
    on `split`. Whether both learned from the same data is compared by the recorded `data_sha256`.
    `customers`: the shop's customer table, for a production recipe whose re-ranker uses demographics."""
    pointer = read_pointer(Path(pointer_path)) if pointer_path is not None else None
    production_fn, basis, same, same_data = None, "no production model", False, False
    prod_tag = pointer["tag"] if pointer else None
    if prod_tag is not None and prod_tag != candidate_tag:
        try:
            production_fn, basis, prod_recipe = scored_fairly(prod_tag, split, features, customers)
            same = prod_recipe.key == recipe.key
            learned_from = model_info(candidate_tag)["params"] if candidate_tag else {}
            data = learned_from.get("data_sha256") if candidate_tag else split_fingerprint(split)
            same_data = data is not None and data == model_info(prod_tag)["params"].get("data_sha256")
            if recipe.exclude_bought:  # the same rule for both sides: nothing bought before this cut
                production_fn = excluding(production_fn, bought_matrix(split))
        except ValueError as exc:  # deleted from the store, or a recipe this split cannot re-fit
            log.warning("production %s not scored on this split: %s", prod_tag, exc)
            prod_tag = None
    return gate_evidence(
        candidate_fn, split, baselines, production_fn, production_tag=prod_tag if production_fn else None,
        production_basis=basis, same_recipe=same, same_data=same_data,
        candidate_baseline=recipe.model if recipe.is_baseline else None,
    )  # fmt: skip
