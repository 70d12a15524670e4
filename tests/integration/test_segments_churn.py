"""Segments and churn: planted structure is recovered, errors are clear, stages write their files."""

from __future__ import annotations

import json
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from personaflow.core import settings as config
from personaflow.pipeline import profiles as profiles_stage
from personaflow.profiles.churn import N_BINS, train_churn
from personaflow.profiles.segments import fit_segments

PLANTED = {  # (recency_days, frequency, monetary) centres, far apart in log space
    "champions": (3, 25, 3000.0),
    "lapsed": (250, 1, 25.0),
    "middle": (45, 5, 300.0),
}


def planted_profile(n_per: int = 150, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for c, (rec, freq, mon) in enumerate(PLANTED.values()):
        for _ in range(n_per):
            rows.append(
                {
                    "recency_days": int(max(0, rec * rng.lognormal(0, 0.15))),
                    "frequency": int(max(1, round(freq * rng.lognormal(0, 0.15)))),
                    "monetary": round(mon * rng.lognormal(0, 0.15), 2),
                    "rfm_segment": ["Champions", "Lost", "Need Attention"][c],
                    "favourite_categories": ["toys,books", "garden", "books,kitchen"][c],
                }
            )
            truth.append(c)
    frame = pd.DataFrame(rows)
    frame.insert(0, "user_id", [f"u{i:05d}" for i in range(len(frame))])
    return frame, np.array(truth)


def planted_labels(n_users: int = 800, cutoffs: int = 3, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(cutoffs):
        rec = rng.integers(0, 300, n_users)
        freq = rng.integers(1, 30, n_users)
        # planted: long-gone, rare buyers churn; strong enough for a clear AUC
        logit = -1.0 + 2.0 * (np.log1p(rec) - 3.5) - 1.5 * (np.log1p(freq) - 1.8)
        churned = rng.random(n_users) < 1 / (1 + np.exp(-logit))
        parts.append(
            pd.DataFrame(
                {
                    "user_id": [f"u{u:05d}" for u in range(n_users)],
                    "cutoff_date": pd.Timestamp("2024-06-01") - pd.Timedelta(days=30 * i),
                    "horizon_days": 90,
                    "recency_days": rec,
                    "frequency": freq,
                    "monetary": freq * rng.lognormal(3, 0.5, n_users),
                    "days_since_first_purchase": rec + rng.integers(0, 200, n_users),
                    "n_orders_90d": np.where(rec < 90, np.minimum(freq, 3), 0),
                    "n_orders_in_horizon": np.where(churned, 0, 1),
                    "churned": churned,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_segments_recover_planted_clusters():
    profile, truth = planted_profile()
    result = fit_segments(profile, k_range=range(2, 7), seed=42)
    assert result.k == len(PLANTED)
    assert "silhouette" in result.criterion and set(result.silhouettes) == {2, 3, 4, 5, 6}
    assert adjusted_rand_score(truth, result.assignments["segment_id"]) > 0.8
    assert list(result.assignments.columns) == ["user_id", "segment_id", "segment_label"]
    assert len(result.segments) == result.k
    assert sum(s["size"] for s in result.segments) == len(profile)
    labels = {s["label"] for s in result.segments}
    assert len(labels) == result.k and result.assignments["segment_label"].notna().all()
    by_recency = sorted(result.segments, key=lambda s: s["mean_recency_days"])
    assert by_recency[0]["dominant_rfm_segment"] == "Champions"
    assert by_recency[0]["label"].startswith("recent") and "big spenders" in by_recency[0]["label"]
    assert by_recency[-1]["label"] == "lapsed one-timers"
    assert by_recency[-1]["top_categories"] == ["garden"]
    assert set(by_recency[0]["top_categories"]) == {"toys", "books"}


def test_churn_learns_planted_signal_and_calibration_adds_up():
    labels = planted_labels()
    result = train_churn(labels, seed=7)
    assert result.split.startswith("by cut-off date")
    assert result.metrics["roc_auc"] > 0.75, result.metrics
    assert 0 < result.metrics["brier"] < 0.25
    assert result.metrics["pr_auc"] > result.metrics["base_rate"]
    assert len(result.calibration) == N_BINS
    assert sum(r["n"] for r in result.calibration) == result.metrics["n_test"] == 800
    filled = [r for r in result.calibration if r["n"]]
    assert all(r["lo"] <= r["mean_predicted"] <= r["hi"] for r in filled)
    assert len(result.scores) == 800 and result.scores["churn_score"].between(0, 1).all()
    assert (result.scores["cutoff_date"] == labels["cutoff_date"].max()).all()


def test_churn_single_cutoff_splits_by_user():
    result = train_churn(planted_labels(cutoffs=1), seed=7)
    assert result.split.startswith("by user")
    assert result.metrics["n_test"] == 200 and result.metrics["roc_auc"] > 0.75


def test_churn_single_class_raises_clear_error():
    labels = planted_labels().assign(churned=True)
    with pytest.raises(ValueError, match="single class"):
        train_churn(labels, seed=7)
    with pytest.raises(ValueError, match="shorter than the churn horizon"):
        train_churn(labels.iloc[0:0], seed=7)


def purchase_lines(profile: pd.DataFrame, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(intermediate.int_events_as_of, intermediate.int_items) rows for the planted profile: each user's
    orders (up to 6) of 3 products, the champions in bulk; the first 3 users paid only postage (a
    non-product line), so they have no persona of their own."""
    rows = []
    for i, user in enumerate(profile.itertuples()):
        bulk = user.rfm_segment == "Champions"
        for o in range(min(int(user.frequency), 6)):
            ts = pd.Timestamp(as_of) - pd.Timedelta(days=int(user.recency_days) + 20 * o, hours=i % 9)
            for line in range(3):
                item = "POST" if i < 3 else f"item{(i + line) % 12}"
                rows.append((user.user_id, f"o{i}-{o}", item, ts, "purchase", 24 if bulk else 1, 2.5, i >= 3))
    events = pd.DataFrame(
        rows,
        columns=[
            "user_id",
            "order_key",
            "item_id",
            "event_ts",
            "event_type",
            "quantity",
            "price",
            "is_product",
        ],
    )
    events["revenue"], events["return_value"] = events["quantity"] * events["price"], 0.0
    items = pd.DataFrame(
        {"item_id": [f"item{j}" for j in range(12)], "category": [f"c{j % 4}" for j in range(12)]}
    )
    return events, items


def test_stages_write_parquet_and_reports(tmp_path, monkeypatch):
    warehouse = tmp_path / "wh.duckdb"
    as_of = date(2024, 9, 1)
    profile, _ = planted_profile(n_per=40)
    profile["as_of_date"] = as_of
    # what churn scores today's buyers on (marts.user_features has them)
    profile["first_purchase_ts"] = pd.Timestamp(as_of) - pd.to_timedelta(profile["recency_days"] + 30, "D")
    profile["n_orders_90d"] = np.where(profile["recency_days"] < 90, np.minimum(profile["frequency"], 3), 0)
    labels = planted_labels(n_users=300)
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema marts")
        con.register("profile_df", profile)
        con.register("labels_df", labels)
        con.execute("create table marts.user_features as select * from profile_df")
        con.execute(
            "create table marts.churn_labels as select * replace (cast(cutoff_date as date) as cutoff_date)"
            " from labels_df"
        )
        con.execute(
            "insert into marts.user_features select * replace (date '2024-08-01' as as_of_date)"
            " from marts.user_features"
        )  # another day's rows must be ignored
        events, items = purchase_lines(profile, as_of)
        con.execute("create schema intermediate")
        con.register("events_df", events)
        con.register("items_df", items)
        con.execute("create table intermediate.int_events_as_of as select * from events_df")
        con.execute("create table intermediate.int_items as select * from items_df")
    finally:
        con.close()
    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PERSONAFLOW_REPORTS_DIR", str(tmp_path / "reports"))
    s = config.load()

    seg = profiles_stage.segments(as_of, s)
    written = pd.read_parquet(tmp_path / "features" / "user_segments.parquet")
    assert len(written) == len(profile) == seg["users"] and written["user_id"].is_unique
    assert (
        seg["k"] == 3
        and json.loads((tmp_path / "reports" / "segments" / "segments_2024-09-01.json").read_text())["k"] == 3
    )
    with pytest.raises(ValueError, match="no rows as of 2024-09-02"):
        profiles_stage.segments(as_of + timedelta(days=1), s)

    out = profiles_stage.churn(as_of, s, horizon_days=90)
    scores = pd.read_parquet(tmp_path / "features" / "churn_scores.parquet")
    assert len(scores) == 300 and scores["churn_score"].between(0, 1).all()
    report = json.loads((tmp_path / "reports" / "churn" / "churn_2024-09-01.json").read_text())
    assert report["metrics"]["roc_auc"] == out["metrics"]["roc_auc"] > 0.7
    with pytest.raises(ValueError, match="horizon_days=\\[90\\], not 30"):
        profiles_stage.churn(as_of, s, horizon_days=30)

    # Feast sources: today's snapshot of every user's segment, and of every buyer's churn score today,
    # stamped at the end of the as-of day; a rerun of the night replaces its snapshot.
    feast_seg = pd.read_parquet(tmp_path / "features" / "user_segment.parquet")
    assert set(feast_seg.columns) == {
        "user_id", "segment_id", "segment_label", "persona_id", "persona", "feature_ts", "created_ts",
    }  # fmt: skip
    assert len(feast_seg) == len(profile) and (feast_seg["feature_ts"] == stamp(as_of)).all()
    # personas: the postage-only users are "not yet buyers" (-1); the bulk-buying champions a persona
    # apart from the single-unit buyers; the report carries the criterion and every k's verdict
    by_id = feast_seg.set_index("user_id")
    assert (by_id.loc[profile["user_id"][:3], "persona_id"] == -1).all()
    assert (by_id.loc[profile["user_id"][:3], "persona"] == "not yet buyers").all()
    personas = seg["personas"]
    assert personas["buyers"] == len(profile) - 3 and personas["not_yet_buyers"] == 3
    assert personas["k"] >= 2 and personas["per_k"][personas["k"]]["admissible"]
    champions = by_id.loc[profile.loc[profile["rfm_segment"] == "Champions", "user_id"][3:], "persona"]
    assert champions.nunique() == 1 and "bulk" in champions.iloc[0]
    saved = json.loads((tmp_path / "reports" / "segments" / "segments_2024-09-01.json").read_text())
    assert saved["personas"]["criterion"].startswith("admissible k") and saved["personas"]["personas"]
    from typer.testing import CliRunner

    from personaflow.cli import app

    shown = CliRunner().invoke(app, ["segments", "--date", "2024-09-01"])
    assert (
        shown.exit_code == 0
        and f"personas: k={personas['k']} over 117 buyers, 3 not yet buyers" in shown.output
    )
    assert shown.output.count("action: ") == personas["k"], shown.output
    now = pd.read_parquet(tmp_path / "features" / "user_churn.parquet")
    assert out["users_scored_as_of"] == len(now) == len(profile) and now["churn_score"].between(0, 1).all()
    lapsed = set(profile.loc[profile["recency_days"] > 150, "user_id"])
    champions = set(profile.loc[profile["recency_days"] < 10, "user_id"])
    by_user = now.set_index("user_id")["churn_score"]
    assert by_user[list(lapsed)].mean() > by_user[list(champions)].mean() + 0.3  # planted: long gone churn
    profiles_stage.churn(as_of, s)
    assert len(pd.read_parquet(tmp_path / "features" / "user_churn.parquet")) == len(profile)


def stamp(as_of: date) -> pd.Timestamp:
    return pd.Timestamp(f"{as_of} 23:59:59", tz="UTC")


def _warehouse(path, profile: pd.DataFrame, labels: pd.DataFrame, first_event: date) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.register("profile_df", profile)
        con.register("labels_df", labels)
        con.execute("create table marts.user_features as select * from profile_df")
        con.execute("create table marts.churn_labels as select * from labels_df")
        con.execute(f"create table marts.interactions as select date '{first_event}' as event_date")


def test_stages_skip_with_their_reason_when_the_data_cannot_support_them(
    tmp_path, monkeypatch, edge_env_restored
):
    """A log shorter than the horizon (no labels), one class, too few users: skipped, not raised;
    the CLI prints the reason and exits 0; nothing lands in the Feast sources."""
    from typer.testing import CliRunner

    from personaflow.cli import app

    as_of = date(2024, 9, 1)
    profile, _ = planted_profile(n_per=2)  # 6 users
    profile["as_of_date"] = as_of
    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE", str(tmp_path / "short.duckdb"))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PERSONAFLOW_REPORTS_DIR", str(tmp_path / "reports"))
    _warehouse(tmp_path / "short.duckdb", profile, planted_labels(n_users=10).iloc[0:0], date(2024, 8, 11))
    s = config.load()

    churn = profiles_stage.churn(as_of, s)
    assert churn["status"] == "skipped"
    assert "(2024-08-11 .. 2024-09-01, 22 days) is not longer than the 90-day" in churn["reason"]
    report = json.loads((tmp_path / "reports" / "churn" / "churn_2024-09-01.json").read_text())
    assert report["status"] == "skipped" and report["reason"] == churn["reason"]
    seg = profiles_stage.segments(as_of, s)
    assert seg["status"] == "skipped" and "at least 10 users; got 6" in seg["reason"]
    assert not (tmp_path / "features").exists()

    runner = CliRunner()
    for command, reason in (("churn", "churn skipped: marts.churn_labels is empty"),
                            ("segments", "segments skipped: segments need at least 10 users")):  # fmt: skip
        result = runner.invoke(app, [command, "--date", "2024-09-01"])
        assert result.exit_code == 0 and reason in result.output, result.output

    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE", str(tmp_path / "one_class.duckdb"))
    _warehouse(tmp_path / "one_class.duckdb", profile, planted_labels(n_users=50).assign(churned=True),
               date(2024, 1, 1))  # fmt: skip
    one_class = profiles_stage.churn(as_of, config.load())
    assert one_class["status"] == "skipped" and "single class" in one_class["reason"]


def test_segments_do_not_depend_on_the_order_rows_arrive_in():
    """Issue 26: a re-run night read the same users from the warehouse in another order and wrote other
    silhouettes and top categories. Unclustered profiles: K-means' seeded starts pick rows by position."""
    rng = np.random.default_rng(3)
    n = 400
    profile = pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "recency_days": rng.integers(0, 300, n),
            "frequency": rng.integers(1, 20, n),
            "monetary": rng.lognormal(4, 1, n).round(2),
            "rfm_segment": rng.choice(["Champions", "Lost", "Need Attention"], n),
            "favourite_categories": rng.choice(["toys", "garden", "books", "kitchen"], n),
        }
    )
    first = fit_segments(profile, seed=42)
    again = fit_segments(profile.sample(frac=1.0, random_state=7), seed=42)
    assert again.k == first.k and again.silhouettes == first.silhouettes
    assert again.segments == first.segments
    pd.testing.assert_frame_equal(again.assignments, first.assignments)
