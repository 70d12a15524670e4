"""A shop where nobody buys an item twice (and item B tends to follow item A): measured as such, bought
items are ranked last everywhere, and every model then beats popularity (which is ranked the same way)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from personaflow.ingest.generate import generate_shop
from personaflow.training.data.features import purchases_source
from personaflow.training.data.interactions import IdMaps
from personaflow.training.data.purchases import purchases_from_events, split_purchases
from personaflow.training.evaluation.baselines import item_knn, popularity, popularity_ranking
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.evaluation.rebuy import (
    REBUY_MIN,
    bought_matrix,
    bought_pairs,
    decide_exclusion,
    excluding,
    repeat_rate,
)
from personaflow.training.models.bpr import NO_REBUY_REG, BPRLearner
from personaflow.training.models.config import FitConfig
from personaflow.training.models.sequence import SequenceLearner
from personaflow.training.models.two_tower import _others
from personaflow.training.recipe import Recipe, build
from personaflow.training.registry.loading import LoadedModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def no_rebuy():
    shop = generate_shop(users=800, items=150, days=90, seed=3, rebuy=False)  # follow on by default
    return split_purchases(purchases_from_events(shop.events), test_days=14), shop


@pytest.fixture(scope="module")
def masked_popularity(no_rebuy):
    split, _ = no_rebuy
    return evaluate(excluding(popularity(split), bought_matrix(split)), split)["ndcg_at_10"]


def test_the_repeat_rate_is_measured_and_decides_exclusion(no_rebuy):
    split, _ = no_rebuy
    assert repeat_rate(split) == 0.0 and decide_exclusion(split) == (True, 0.0)
    rebuys = split_purchases(
        purchases_from_events(generate_shop(users=300, items=80, days=60, seed=3).events), 14
    )
    exclude, rate = decide_exclusion(rebuys)
    assert rate > REBUY_MIN and exclude is False
    assert decide_exclusion(rebuys, setting=True)[0] is True  # a setting overrides the measurement


# Measured on this shop (masked popularity 0.128): item-kNN 0.253, TIFU-KNN 0.199, BPR 0.171, GRU 0.250,
# SASRec 0.185, two-tower 0.177. Learned models are built by the nightly path's recipe (exclude_bought)
# and scored through LoadedModel, exactly as serving scores them.
@pytest.mark.parametrize("model", ["tifu", "item_knn", "bpr", "gru", "sasrec", "two_tower"])
def test_every_model_beats_popularity_where_nobody_rebuys(no_rebuy, masked_popularity, model):
    split, shop = no_rebuy
    if model == "item_knn":
        fn = excluding(item_knn(split), bought_matrix(split))
    else:
        features = purchases_source(shop.items.set_index("item_id"))
        built = build(Recipe(model, val_days=14, exclude_bought=True), split, features)
        fn = LoadedModel.of(built.exported, split.maps, popularity_ranking(split)).scores
    ndcg = evaluate(fn, split)["ndcg_at_10"]
    assert ndcg > masked_popularity + 0.02, (model, ndcg, masked_popularity)


def test_a_served_model_never_offers_what_the_user_bought(no_rebuy):
    split, shop = no_rebuy
    bought = bought_matrix(split)
    recipe = Recipe("bpr", hybrid=True, epochs=2, dim=8, seed=1, val_days=14, exclude_bought=True)
    built = build(recipe, split)
    served = LoadedModel.of(built.exported, split.maps, popularity_ranking(split))
    for u in np.argsort(-np.diff(bought.indptr))[:5]:  # the users who bought the most
        items, _ = served.recommend(split.maps.user_ids[u], 10)
        assert not {i for i, _ in items} & {split.maps.item_ids[j] for j in bought[u].indices}
    # without exclusion the hybrid's repeat-buy part puts bought items first
    plain = build(Recipe("bpr", hybrid=True, epochs=2, dim=8, seed=1, val_days=14), split)
    loaded = LoadedModel.of(plain.exported, split.maps, popularity_ranking(split))
    u = int(np.argmax(np.diff(bought.indptr)))
    top = {i for i, _ in loaded.recommend(split.maps.user_ids[u], 10)[0]}
    assert top & {split.maps.item_ids[j] for j in bought[u].indices}


def test_training_leaves_bought_items_out_of_targets_and_negatives():
    rows = [("u1", "a", "2026-01-01"), ("u1", "b", "2026-01-01"), ("u1", "c", "2026-01-02"),
            ("u1", "a", "2026-01-03"), ("u1", "d", "2026-01-03"), ("u2", "b", "2026-01-01"),
            ("u2", "d", "2026-01-02")]  # fmt: skip
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(
        ts=lambda f: pd.to_datetime(f["ts"])
    )
    maps = IdMaps(["u1", "u2"], ["a", "b", "c", "d"])
    cfg = FitConfig(dim=8, max_len=10, exclude_bought=True)
    learner = SequenceLearner(train, maps, cfg, "cpu", "gru")
    _, _, target, seen = learner._batch(np.arange(len(learner.windows.inputs)))
    # u1's ends: after {a, b} (next {c}), after {c} (next {a, d}: a is a re-buy); u2's: after {b} (next {d})
    named = [({maps.item_ids[j] for j in np.flatnonzero(t)}, {maps.item_ids[j] for j in np.flatnonzero(s)})
             for t, s in zip(target, seen, strict=True)]  # fmt: skip
    assert sorted(named, key=str) == sorted(
        [({"c"}, {"a", "b"}), ({"d"}, {"a", "b", "c"}), ({"d"}, {"b"})], key=str
    )
    np.testing.assert_allclose(target.sum(axis=1), 1.0)
    plain = SequenceLearner(train, maps, replace(cfg, exclude_bought=False), "cpu", "gru")
    assert plain._batch(np.arange(len(plain.windows.inputs)))[3] is None  # re-buy shops: unchanged
    # two-tower: the user's other bought items are no negatives, the row's own target stays in
    bought = bought_pairs(train, maps)
    mask = _others(bought, torch.tensor([0, 1]), torch.tensor([2, 3])).numpy()
    assert mask.tolist() == [[True, True, False, True], [False, True, False, False]]
    assert BPRLearner(train.assign(weight=1.0), maps, cfg, "cpu").reg == NO_REBUY_REG > cfg.reg
