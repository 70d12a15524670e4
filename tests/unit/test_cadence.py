"""Repurchase cadence (issue 21, item 4; personaflow/training/evaluation/cadence.py) on a hand-made log:
intervals, days since, ratio and due-ness per (user, item), once-bought and never-bought items; the
cadence-aware repeat retrieval; the re-ranker's cadence cross features; a recipe that keeps cadence
round-trips through its recorded params and is re-fitted with it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import lognorm

from personaflow.training import recipe as recipe_module
from personaflow.training.data.features import purchases_source
from personaflow.training.data.interactions import time_split
from personaflow.training.data.purchases import split_purchases
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import SparseScores, history_parts
from personaflow.training.evaluation.cadence import (
    cadence_features,
    cadence_parts,
    cadence_table,
    pair_positions,
    tune_cadence,
    window_due,
)
from personaflow.training.evaluation.metrics import top_k
from personaflow.training.pipeline import _params
from personaflow.training.recipe import Recipe, build
from personaflow.training.rerank.candidates import CADENCE_FEATURES, CandidateBuilder, Quotas

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOON = pd.Timedelta(hours=12)


def _rows(user: str, item: str, days: list[str], lines: int = 1) -> list[tuple[str, str, pd.Timestamp]]:
    return [(user, item, pd.Timestamp(d) + NOON) for d in days for _ in range(lines)]


def _split():
    """Cut at 2024-01-31 12:00 (10 days before the last purchase): a re-orders x on 01-01, 01-09 and
    01-21 (gaps 8 and 12: interval 10, last 10 days before the cut, due now) with two lines on 01-09;
    y three lines each on 01-05 and 01-25 (interval 20, 6 days ago: not due for two more weeks); z once.
    b bought x once; b never bought y."""
    rows = (
        _rows("a", "x", ["2024-01-01", "2024-01-21"])
        + _rows("a", "x", ["2024-01-09"], lines=2)
        + _rows("a", "y", ["2024-01-05", "2024-01-25"], lines=3)
        + _rows("a", "z", ["2024-01-20"])
        + _rows("b", "x", ["2024-01-10"])
        + _rows("b", "z", ["2024-01-12"])
        + _rows("a", "x", ["2024-02-10"])  # the test window (the last purchase sets the cut)
        + _rows("b", "z", ["2024-02-05"])
    )
    return split_purchases(pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]), test_days=10)


def _at(split, user: str, items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    users = np.array([split.maps.user_index[user]])
    return users, np.array([[split.maps.item_index[i] for i in items]])


def test_intervals_days_since_and_the_shops_spread_on_a_hand_made_log():
    split = _split()
    cad = cadence_table(split)
    assert cad.horizon == pytest.approx(10.0)  # the split's window
    users, items = _at(split, "a", ["x", "y", "z"])
    pos = pair_positions(cad, users, items)[0]
    assert (pos >= 0).all()
    assert cad.n_days[pos].tolist() == [3, 2, 1]  # x's two lines on 01-09 are one day
    np.testing.assert_allclose(cad.interval[pos[:2]], [10.0, 20.0])  # median of 8 and 12; one gap of 20
    assert np.isnan(cad.interval[pos[2]])  # bought on one day: no rhythm
    np.testing.assert_allclose(cad.since[pos], [10.0, 6.0, 11.0])
    np.testing.assert_allclose(cad.ratio[pos[:2]], [1.0, 0.3])
    # the spread: x is the one pair with 2+ gaps, its log gaps off its median by log 0.8 and log 1.2
    assert cad.sigma == pytest.approx(np.sqrt((np.log(0.8) ** 2 + np.log(1.2) ** 2) / 2))
    never = pair_positions(cad, *_at(split, "b", ["y", "x"]))[0]
    assert never[0] == -1 and never[1] >= 0 and cad.n_days[never[1]] == 1


def test_due_is_the_lognormal_chance_of_the_next_purchase_inside_the_window():
    split = _split()
    cad = cadence_table(split)
    feats = cadence_features(cad, *_at(split, "a", ["x", "y", "z"]))
    for col, (interval, since) in enumerate([(10.0, 10.0), (20.0, 6.0)]):
        gap = lognorm(s=cad.sigma, scale=interval)  # scipy's own log-normal, conditioned by hand
        expected = (gap.cdf(since + 10.0) - gap.cdf(since)) / gap.sf(since)
        assert feats["cad_due"][0, col] == pytest.approx(expected, rel=1e-9)
    assert feats["cad_due"][0, 0] > 0.9 > 0.3 > feats["cad_due"][0, 1]  # x due now, y not yet
    np.testing.assert_allclose(feats["cad_interval"][0, :2], [10.0, 20.0])
    np.testing.assert_allclose(feats["cad_ratio"][0, :2], [1.0, 0.3])
    # once bought (z) and never bought (b's y): no interval, no ratio, no due-ness
    never = cadence_features(cad, *_at(split, "b", ["y"]))
    for f in (feats, never):
        assert np.isnan(f["cad_interval"][0, -1]) and np.isnan(f["cad_ratio"][0, -1])
        assert f["cad_due"][0, -1] == 0.0
    # long overdue stays a probability (no 0/0), and more time in the window is never less due
    due = window_due(np.array([1.0, 10.0, 10.0]), np.array([400.0, 5.0, 5.0]), 10.0, 0.2)
    assert 0.0 <= due[0] <= 1.0
    assert window_due(np.array([10.0]), np.array([5.0]), 20.0, 0.2)[0] >= due[1]


def test_the_cadence_retrieval_puts_the_due_item_above_a_more_bought_one():
    split = _split()
    a = split.maps.user_index["a"]
    item_ids = np.asarray(split.maps.item_ids)
    _, top = top_k(SparseScores(*history_parts(split)), split, 2)
    assert item_ids[top[0]].tolist() == ["y", "x"]  # repeat-buy: y's 6 lines beat x's 4
    scores, fill = cadence_parts(split, weight=2.0)
    fn = SparseScores(scores, fill)
    _, top = top_k(fn, split, 2)
    assert item_ids[top[0]].tolist() == ["x", "y"]  # x is due, y is not
    # weight 0 is repeat-buy itself; items never bought keep repeat-buy's fill, below every bought one
    plain, _ = history_parts(split)
    assert (cadence_parts(split, 0.0)[0] != plain).nnz == 0
    row = fn(np.array([a]))[0]
    assert row[split.maps.item_index["z"]] > fill.max()
    weight, curve = tune_cadence(split)
    assert set(curve) == {"0.0", "0.5", "1.0", "2.0", "4.0", "8.0"} and str(weight) in curve


def test_the_reranker_pools_carry_the_cadence_features_only_when_asked():
    split = _split()
    retrieval = SparseScores(*history_parts(split))
    plain = CandidateBuilder(split, retrieval, Quotas(size=3, retrieval=3, history=3, copurchase=3))
    assert not set(CADENCE_FEATURES) & set(plain.feature_names)
    builder = CandidateBuilder(split, retrieval, Quotas(size=3, retrieval=3, history=3, copurchase=3,
                                                        cadence=True))  # fmt: skip
    assert builder.feature_names[-3:] == CADENCE_FEATURES
    users = np.array([split.maps.user_index["a"], split.maps.user_index["b"]])
    cands = builder.build(users)
    expected = cadence_features(cadence_table(split), users, cands.items)
    for name in CADENCE_FEATURES:
        np.testing.assert_allclose(cands.features[name], expected[name].astype(np.float32))
    item_ids = np.asarray(split.maps.item_ids)
    x_of_a = list(item_ids[cands.items[0]]).index("x")
    assert cands.features["cad_ratio"][0, x_of_a] == pytest.approx(1.0)
    y_of_b = list(item_ids[cands.items[1]]).index("y")  # b never bought y: NaN, NaN, 0
    assert np.isnan(cands.features["cad_interval"][1, y_of_b]) and cands.features["cad_due"][1, y_of_b] == 0


@pytest.mark.parametrize("flag", ["cadence", "svd"])
def test_a_recipe_with_a_pool_feature_set_round_trips_and_is_refitted_with_it(monkeypatch, flag):
    """cadence and the SVD features (rerank/candidates.py Quotas) are recorded in the saved model's params,
    so the gate's re-fit of it keeps them."""
    recipe = Recipe(model="repeat_buy", rerank=True, seed=0, val_days=7, **{flag: True})
    frame = make_interactions(seed=8)
    split = time_split(frame, 7)
    seen: list[bool] = []
    real = recipe_module.fit_reranker

    def spy(split, fitted, features, cfg=None):
        seen.append(bool(cfg is not None and getattr(cfg.quotas, flag)))
        return real(split, fitted, features, cfg)

    monkeypatch.setattr(recipe_module, "fit_reranker", spy)
    built = build(recipe, split, purchases_source(None))
    assert seen == [True]  # the re-ranker learned with the feature set in its pools
    assert any(k.startswith("rerank_") for k in built.extra)
    params = _params(recipe, built, split)
    assert params[flag] is True
    assert Recipe.from_params(params) == recipe  # what the gate's re-fit (registry/fair.py) reads
    assert recipe.key != Recipe(model="repeat_buy", rerank=True).key
    assert getattr(Recipe.from_params({k: v for k, v in params.items() if k != flag}), flag) is False
    with pytest.raises(ValueError, match="rerank=True"):
        Recipe(model="repeat_buy", **{flag: True})
    # the recorded recipe re-fitted on another cut keeps it
    seen.clear()
    build(Recipe.from_params(params), time_split(frame, 10), purchases_source(None))
    assert seen == [True]


def test_repeat_cadence_is_a_servable_sparse_recipe():
    frame = make_interactions(seed=8)
    split = time_split(frame, 7)
    built = build(Recipe(model="repeat_cadence", val_days=7), split)
    assert built.exported.kind == "repeat-cadence"
    assert "cadence_weight" in built.extra and built.fitted.scorer_at is not None


def _rhythmic_shop(jitter_days: int, seed: int = 0):
    """300 customers, each re-ordering 10 of 60 items on the item's own cycle (21 to 63 days, a random
    phase, +- `jitter_days`) for a year: in a 14-day window a customer re-buys the items that are due,
    which their counts alone cannot tell apart."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01") + NOON
    rows = []
    for user in range(300):
        for item in rng.choice(60, size=10, replace=False):
            period = int(rng.choice([21, 35, 49, 63]))
            day = int(rng.integers(0, period))
            while day < 365:
                rows.append((f"u{user}", f"i{item}", start + pd.Timedelta(days=day)))
                day += period + int(rng.integers(-jitter_days, jitter_days + 1))
    return split_purchases(pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]), test_days=14)


def test_the_choice_takes_repeat_cadence_where_customers_reorder_on_a_rhythm():
    from personaflow.training.choice import choose

    split = _rhythmic_shop(jitter_days=1)
    options = ("popularity", "repeat_buy", "repeat_cadence")
    choice = choose(split, Recipe(seed=0, val_days=14), options=options, rerank=False)
    rows = choice.report["options"]
    assert choice.recipe.model == "repeat_cadence", choice.report
    assert rows["repeat_cadence"]["val_ndcg_at_10"] > rows["repeat_buy"]["val_ndcg_at_10"] + 0.01
    assert choice.built.extra["cadence_weight"] > 0
    assert choice.built.exported.kind == "repeat-cadence"
    # and on the test window, never read by the choice, it beats repeat-buy too
    from personaflow.training.evaluation.metrics import evaluate

    cadence = evaluate(choice.built.fitted.scores_fn, split)["ndcg_at_10"]
    repeat = evaluate(SparseScores(*history_parts(split)), split)["ndcg_at_10"]
    assert cadence > repeat + 0.01


def test_the_choice_tries_the_reranker_with_the_svd_features_and_cadence_and_records_what_it_kept():
    from personaflow.training.choice import RERANK, RERANK_CADENCE, RERANK_SVD, TIE_EPS, choose

    split = _rhythmic_shop(jitter_days=1, seed=1)
    base = Recipe(epochs=3, dim=16, seed=0, val_days=14, exclude_bought=False)
    choice = choose(split, base, purchases_source(None), options=("popularity", "repeat_buy"))
    rows, comparisons = choice.report["options"], choice.report["comparisons"]
    assert rows[RERANK]["status"] == rows[RERANK_SVD]["status"] == rows[RERANK_CADENCE]["status"] == "scored"
    chosen = choice.report["chosen"]
    plain = RERANK  # each try is judged over the re-ranker kept before it: svd first, then cadence
    for name, what, flag in ((RERANK_SVD, "svd", "svd"), (RERANK_CADENCE, "cadence", "cadence")):
        verdict = comparisons[name]
        low, gain = verdict[f"vs_{plain}_gain_ci_low"], verdict[f"vs_{plain}_gain"]
        assert verdict["pays"] == (low > 0 and gain >= TIE_EPS), verdict
        if not verdict["pays"]:
            assert f"{what} does not pay" in rows[name]["note"]
        else:
            plain = name
        assert getattr(choice.recipe, flag) == (f"+{flag}" in chosen)
        assert getattr(choice.recipe, flag) == (verdict["pays"] and choice.recipe.rerank)


def test_no_feature_set_is_tried_over_a_reranker_its_estimate_refuses(monkeypatch):
    """Each try is another validation fit of the re-ranker; where the plain one's estimate is over the
    budget, every variant would be refused as well: none is fitted."""
    from personaflow.training import choice as choice_mod
    from personaflow.training.choice import RERANK, RERANK_CADENCE, RERANK_SVD, choose

    fits: list[object] = []
    real = choice_mod._rerank_at_validation

    def counted(*args, **kwargs):
        fits.append(args[-1] if len(args) > 4 else kwargs.get("cfg"))
        return real(*args, **kwargs)

    monkeypatch.setattr(choice_mod, "_rerank_at_validation", counted)
    split = _rhythmic_shop(jitter_days=1, seed=1)
    base = Recipe(epochs=3, dim=16, seed=0, val_days=14, exclude_bought=False)
    choice = choose(split, base, purchases_source(None), options=("popularity", "repeat_buy"), budget_s=1e-9)
    rows = choice.report["options"]
    assert rows[RERANK]["status"] in ("scored", "refused") and len(fits) == 1  # the plain fit alone
    for name in (RERANK_SVD, RERANK_CADENCE):
        assert rows[name]["status"] == "not tried" and "over the budget" in rows[name]["note"], rows[name]
    assert not (choice.recipe.svd or choice.recipe.cadence or choice.recipe.rerank)
