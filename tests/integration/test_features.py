"""Feast stage on a hand-made warehouse: snapshots, incremental materialization, point-in-time joins."""

from datetime import date, datetime

import duckdb
import pytest

from personaflow.core.feature_store import online_profile
from personaflow.core.settings import REPO_ROOT
from personaflow.pipeline.features import build_features

REPO = REPO_ROOT / "feature_repo"


def _write_marts(warehouse, monetary: float, as_of: date) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.execute(
            f"""
            create or replace table marts.user_features as select * from (values
              ('u1', date '{as_of}', timestamp '2026-09-01 10:00:00', timestamp '2026-09-03 10:00:00',
               timestamp '2026-09-03 10:00:00', 2, 3, {monetary}, 5, 4, 5, 'Champions', 10, 4, 3, 3),
              ('u2', date '{as_of}', timestamp '2026-09-01 11:00:00', timestamp '2026-09-02 11:00:00',
               null, 3, 0, 0.0, 1, 1, 1, 'Hibernating', 2, 0, 0, 1)
            ) t(user_id, as_of_date, first_event_ts, last_event_ts, last_purchase_ts, recency_days,
                frequency, monetary, r_score, f_score, m_score, rfm_segment, n_views, n_carts,
                n_purchases, n_sessions)
            """
        )
        con.execute(
            """
            create or replace table marts.item_features as select * from (values
              ('i1', 'toys', 'toys-brand-1', 9.5, 12, 3, 2, 1, 28.5, 1),
              ('i2', 'home', 'home-brand-2', 20.0, 3, 0, 0, 0, 0.0, 2)
            ) t(item_id, category, brand, price, n_views, n_carts, n_purchases, n_buyers, revenue,
                popularity_rank)
            """
        )
        con.execute(
            """
            create or replace table marts.interactions as select * from (values
              ('u1', 'i1', date '2026-09-02', timestamp '2026-09-02 12:00:00', 1, 1, 1, 1, 9.5, 9.0),
              ('u1', 'i1', date '2026-09-04', timestamp '2026-09-04 12:00:00', 1, 1, 1, 2, 19.0, 9.0)
            ) t(user_id, item_id, event_date, last_event_ts, n_views, n_carts, n_purchases, quantity,
                revenue, weight)
            """
        )


@pytest.fixture()
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    return tmp_path / "warehouse.duckdb", tmp_path / "features"


def test_snapshots_materialize_and_join_point_in_time(paths):
    warehouse, features_dir = paths
    _write_marts(warehouse, monetary=100.0, as_of=date(2026, 9, 2))
    first = build_features(warehouse, features_dir, REPO, date(2026, 9, 2))
    assert first["user_snapshot_rows"] == 2
    assert online_profile(REPO, features_dir, ["u1"])[0]["monetary"] == pytest.approx(100.0)

    # Next night: the mart changed; the online store must follow, the history must keep both days.
    _write_marts(warehouse, monetary=250.0, as_of=date(2026, 9, 3))
    second = build_features(warehouse, features_dir, REPO, date(2026, 9, 3))
    assert second["user_history_rows"] == 4
    profile = online_profile(REPO, features_dir, ["u1", "u2", "nobody"])
    assert profile[0]["monetary"] == pytest.approx(250.0)
    assert profile[0]["rfm_segment"] == "Champions"
    assert profile[1]["rfm_segment"] == "Hibernating"
    assert profile[2]["monetary"] is None

    # Point in time: the 2026-09-02 12:00 purchase precedes every snapshot, so it gets no features
    # (Feast's file store drops such rows); the 2026-09-04 purchase sees the 2026-09-03 snapshot.
    import pandas as pd

    training = pd.read_parquet(features_dir / "training_set.parquet")
    stamps = training["event_timestamp"].dt.tz_localize(None)
    early = training[stamps < datetime(2026, 9, 2, 23, 59, 59)]
    assert early["monetary"].isna().all()
    late = training[stamps == datetime(2026, 9, 4, 12)]
    assert late["monetary"].tolist() == [pytest.approx(250.0)]


def test_rerun_same_day_is_idempotent(paths):
    warehouse, features_dir = paths
    _write_marts(warehouse, monetary=100.0, as_of=date(2026, 9, 2))
    build_features(warehouse, features_dir, REPO, date(2026, 9, 2))
    again = build_features(warehouse, features_dir, REPO, date(2026, 9, 2))
    assert again["user_history_rows"] == 2
    assert again["item_history_rows"] == 2


def test_training_features_are_read_point_in_time_and_fall_back_before_the_first_snapshot(paths):
    from types import SimpleNamespace

    import pandas as pd

    from personaflow.training.data.features import from_feast, nightly_source
    from personaflow.training.data.interactions import IdMaps

    warehouse, features_dir = paths
    _write_marts(warehouse, monetary=100.0, as_of=date(2026, 9, 2))
    build_features(warehouse, features_dir, REPO, date(2026, 9, 2))
    _write_marts(warehouse, monetary=250.0, as_of=date(2026, 9, 3))
    build_features(warehouse, features_dir, REPO, date(2026, 9, 3))
    users, items = ["u1", "u2", "nobody"], ["i1", "i2"]

    # a model cut at 9/3 noon sees the night of 9/2, not the later one
    noon = from_feast(REPO, features_dir, users, items, pd.Timestamp("2026-09-03 12:00"))
    assert noon.users.loc["u1", "monetary"] == pytest.approx(100.0)
    assert noon.users.loc["u2", "rfm_segment"] == "Hibernating" and noon.users.loc["nobody"].isna().all()
    assert noon.items.loc["i1", "category"] == "toys"
    later = from_feast(REPO, features_dir, users, items, pd.Timestamp("2026-09-04"))
    assert later.users.loc["u1", "monetary"] == pytest.approx(250.0)

    # before any snapshot: Feast has nothing that old, so the features come from the training rows
    train = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "event_date": [date(2026, 8, 20)] * 2,
         "n_purchases": [2, 0]}
    )  # fmt: skip
    split = SimpleNamespace(cut_ts=pd.Timestamp("2026-08-25"), train=train, maps=IdMaps(users, items))
    source = nightly_source(REPO, features_dir, None)
    early = source(split)
    assert early.users.loc["u1", "recency_days"] == 5 and "u2" not in early.users.index  # u2 never bought
    assert source(SimpleNamespace(cut_ts=pd.Timestamp("2026-09-04"), train=train, maps=split.maps)).users.loc[
        "u1", "monetary"
    ] == pytest.approx(250.0)
