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


def _night_marts(warehouse, night: int) -> date:
    """Marts as of 2026-09-(1+night): users join over time, values change every night, a re-bought
    item moves its interaction's last time, and every night adds purchases."""
    as_of = date(2026, 9, 1 + night)
    users = [f"u{k}" for k in range(1, 4 + night)]
    rows_u = ", ".join(
        f"('{u}', date '{as_of}', timestamp '2026-08-30 10:00:00', timestamp '{as_of} 09:00:00', "
        f"timestamp '{as_of} 09:00:00', {k}, {night + k}, {10.0 * night + k}, {1 + k % 5}, 3, 4, "
        f"'seg{(night + k) % 3}', {5 + night}, 1, {night}, 2)"
        for k, u in enumerate(users)
    )
    purchases = []
    for d in range(night + 1):  # one purchase per user and day up to tonight; u1 re-buys i1 daily
        day = date(2026, 9, 1 + d)
        for k, u in enumerate(users[: 3 + d]):
            item = "i1" if u == "u1" else f"i{1 + (k + d) % 3}"
            purchases.append((u, item, day, f"{day} {10 + k % 10}:00:00"))
    last = {}
    for u, i, day, ts in purchases:  # marts.interactions: one row per (user, item, day)
        last[(u, i, day)] = ts
    rows_i = ", ".join(
        f"('{u}', '{i}', date '{day}', timestamp '{ts}', 1, 1, 1, 1, 5.0, 1.0)"
        for (u, i, day), ts in last.items()
    )
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.execute(
            f"""create or replace table marts.user_features as select * from (values {rows_u})
            t(user_id, as_of_date, first_event_ts, last_event_ts, last_purchase_ts, recency_days, frequency,
              monetary, r_score, f_score, m_score, rfm_segment, n_views, n_carts, n_purchases, n_sessions)"""
        )
        con.execute(
            f"""create or replace table marts.item_features as select * from (values
              ('i1', 'toys', 'toys-brand-1', 9.5, {12 + night}, 3, 2, 1, 28.5, 1),
              ('i2', 'home', 'home-brand-2', 20.0, 3, 0, {night}, 0, 0.0, 2),
              ('i3', 'home', 'home-brand-2', 21.0, 3, 0, 1, 0, 0.0, 3)
            ) t(item_id, category, brand, price, n_views, n_carts, n_purchases, n_buyers, revenue,
                popularity_rank)"""
        )
        con.execute(
            f"""create or replace table marts.interactions as select * from (values {rows_i})
            t(user_id, item_id, event_date, last_event_ts, n_views, n_carts, n_purchases, quantity, revenue,
              weight)"""
        )
    return as_of


def _sorted(frame):
    import pandas as pd

    keys = ["user_id", "item_id", "event_timestamp"]
    out = frame[sorted(frame.columns)].sort_values(keys).reset_index(drop=True)
    return out.astype({c: "float64" for c in out.columns if pd.api.types.is_numeric_dtype(out[c])})


def test_incremental_training_set_equals_the_full_rebuild(paths):
    """Night after night only the new purchases go through Feast, over the nights they can reach; the
    kept set equals Feast's join over every night's snapshot at once, also after a night is re-run."""
    import pandas as pd

    from personaflow.pipeline.features import full_training_set, night_stamps, read_marts

    warehouse, features_dir = paths
    joined = []
    for night in range(5):
        as_of = _night_marts(warehouse, night)
        joined.append(build_features(warehouse, features_dir, REPO, as_of)["training_rows_joined_tonight"])
        with duckdb.connect(str(warehouse), read_only=True) as con:
            purchases = read_marts(con)[2]
        kept = pd.read_parquet(features_dir / "training_set.parquet")
        pd.testing.assert_frame_equal(
            _sorted(kept), _sorted(full_training_set(REPO, features_dir, purchases))
        )
    assert len(night_stamps(features_dir / "user_features.parquet")) == 5
    assert joined == [3, 4, 5, 6, 7]  # each night joins its own day's purchases only (3 + night users)
    assert kept["monetary"].notna().sum() > len(kept) / 2  # most rows found a snapshot before them

    # A re-run of an earlier night rewrites that night's snapshot: rows after it are joined again.
    _night_marts(warehouse, 2)
    build_features(warehouse, features_dir, REPO, date(2026, 9, 3))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        purchases = read_marts(con)[2]
    kept = pd.read_parquet(features_dir / "training_set.parquet")
    pd.testing.assert_frame_equal(_sorted(kept), _sorted(full_training_set(REPO, features_dir, purchases)))


def test_a_source_written_before_row_groups_per_night_is_split_and_read_by_night(tmp_path):
    import pandas as pd

    from personaflow.pipeline.features import append_snapshot, night_stamps, read_nights, snapshot

    users = pd.DataFrame({"user_id": ["u1", "u2"], "churn_score": [0.1, 0.2]})
    nights = [
        snapshot(users, ["user_id", "churn_score"], date(2026, 9, d), datetime(2026, 9, d, 23))
        for d in (1, 2)
    ]
    path = tmp_path / "user_churn.parquet"
    pd.concat(nights, ignore_index=True).to_parquet(path, index=False)  # one row group, two nights
    third = snapshot(
        users.assign(churn_score=[0.5, 0.6]), ["user_id", "churn_score"], date(2026, 9, 3), datetime.now()
    )
    assert append_snapshot(path, third) == 6
    assert append_snapshot(path, third) == 6  # the same night again replaces it
    stamps = night_stamps(path)
    assert [t.day for t in stamps] == [1, 2, 3]
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == 3
    latest = read_nights(path, lambda t: t == stamps[-1]).to_pandas()
    assert latest["churn_score"].tolist() == [0.5, 0.6]
    assert len(pd.read_parquet(path)) == 6  # readers of the whole file see every night


def test_a_nights_append_does_not_decode_or_move_the_earlier_nights(tmp_path, monkeypatch):
    """Issue 21: appending a night adds its row group after the earlier ones, whose bytes stay where
    they were and are never decoded (the stage's cost does not grow with the nights run); a re-export
    of a night, and a column added later (NULL in the earlier nights), still rewrite the file."""
    import pandas as pd
    import pyarrow.parquet as pq

    from personaflow.pipeline import features
    from personaflow.pipeline.features import _footer_start, append_snapshot, night_stamps, snapshot

    path = tmp_path / "user_churn.parquet"
    scores = [k / 50 for k in range(50)]
    users = pd.DataFrame({"user_id": [f"u{k}" for k in range(50)], "churn_score": scores})
    for d in range(1, 6):
        night = snapshot(users, ["user_id", "churn_score"], date(2026, 9, d), datetime(2026, 9, d))
        append_snapshot(path, night)
    prefix = path.read_bytes()[: _footer_start(path)]

    def no_decoding(*args, **kwargs):
        raise AssertionError("an earlier night was decoded")

    with monkeypatch.context() as m:
        for name in ("read_row_group", "read_row_groups", "read", "iter_batches"):
            m.setattr(pq.ParquetFile, name, no_decoding)
        m.setattr(features.pq, "read_table", no_decoding)
        sixth = snapshot(users.assign(churn_score=0.9), ["user_id", "churn_score"], date(2026, 9, 6),
                         datetime(2026, 9, 6))  # fmt: skip
        assert append_snapshot(path, sixth) == 300
    assert path.read_bytes()[: len(prefix)] == prefix  # the earlier nights' bytes untouched
    file = pq.ParquetFile(path)
    assert file.num_row_groups == 6 and file.metadata.num_rows == 300
    frame = pd.read_parquet(path)
    assert frame.groupby(frame["feature_ts"].dt.day)["churn_score"].max().to_dict() == {
        1: 0.98, 2: 0.98, 3: 0.98, 4: 0.98, 5: 0.98, 6: 0.9
    }
    assert [t.day for t in night_stamps(path)] == [1, 2, 3, 4, 5, 6]

    again = snapshot(users.assign(churn_score=0.5), ["user_id", "churn_score"], date(2026, 9, 3),
                     datetime(2026, 9, 7))  # fmt: skip
    assert append_snapshot(path, again) == 300  # replaces the night of 9/3, adds nothing
    frame = pd.read_parquet(path)
    assert set(frame.loc[frame["feature_ts"].dt.day == 3, "churn_score"]) == {0.5}
    assert pq.ParquetFile(path).num_row_groups == 6

    wider = snapshot(users.assign(persona="p"), ["user_id", "churn_score", "persona"], date(2026, 9, 8),
                     datetime(2026, 9, 8))  # fmt: skip
    assert append_snapshot(path, wider) == 350
    frame = pd.read_parquet(path)
    assert frame["persona"].notna().sum() == 50 and pq.ParquetFile(path).num_row_groups == 7
