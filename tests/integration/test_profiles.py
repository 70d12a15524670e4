"""The profile stages on a real dbt build of a generated shop: with PERSONAFLOW_CHURN_HORIZON_DAYS short
enough for the log, churn trains on marts.churn_labels, and both stages' outputs reach Feast's online
store in the same night (read the way serving reads them). A night without churn (what a skipped task
leaves) keeps the last scores online, and the history stays point-in-time correct."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from personaflow.core import settings as config
from personaflow.core.feature_store import day_end, open_store
from personaflow.ingest.generate import generate_shop, write_shop
from personaflow.pipeline import features as features_stage
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline import profiles as profiles_stage
from personaflow.pipeline import transform as transform_stage
from personaflow.serving.online import OnlineFeatures


@pytest.fixture()
def shop_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    for name in ("WAREHOUSE", "LANDING_DIR", "REPORTS_DIR"):
        monkeypatch.delenv(f"PERSONAFLOW_{name}", raising=False)
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PERSONAFLOW_CHURN_HORIZON_DAYS", "14")
    s = config.load()
    shop = generate_shop(users=300, items=100, days=40, seed=5)
    write_shop(shop, s.landing_dir)
    return s, shop.events["event_ts"].max().date()


def test_short_horizon_churn_and_segments_reach_the_online_store(shop_settings):
    s, last = shop_settings
    night1 = last - timedelta(days=1)
    assert s.churn_horizon_days == 14
    ingest_stage.ingest_history(night1, s)
    built = transform_stage.transform(night1, s)
    assert built["rows"]["marts.churn_labels"] > 0  # the setting reached dbt: 14 days fit in 40

    segments = profiles_stage.segments(night1, s)
    churn = profiles_stage.churn(night1, s)
    assert segments["status"] == churn["status"] == "ok", (segments, churn)
    assert churn["latest_cutoff"] == str(night1 - timedelta(days=14))
    assert 0.0 <= churn["metrics"]["roc_auc"] <= 1.0 and churn["users_scored_as_of"] > 50
    with pytest.raises(ValueError, match="horizon_days=\\[14\\], not 90"):
        profiles_stage.churn(night1, s, horizon_days=90)
    features_stage.features(night1, s)

    scores1 = pd.read_parquet(s.features_dir / "user_churn.parquet").set_index("user_id")["churn_score"]
    seg1 = pd.read_parquet(s.features_dir / "user_segment.parquet").set_index("user_id")
    users = list(scores1.index[:3])
    online = OnlineFeatures(s.feature_repo_dir, s.features_dir)
    for user in users:
        row = online.user(user)
        assert row["churn_score"] == pytest.approx(scores1[user])
        assert row["segment_id"] == seg1.loc[user, "segment_id"]
        assert row["segment_label"] == seg1.loc[user, "segment_label"]
        # the persona (behaviour clusters over the dbt-built purchase lines) reaches the online store too
        assert row["persona_id"] == seg1.loc[user, "persona_id"]
        assert row["persona"] == seg1.loc[user, "persona"] and row["persona"]
    assert online.as_of() == night1
    assert segments["personas"]["buyers"] > 50 and segments["personas"]["personas"]

    # Night 2 without churn (a skipped task writes nothing): segments move on, churn scores stay.
    ingest_stage.ingest(last, s)
    transform_stage.transform(last, s)
    assert profiles_stage.segments(last, s)["status"] == "ok"
    features_stage.features(last, s)
    history = pd.read_parquet(s.features_dir / "user_segment.parquet")
    assert history["feature_ts"].nunique() == 2
    seg2 = history[history["feature_ts"] == history["feature_ts"].max()].set_index("user_id")
    online = OnlineFeatures(s.feature_repo_dir, s.features_dir)
    for user in users:
        row = online.user(user)
        assert row["churn_score"] == pytest.approx(scores1[user])
        assert row["segment_label"] == seg2.loc[user, "segment_label"]
    assert online.as_of() == last

    # Point in time: nothing before night 1's stamp (Feast's file store drops such rows, or leaves them
    # empty); between the nights night 1's segment, after night 2 night 2's; the churn score of night 1.
    store = open_store(s.feature_repo_dir, s.features_dir)
    stamps = [day_end(d) + timedelta(hours=h) for d, h in ((night1, -1), (night1, 1), (last, 1))]
    when = pd.to_datetime(stamps).tz_localize("UTC")
    entity = pd.DataFrame({"user_id": [users[0]] * 3, "event_timestamp": when})
    service = store.get_feature_service("profile_features")
    joined = store.get_historical_features(entity_df=entity, features=service).to_df()
    got = joined.set_index(joined["event_timestamp"].dt.tz_convert("UTC"))
    assert when[0] not in got.index or pd.isna(got.loc[when[0], "churn_score"])
    assert got.loc[when[1], "segment_label"] == seg1.loc[users[0], "segment_label"]
    assert got.loc[when[2], "segment_label"] == seg2.loc[users[0], "segment_label"]
    assert got.loc[when[1:], "churn_score"].tolist() == [pytest.approx(scores1[users[0]])] * 2
