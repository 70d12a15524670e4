"""A recipe records whether its re-ranker kept the demographic bands (training/recipe.py `demographics`),
and the gate's re-fit of a saved model (training/registry/fair.py) re-fits it with them: before, a
production model chosen as "repeat_buy+rerank+demographics" was judged by a re-fit without them."""

from __future__ import annotations

import pandas as pd
import pytest

from personaflow.training import recipe as recipe_module
from personaflow.training.data.features import DEMOGRAPHIC_USER_CATEGORICAL, purchases_source
from personaflow.training.data.interactions import time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.pipeline import _params
from personaflow.training.recipe import Recipe, build
from personaflow.training.registry.fair import evidence, scored_fairly
from personaflow.training.registry.loading import LoadedModel
from personaflow.training.registry.pointer import write_pointer
from personaflow.training.registry.store import model_info, save_candidate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WITH_DEMOGRAPHICS = Recipe(model="repeat_buy", rerank=True, demographics=True, seed=0, val_days=7)


def _customers(user_ids: list[str]) -> pd.DataFrame:
    ages = ["25-34", "45-54", "65+"]
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "age": [ages[i % 3] for i in range(len(user_ids))],
            "income": ["50-74K"] * len(user_ids),
            "valid_from": pd.Timestamp("2000-01-01"),
        }
    )


def _spy_on_reranker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The user categorical columns each re-ranker fit in training/recipe.py `build` is given."""
    seen: list[tuple[str, ...]] = []
    real = recipe_module.fit_reranker

    def spy(split, fitted, features, *cfg):
        seen.append(features(split).user_categorical)
        return real(split, fitted, features, *cfg)

    monkeypatch.setattr(recipe_module, "fit_reranker", spy)
    return seen


def test_demographics_are_part_of_the_recipe_and_of_its_recorded_params(monkeypatch) -> None:
    frame = make_interactions(seed=8)
    split = time_split(frame, 7)
    customers = _customers(list(split.maps.user_ids))
    seen = _spy_on_reranker(monkeypatch)
    built = build(WITH_DEMOGRAPHICS, split, purchases_source(None), customers=customers)
    assert seen[-1][-3:] == DEMOGRAPHIC_USER_CATEGORICAL  # the re-ranker learned with the bands
    params = _params(WITH_DEMOGRAPHICS, built, split)
    assert params["demographics"] is True
    assert Recipe.from_params(params) == WITH_DEMOGRAPHICS
    # another model than the re-ranker without them: the gate does not call them "the same recipe"
    assert WITH_DEMOGRAPHICS.key != Recipe(model="repeat_buy", rerank=True).key
    # a model saved before the field existed re-fits as it did then
    assert Recipe.from_params({k: v for k, v in params.items() if k != "demographics"}).demographics is False
    with pytest.raises(ValueError, match="customer table"):
        build(WITH_DEMOGRAPHICS, split, purchases_source(None))
    with pytest.raises(ValueError, match="rerank=True"):
        Recipe(model="repeat_buy", demographics=True)


def test_the_gate_refits_production_with_the_demographics_it_kept(store, monkeypatch) -> None:
    frame = make_interactions(seed=8)
    newest = time_split(frame, 2)  # production trained on more days than the candidate's split
    features = purchases_source(None)
    customers = _customers(list(newest.maps.user_ids))
    built = build(WITH_DEMOGRAPHICS, newest, features, customers=customers)
    tag = save_candidate(
        built.exported, newest.maps, popularity_ranking(newest), {}, _params(WITH_DEMOGRAPHICS, built, newest)
    )
    write_pointer(store, {"tag": tag, "history": []})
    assert model_info(tag)["params"]["demographics"] is True

    older = time_split(frame, 7)
    seen = _spy_on_reranker(monkeypatch)
    fn, basis, recipe = scored_fairly(tag, older, features, customers)
    assert "re-fit on this cut" in basis and recipe == WITH_DEMOGRAPHICS
    assert len(seen) == 1 and seen[0][-3:] == DEMOGRAPHIC_USER_CATEGORICAL
    with pytest.raises(ValueError, match="customer table"):  # never silently re-fitted without them
        scored_fairly(tag, older, features)

    # the gate's evidence for a candidate scores production through that re-fit
    seen.clear()
    candidate = build(Recipe(model="repeat_buy"), older)
    candidate_fn = LoadedModel.of(candidate.exported, older.maps, popularity_ranking(older)).scores
    ev = evidence(candidate_fn, older, Recipe(model="repeat_buy"), {"repeat_buy": candidate_fn}, store,
                  features, customers=customers)  # fmt: skip
    assert ev["production_tag"] == tag and "re-fit" in ev["gate_production_basis"]
    assert len(seen) == 1 and seen[0][-3:] == DEMOGRAPHIC_USER_CATEGORICAL
