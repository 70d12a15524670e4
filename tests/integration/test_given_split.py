"""A split the shop brings (personaflow/training/data/given.py, personaflow/training/external.py, `personaflow
evaluate`) on a
slice of the real Online Retail log: the same rows as the protocol's own cut, per-user cuts that hold out
each customer's last order without a leak, the nightly recipe and every baseline scored on it, and bad
files named by file, row and column."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from personaflow.training.data.features import purchases_source
from personaflow.training.data.given import split_given, split_per_user
from personaflow.training.data.purchases import last_basket_split, load_online_retail, split_purchases
from personaflow.training.external import assess
from personaflow.training.models.fit import validation_view
from personaflow.training.recipe import Recipe

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "online-retail"


@pytest.fixture(scope="module")
def purchases() -> pd.DataFrame:
    """Dec 2010 - Feb 2011 of the real log, cleaned by the protocol's own rules."""
    frame = load_online_retail(DATA)
    return frame.loc[frame["ts"] < "2011-03-01"].reset_index(drop=True)


def test_a_given_time_cut_is_the_protocols_own_split(purchases):
    own = split_purchases(purchases, test_days=14)
    before = purchases["ts"] < own.cut_ts
    given = split_given(purchases.loc[before], purchases.loc[~before])
    assert given.test_truth == own.test_truth and len(given.test_truth) > 100
    assert given.maps.user_ids == own.maps.user_ids and given.maps.item_ids == own.maps.item_ids
    assert given.n_truth_items_unrankable == own.n_truth_items_unrankable > 0
    assert len(given.train) == len(own.train) and given.cut_ts == purchases.loc[before, "ts"].max()


def test_per_user_cuts_hold_out_each_customers_last_order_without_a_leak(purchases):
    orders = purchases.groupby("user_id")["ts"].agg(["nunique", "max"])
    cuts = orders.loc[orders["nunique"] >= 2, "max"].rename("cut_ts").reset_index()
    split = split_per_user(purchases, cuts)
    cut_of = cuts.set_index("user_id")["cut_ts"]
    assert set(split.test_truth) == set(cut_of.index)  # one-order customers only train
    train_cut = split.train["user_id"].map(cut_of)
    assert not (split.train["ts"] >= train_cut).any()  # nobody's own last order is in training
    last = purchases.loc[purchases["ts"] == purchases["user_id"].map(cut_of)]
    truth = {u: set(g["item_id"]) for u, g in last.groupby("user_id")}
    for user, items in split.test_truth.items():
        assert items == truth[user]


def test_assess_scores_the_recipe_and_every_baseline_as_the_nightly_run_does(purchases):
    own = split_purchases(purchases, test_days=14)
    result = assess(own, Recipe("repeat_buy", val_days=14), purchases_source(None), n_boot=200)
    models = result["models"]
    assert set(models) == {"candidate", "popularity", "repeat_buy", "tifu"}
    # the candidate *is* the repeat-buy baseline: built and scored by one code path, one number
    assert models["candidate"] == models["repeat_buy"]
    assert models["repeat_buy"]["ndcg_at_10"] > models["popularity"]["ndcg_at_10"]
    assert result["best_baseline"] in ("repeat_buy", "tifu") and result["repeat_rate"] > 0.05
    assert result["split"]["test_users"] == len(own.test_truth)
    # a baseline candidate passes unless another baseline is clearly better, and the answer says which
    assert result["gate_passed"] == (not result["gate_refusals"])


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERSONAFLOW_HOME": str(tmp_path / "home")}
    code = "from personaflow.cli import app; app()"
    return subprocess.run([sys.executable, "-c", code, "evaluate", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_the_command_scores_files_and_names_what_is_wrong_in_them(purchases, tmp_path):
    own = split_purchases(purchases, test_days=14)
    before = purchases["ts"] < own.cut_ts
    train, test = tmp_path / "train.csv", tmp_path / "test.parquet"
    purchases.loc[before].to_csv(train, index=False)
    purchases.loc[~before].to_parquet(test)
    ran = _cli(tmp_path, "--train", str(train), "--test", str(test), "--model", "tifu", "--no-rerank",
               "--out", str(tmp_path / "out.json"))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    answer = json.loads((tmp_path / "out.json").read_text())
    assert answer["recipe"]["model"] == "tifu" and answer["models"]["candidate"] == answer["models"]["tifu"]

    broken = purchases.loc[before].head(50).copy()
    broken["ts"] = broken["ts"].astype(str)
    broken.loc[broken.index[6], "ts"] = "31/02/2011 25:00"
    broken.to_csv(tmp_path / "bad_ts.csv", index=False)
    ran = _cli(tmp_path, "--train", str(tmp_path / "bad_ts.csv"), "--test", str(test))
    assert ran.returncode == 1 and "bad_ts.csv: row 7: ts '31/02/2011 25:00' is not a time" in ran.stderr

    broken.drop(columns=["item_id"]).to_csv(tmp_path / "no_item.csv", index=False)
    ran = _cli(tmp_path, "--train", str(tmp_path / "no_item.csv"), "--test", str(test))
    assert ran.returncode == 1 and "no_item.csv: missing column(s) ['item_id']" in ran.stderr

    pd.DataFrame({"user_id": ["12347", "12347"], "cut_ts": ["2011-02-01", "2011-02-02"]}).to_csv(
        tmp_path / "cuts.csv", index=False
    )
    ran = _cli(tmp_path, "--purchases", str(train), "--cuts", str(tmp_path / "cuts.csv"))
    assert ran.returncode == 1 and "cuts: row 2: user '12347' has a second cut" in ran.stderr
    ran = _cli(tmp_path, "--train", str(train), "--cuts", str(tmp_path / "cuts.csv"))
    assert ran.returncode == 1 and "either --train and --test, or --purchases and --cuts" in ran.stderr


def test_last_basket_on_the_real_log_scores_repeat_and_explore_apart(purchases, tmp_path):
    split = last_basket_split(purchases)
    invoices = purchases.groupby("user_id")["ts"].nunique()
    assert set(split.test_truth) == set(invoices.index[invoices >= 3])
    last = purchases.loc[purchases["ts"] == purchases.groupby("user_id")["ts"].transform("max")]
    truth = {u: set(g["item_id"]) for u, g in last.groupby("user_id")}
    assert all(split.test_truth[u] == truth[u] for u in split.test_truth)  # each one's last invoice
    # validation: the invoice before the last, for every test user (all have >= 2 training invoices)
    val = validation_view(split, 14)
    assert set(split.test_truth) <= set(val.test_truth)
    times = purchases.groupby("user_id")["ts"].unique()
    for user in sorted(split.test_truth)[:100]:
        before_last = sorted(times[user])[-2]
        mine = purchases.loc[purchases["user_id"] == user]
        assert val.test_truth[user] == set(mine.loc[mine["ts"] == before_last, "item_id"])
        assert val.train.loc[val.train["user_id"] == user, "ts"].max() < before_last

    repeat = Recipe("repeat_buy", val_days=14)
    result = assess(split, repeat, purchases_source(None), n_boot=200)
    rows, shares = result["models"], result["split"]
    # a wholesaler re-buys: repeat-buy finds repeat items, and (its list being the user's history) no
    # explore item beyond what the popularity fill of short histories reaches
    assert rows["repeat_buy"]["repeat_ndcg_at_10"] > rows["popularity"]["repeat_ndcg_at_10"]
    assert rows["repeat_buy"]["explore_ndcg_at_10"] < rows["popularity"]["explore_ndcg_at_10"]
    assert 0 < shares["repeat_users"] <= shares["test_users"] and 0 < shares["explore_user_share"] <= 1

    purchases.to_csv(tmp_path / "all.csv", index=False)
    ran = _cli(tmp_path, "--purchases", str(tmp_path / "all.csv"), "--last-basket", "--model", "repeat_buy",
               "--no-rerank", "--val-days", "14", "--out", str(tmp_path / "lb.json"))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    answer = json.loads((tmp_path / "lb.json").read_text())
    assert answer["split"]["test_users"] == len(split.test_truth)
    assert answer["models"]["candidate"]["repeat_ndcg_at_10"] == pytest.approx(
        rows["repeat_buy"]["repeat_ndcg_at_10"]
    )
