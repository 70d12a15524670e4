"""Metrics against hand-computed values, a leak-free split, and a model that learns."""

import math
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from personaflow.training.data.interactions import load_interactions, time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity, popularity_ranking
from personaflow.training.evaluation.metrics import evaluate, ndcg_at_k, recall_at_k
from personaflow.training.models.bpr import fit_bpr

D0 = date(2025, 3, 1)


def rows(*specs: tuple[str, str, int, int]) -> pd.DataFrame:
    """(user, item, day offset from D0, purchases) -> interactions rows with one view each."""
    frame = pd.DataFrame(
        [
            {
                "user_id": u,
                "item_id": i,
                "event_date": D0 + timedelta(days=d),
                "n_views": 1,
                "n_carts": p,
                "n_purchases": p,
            }
            for u, i, d, p in specs
        ]
    )
    frame["weight"] = (frame["n_views"] + 3 * frame["n_carts"] + 5 * frame["n_purchases"]).astype(float)
    return frame


# --- metrics -------------------------------------------------------------------------------------


def test_recall_and_ndcg_match_hand_computed_values():
    ranked = ["a", "b", "c", "d"]
    relevant = {"b", "d"}
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(0.5)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(1.0)
    # hit at rank 2 only; ideal puts both hits at ranks 1 and 2
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((1 / math.log2(3)) / ideal)
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert ndcg_at_k(["b", "d", "a"], relevant, 3) == pytest.approx(1.0)
    # with k=1 the ideal holds one hit only
    assert ndcg_at_k(["b"], relevant, 1) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "c"], relevant, 2) == 0.0
    assert recall_at_k(ranked, set(), 3) == 0.0 and ndcg_at_k(ranked, set(), 3) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(ranked, relevant, 0)


def test_evaluate_averages_over_test_users_with_full_ranking():
    # u1 and u2 are in train; in the hold-out (last 2 days) u1 buys y, u2 buys x and z.
    frame = rows(
        ("u1", "x", 0, 1),
        ("u1", "y", 1, 0),
        ("u2", "z", 1, 1),
        ("u2", "x", 2, 0),
        ("u1", "y", 8, 1),
        ("u2", "x", 9, 1),
        ("u2", "z", 9, 1),
    )
    split = time_split(frame, holdout_days=2)
    assert split.maps.item_ids == ["x", "y", "z"]
    # fixed ranking x > y > z for everyone
    fixed = np.array([3.0, 2.0, 1.0])
    result = evaluate(lambda users: np.tile(fixed, (len(users), 1)), split, k=1)
    # u1: top-1 x, truth {y} -> 0; u2: top-1 x, truth {x, z} -> recall 1/2, ndcg 1
    overall = {k: result[k] for k in ("recall_at_1", "ndcg_at_1", "n_test_users")}  # repeat/explore apart:
    assert overall == {"recall_at_1": pytest.approx(0.25), "ndcg_at_1": pytest.approx(0.5), "n_test_users": 2}
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda users: np.zeros((len(users), 2)), split, k=1)


def test_popularity_counts_only_the_last_30_days_before_the_cutoff():
    old = [("u1", "old_hit", 0, 1), ("u2", "old_hit", 0, 1), ("u3", "old_hit", 1, 1)]
    recent = [("u1", "new_hit", 50, 1), ("u2", "new_hit", 51, 1), ("u3", "rare", 52, 1)]
    holdout = [("u1", "rare", 60, 1), ("u9", "new_hit", 60, 1)] + [(f"h{n}", "rare", 60, 1) for n in range(5)]
    split = time_split(rows(*old, *recent, *holdout), holdout_days=1)
    ranking = [item for item, _ in popularity_ranking(split)]
    assert ranking == ["new_hit", "rare", "old_hit"]  # hold-out purchases of "rare" do not count
    scores = popularity(split)(np.array([0, 1]))
    assert scores.shape == (2, 3)


# --- split ---------------------------------------------------------------------------------------


def test_time_split_leaks_nothing_from_the_holdout():
    frame = rows(
        ("u1", "a", 0, 1),
        ("u1", "b", 5, 0),
        ("u2", "b", 6, 1),
        ("u1", "c", 7, 1),  # first hold-out day: truth for u1
        ("u1", "b", 8, 0),  # a view only: not truth
        ("u2", "new_item", 9, 1),  # item never seen in train: unrankable, counted
        ("u3", "a", 9, 1),  # user never seen in train: not a test user
        ("u2", "a", 9, 1),
    )
    split = time_split(frame, holdout_days=3)
    assert split.last_date == D0 + timedelta(days=9)
    assert split.cutoff == D0 + timedelta(days=7)
    assert max(split.train["event_date"]) < split.cutoff
    assert len(split.train) == 3
    assert split.maps.user_ids == ["u1", "u2"]
    assert "new_item" not in split.maps.item_index and "c" not in split.maps.item_index
    # "c" was bought only in the hold-out, so it is unrankable too
    assert split.test_truth == {"u2": {"a"}}
    assert split.n_truth_items_unrankable == 2
    with pytest.raises(ValueError, match="no training rows before cutoff"):
        time_split(frame, holdout_days=10)
    with pytest.raises(ValueError, match="lacks column"):
        time_split(frame.drop(columns=["weight"]), holdout_days=3)


def test_load_interactions_reads_the_mart_read_only(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    frame = make_interactions(n_rows=300, seed=5)
    con = duckdb.connect(str(warehouse))
    con.execute("create schema marts")
    con.execute("create table marts.interactions as select * from frame")
    con.close()
    loaded = load_interactions(warehouse)
    assert len(loaded) == len(frame)
    assert isinstance(loaded["event_date"].iloc[0], date)
    assert loaded["weight"].sum() == pytest.approx(frame["weight"].sum())
    # the connection is closed again: a writer can open the file right away
    duckdb.connect(str(warehouse)).close()
    with pytest.raises(FileNotFoundError, match="missing.duckdb"):
        load_interactions(tmp_path / "missing.duckdb")


# --- training ------------------------------------------------------------------------------------


def test_bpr_loss_decreases_and_beats_random_and_popularity():
    split = time_split(make_interactions(seed=11), holdout_days=7)
    model, history = fit_bpr(split, dim=16, epochs=12, batch_size=256, seed=3, device="cpu")
    assert len(history) == 12
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    learned = evaluate(lambda users: model.score(users).numpy(), split)
    rng = np.random.default_rng(0)
    random = evaluate(lambda users: rng.random((len(users), split.maps.n_items)), split)
    popular = evaluate(popularity(split), split)
    assert learned["n_test_users"] > 30
    assert learned["ndcg_at_10"] > random["ndcg_at_10"] + 0.2
    assert learned["ndcg_at_10"] > popular["ndcg_at_10"]
    # same seed, same history
    _, again = fit_bpr(split, dim=16, epochs=2, batch_size=256, seed=3, device="cpu")
    assert [r["loss"] for r in again] == pytest.approx([r["loss"] for r in history[:2]])


def test_a_quiet_validation_window_is_widened_until_it_holds_enough_users():
    from personaflow.training.data.purchases import split_purchases, validation_split

    rng = np.random.default_rng(0)
    # 300 customers buying in early January, then only 3 of them in the two weeks before the cut
    hours = pd.to_timedelta(rng.integers(0, 15 * 24, 3000), "h")
    busy = pd.DataFrame({"user_id": rng.integers(0, 300, 3000).astype(str),
                         "item_id": rng.integers(0, 40, 3000).astype(str),
                         "ts": pd.Timestamp("2025-01-01") + hours})  # fmt: skip
    quiet = pd.DataFrame({"user_id": ["1", "2", "3"], "item_id": ["1", "2", "3"],
                          "ts": pd.to_datetime(["2025-02-05", "2025-02-08", "2025-02-12"])})  # fmt: skip
    test = pd.DataFrame({"user_id": ["1"], "item_id": ["4"], "ts": pd.to_datetime(["2025-02-20"])})
    split = split_purchases(pd.concat([busy, quiet, test], ignore_index=True), test_days=5)
    assert len(validation_split(split, 14, min_users=1).test_truth) == 3  # as asked: 3 users
    widened = validation_split(split, 14)
    assert len(widened.test_truth) >= 50 and widened.cut_ts < split.cut_ts - pd.Timedelta(days=14)
    assert (widened.train["ts"] < widened.cut_ts).all()


def test_top_rows_is_a_stable_sorts_first_k_columns_ties_and_infinities_included():
    """The partition-based top-k (linear per row) must rank exactly as the full stable sort did."""
    from personaflow.training.evaluation.metrics import top_rows

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, size=(300, 500)).astype(np.float64)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # excluded items
    scores[7] = -np.inf  # a row with nothing rankable
    scores[8, :3] = np.inf
    for k in (1, 10, 50):
        np.testing.assert_array_equal(top_rows(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])
    dense = rng.random((50, 2000))
    np.testing.assert_array_equal(top_rows(dense, 10), np.argsort(-dense, axis=1, kind="stable")[:, :10])


def test_a_grid_is_tuned_on_a_seeded_sample_of_at_most_tuning_users_validation_users():
    from dataclasses import replace

    from personaflow.training.evaluation.metrics import tuning_sample

    split = time_split(make_interactions(seed=3), 7)
    many = replace(split, test_truth={f"u{i}": {"x"} for i in range(50)})
    picked = tuning_sample(many, n=10, seed=0)
    assert len(picked.test_truth) == 10 and set(picked.test_truth) <= set(many.test_truth)
    assert picked.test_truth.keys() == tuning_sample(many, n=10, seed=0).test_truth.keys()  # seeded
    assert tuning_sample(many, n=50) is many  # a shop with fewer keeps every user
