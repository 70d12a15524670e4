"""Feast on the Spark warehouse, the pure parts (no JVM here; tests/integration/test_spark_parity.py runs
them on Spark against DuckDB): the day ranges a table's history is read in, the sources' queries, the
Feast config and definitions a Spark warehouse gets."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from personaflow.core import warehouse
from personaflow.core.feature_store import load_definitions, spark_offline_store
from personaflow.core.settings import Settings
from personaflow.core.spark import day_chunks
from personaflow.core.spark_features import file_query, table_query
from personaflow.pipeline.features import SPARK_SNAPSHOTS, joinable, spark_queries, spark_snapshot_tables

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
DAY = date(2011, 1, 1)


def _days(*counts: int) -> list[tuple[date, int]]:
    return [(DAY + timedelta(days=i), n) for i, n in enumerate(counts)]


def test_day_chunks_cover_every_day_once_in_ranges_of_at_most_max_rows() -> None:
    counts = _days(3, 4, 2, 6, 1, 1)
    chunks = day_chunks(list(reversed(counts)), max_rows=7)  # order of the counts does not matter
    assert chunks == [(DAY + timedelta(a), DAY + timedelta(b)) for a, b in ((0, 1), (2, 2), (3, 4), (5, 5))]
    per_day = dict(counts)
    for first, last in chunks:
        rows = sum(n for d, n in per_day.items() if first <= d <= last)
        assert rows <= 7 or first == last
    covered = [d for first, last in chunks for d in per_day if first <= d <= last]
    assert sorted(covered) == sorted(per_day)  # each day in exactly one range


def test_a_day_above_the_bound_is_a_range_of_its_own_and_nothing_gives_nothing() -> None:
    one = [(DAY + timedelta(i), DAY + timedelta(i)) for i in range(3)]
    assert day_chunks(_days(2, 50, 2), max_rows=10) == one
    assert day_chunks([], max_rows=10) == []
    assert day_chunks(_days(1, 1, 1), max_rows=10) == [(DAY, DAY + timedelta(2))]


def test_table_queries_prune_to_the_nights_asked_for() -> None:
    assert table_query("user_features") == "select * from features.user_features"
    stamps = [pd.Timestamp("2011-01-15 23:59:59", tz="UTC"), pd.Timestamp("2011-01-31 23:59:59", tz="UTC")]
    pruned = table_query("user_features", stamps)
    assert pruned.endswith("where as_of in (date'2011-01-15', date'2011-01-31')")
    assert table_query("user_features", []).endswith("where false")


def test_file_queries_read_nanosecond_stamps_as_timestamps_without_backquoted_names(tmp_path: Path) -> None:
    query = file_query(tmp_path / "user_churn.parquet", ["user_id", "churn_score"], ["feature_ts"])
    assert query == (f"select user_id, churn_score, timestamp_micros(feature_ts div 1000) as feature_ts "
                     f"from parquet.`{tmp_path / 'user_churn.parquet'}`")  # fmt: skip


def test_every_source_has_a_query_and_the_snapshots_match_duckdbs_columns(tmp_path: Path) -> None:
    queries = spark_queries(tmp_path)
    assert set(SPARK_SNAPSHOTS) <= set(queries)
    assert {"user_segment", "user_churn", "user_reviews", "item_reviews", "user_live"} <= set(queries)
    tables = {t.name: t for t in spark_snapshot_tables({"item_id", "category", "brand", "price"})}
    items = {name: expr for name, _, expr in tables["item_features"].columns}
    assert items["item_n_views"] == "n_views"  # renamed as on DuckDB
    assert items["description"] == "null" and items["is_product"] == "true"  # OPTIONAL_COLUMNS' defaults
    with_text = spark_snapshot_tables({"description", "is_product"})[1]
    assert {name: expr for name, _, expr in with_text.columns}["description"] == "description"
    assert dict((n, k) for n, k, _ in tables["user_purchases"].columns) == {
        "user_id": "string", "purchased_items": "array<string>"}  # fmt: skip


def test_a_spark_warehouse_gets_feasts_spark_store_and_spark_sources(tmp_path: Path) -> None:
    where = warehouse.location(Settings(home=tmp_path, warehouse_url="spark", spark_master="local[2]"))
    config = spark_offline_store(where)
    assert config["type"] == "spark"
    assert config["spark_conf"]["spark.master"] == "local[2]"
    assert config["spark_conf"]["spark.sql.catalogImplementation"] == "hive"
    assert config["spark_conf"]["spark.sql.legacy.parquet.nanosAsLong"] == "true"
    # no staging folder unless given: Feast would leave its Parquet wherever it pointed
    assert "staging_location" not in config
    staged = spark_offline_store(where, tmp_path / "window" / ".." / "window" / "spark-staging")
    assert staged["staging_location"] == str((tmp_path / "window" / "spark-staging").resolve())
    module = load_definitions(REPO, tmp_path, spark_queries(tmp_path))
    sources = {fv.name: fv.batch_source for fv in module.DEFINITIONS if hasattr(fv, "batch_source")}
    assert {type(s).__name__ for s in sources.values() if s is not None} == {"SparkSource"}
    assert sources["user_profile"].query == "select * from features.user_features"
    plain = load_definitions(REPO, tmp_path)  # DuckDB / PostgreSQL: the Parquet files, as before
    assert {type(fv.batch_source).__name__ for fv in plain.DEFINITIONS if hasattr(fv, "batch_source")} == {
        "FileSource"}  # fmt: skip


def _purchases(*stamps: str) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(len(stamps))], "item_id": "i1",
                         "event_timestamp": pd.to_datetime(list(stamps), utc=True)})  # fmt: skip


def test_only_purchases_every_joined_view_has_a_night_for_go_to_feast() -> None:
    rows = _purchases(
        "2011-01-10 10:00:00", "2011-01-15 23:59:59", "2011-01-16 08:00:00", "2011-01-20 12:00:00"
    )
    user, item = pd.Timestamp("2011-01-15 23:59:59", tz="UTC"), pd.Timestamp("2011-01-10 23:59:59", tz="UTC")
    # a row at a view's first night takes it (Feast: feature time <= the row's); the latest first night
    # of the joined views is the floor, since a row must get features from every view to be kept
    kept = joinable(rows, {"user_features": user, "item_features": item})
    assert list(kept["user_id"]) == ["u1", "u2", "u3"]
    early = pd.Timestamp("2011-01-01 23:59:59", tz="UTC")
    assert len(joinable(rows, {"user_features": early, "item_features": early})) == len(rows)
    # a first night: every purchase precedes tonight's stamp, none is sent
    tonight = pd.Timestamp("2011-01-31 23:59:59", tz="UTC")
    assert joinable(rows, {"user_features": tonight, "item_features": tonight}).empty
    # a view without any night serves no row; no purchases, nothing
    assert joinable(rows, {"user_features": user, "item_features": None}).empty
    assert joinable(rows.iloc[0:0], {"user_features": user}).empty
