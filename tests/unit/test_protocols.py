"""The next-basket field's protocol pieces: repeat/explore metrics, the last-basket split and its
validation, the P-TopFreq and GP-TopFreq baselines, all on hand-made logs worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from personaflow.training.data.features import from_purchases
from personaflow.training.data.purchases import (
    LastBasketSplit,
    assemble,
    last_basket_split,
    split_purchases,
    validation_split,
)
from personaflow.training.evaluation.baselines import gp_topfreq, p_topfreq
from personaflow.training.evaluation.metrics import evaluate, per_user_metrics

ITEMS = ["a", "b", "c", "d", "e", "f"]


def _rows(pairs: list[tuple[str, str]], day: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs], "ts": pd.Timestamp(day)}
    )


def _hand_split():
    # train: u1 bought a, b; u2 bought c, d; u3 bought e, f (so a..f are all rankable)
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u2", "d"), ("u3", "e"), ("u3", "f")]
    train = _rows(pairs, "2026-01-01")
    # test truth: u1 {a, c}: repeat {a}, explore {c}; u2 {d}: repeat {d}, no explore;
    #             u3 {a, b}: no repeat, explore {a, b}
    test = _rows([("u1", "a"), ("u1", "c"), ("u2", "d"), ("u3", "a"), ("u3", "b")], "2026-02-01")
    return assemble(train, test, pd.Timestamp("2026-01-15"), pd.Timestamp("2026-02-01"))


def _fixed_ranking(split):
    # every user gets the same ranking a, c, b, d, e, f: with k = 2 the list is [a, c]
    order = {"a": 6.0, "c": 5.0, "b": 4.0, "d": 3.0, "e": 2.0, "f": 1.0}
    row = np.array([order[i] for i in split.maps.item_ids])
    return lambda users: np.tile(row, (len(users), 1))


def test_repeat_explore_metrics_on_a_hand_made_example():
    split = _hand_split()
    got = evaluate(_fixed_ranking(split), split, k=2)
    g = 1 / math.log2(3)  # the gain of a hit at rank 2 (0.6309)
    # per user, top-2 = [a, c]:
    # u1 truth {a, c}: recall 2/2 = 1, ndcg 1;  repeat {a}: 1, 1;  explore {c}: recall 1, ndcg g/1 = g
    # u2 truth {d}:    recall 0, ndcg 0;        repeat {d}: 0, 0;  explore: none (left out)
    # u3 truth {a, b}: recall 1/2, ndcg 1/(1 + g);  repeat: none (left out);  explore {a, b}: 1/2, 1/(1 + g)
    assert got["recall_at_2"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert got["ndcg_at_2"] == pytest.approx((1 + 0 + 1 / (1 + g)) / 3)
    assert got["n_test_users"] == 3
    assert got["repeat_recall_at_2"] == pytest.approx((1 + 0) / 2)  # over u1, u2
    assert got["repeat_ndcg_at_2"] == pytest.approx((1 + 0) / 2)
    assert got["explore_recall_at_2"] == pytest.approx((1 + 0.5) / 2)  # over u1, u3
    assert got["explore_ndcg_at_2"] == pytest.approx((g + 1 / (1 + g)) / 2)  # (0.6309 + 0.6131) / 2
    assert got["repeat_users"] == 2 and got["explore_users"] == 2
    assert got["explore_user_share"] == pytest.approx(2 / 3)
    assert got["repeat_user_share"] == pytest.approx(2 / 3)

    per_user = per_user_metrics(_fixed_ranking(split), split, k=2)
    assert list(per_user["users"]) == ["u1", "u2", "u3"]
    assert np.isnan(per_user["explore_recall_at_2"][1]) and np.isnan(per_user["repeat_ndcg_at_2"][2])
    assert per_user["explore_ndcg_at_2"][0] == pytest.approx(g)


def test_a_model_that_only_reorders_history_scores_zero_on_explore():
    split = _hand_split()
    history = p_topfreq(split)  # the user's own items first
    got = evaluate(history, split, k=2)
    # u1's list is its own a, b: repeat {a} hit at rank 1 -> 1; explore {c} missed -> 0
    # u2's list is c, d: repeat {d} at rank 2 -> recall 1, ndcg g
    assert got["repeat_recall_at_2"] == pytest.approx(1.0)
    assert got["repeat_ndcg_at_2"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    # u3's list is e, f (its own): explore {a, b} missed; u1's explore missed
    assert got["explore_recall_at_2"] == 0.0


def _baskets_log() -> pd.DataFrame:
    # u1: 4 baskets (t1 a b | t2 a | t3 c | t4 a d); u2: 3 baskets (t1 b | t2 b c | t3 e);
    # u3: 2 baskets (t1 a | t2 f): fewer than 3, trains on all its rows
    rows = [
        ("u1", "a", "2026-01-01 10:00"), ("u1", "b", "2026-01-01 10:00"), ("u1", "a", "2026-01-05 09:00"),
        ("u1", "c", "2026-01-09 09:00"), ("u1", "a", "2026-01-12 09:00"), ("u1", "d", "2026-01-12 09:00"),
        ("u2", "b", "2026-01-02 10:00"), ("u2", "b", "2026-01-06 10:00"), ("u2", "c", "2026-01-06 10:00"),
        ("u2", "e", "2026-01-20 10:00"),
        ("u3", "a", "2026-01-03 10:00"), ("u3", "f", "2026-01-30 10:00"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_last_basket_split_tests_each_users_last_basket_and_validates_on_the_one_before():
    split = last_basket_split(_baskets_log(), min_baskets=3)
    assert isinstance(split, LastBasketSplit)
    assert split.test_truth == {"u1": {"a", "d"}, "u2": {"e"}}  # u3 has 2 baskets: not a test user
    assert split.n_truth_items_unrankable == 2  # u1 d and u2 e are in no training basket
    trained = set(zip(split.train["user_id"], split.train["ts"].astype(str), strict=True))
    assert ("u3", "2026-01-30 10:00:00") in trained and ("u1", "2026-01-12 09:00:00") not in trained
    val = validation_split(split, val_days=30)
    # one basket earlier: u1's c (t3), u2's b c (t2), u3's f (2 baskets left: one learns, one validates)
    assert val.test_truth == {"u1": {"c"}, "u2": {"b", "c"}, "u3": {"f"}}
    assert val.train["ts"].max() < pd.Timestamp("2026-01-09 09:00")


def test_last_basket_split_by_day_joins_one_days_rows():
    log = _baskets_log()
    log.loc[log.index[4], "ts"] = "2026-01-12 18:00"  # u1's a, bought later on the same day as d
    assert last_basket_split(log, by_day=True).test_truth["u1"] == {"a", "d"}
    assert last_basket_split(log, by_day=False).test_truth["u1"] == {"a"}  # two invoices that day


def test_p_topfreq_and_gp_topfreq_rank_by_basket_frequency_then_popularity():
    split = last_basket_split(_baskets_log(), min_baskets=3)
    items = split.maps.item_ids  # a, b, c, f (d and e never trained)
    user = np.array([split.maps.user_index["u2"]])
    p = dict(zip(items, p_topfreq(split)(user)[0], strict=True))
    # u2's training baskets: {b}, {b, c}: b in 2 baskets, c in 1, the rest 0
    assert (p["b"], p["c"], p["a"], p["f"]) == (2, 1, 0, 0)
    gp = dict(zip(items, gp_topfreq(split)(user)[0], strict=True))
    # global basket counts: a 3 (u1 t1, t2; u3 t1), b 3, c 2, f 1 -> fill = count / 4
    assert gp["b"] == pytest.approx(2 + 3 / 4) and gp["c"] == pytest.approx(1 + 2 / 4)
    assert gp["a"] == pytest.approx(3 / 4) and gp["f"] == pytest.approx(1 / 4)
    assert sorted(items, key=lambda i: -gp[i]) == ["b", "c", "a", "f"]


@pytest.mark.parametrize("protocol", ["retail_30d", "last_basket"])
def test_a_validation_view_keeps_the_units_its_split_has(protocol):
    """The re-ranker learns on validation views and serves on the split: both must read the same units,
    or its user numerics (monetary) count lines in training and units at serving."""
    log = _baskets_log()
    log["quantity"] = np.arange(1, len(log) + 1) * 10
    split = split_purchases(log, test_days=5) if protocol == "retail_30d" else last_basket_split(log, 3)
    val = validation_split(split, val_days=7, min_users=1)
    assert "quantity" in val.train
    users = from_purchases(val.train, val.train["ts"].max()).users
    spent = val.train.groupby("user_id")["quantity"].sum()
    assert (spent > val.train.groupby("user_id").size()).all()  # units are not line counts here
    pd.testing.assert_series_equal(users["monetary"].astype(float), spent.astype(float), check_names=False)
