"""Feast's Spark offline store hands rows back through Parquet, not through the driver (issue 24).

The features stage's scratch Feast store on Spark gets a staging folder (personaflow/core/feature_store.py:
spark_offline_store); `retrieved` then reads a retrieval job's rows as the Parquet files Spark writes
there, never with `toPandas` (which gathers every partition's Arrow batches in the driver JVM's heap: the
"serve-Arrow" OutOfMemoryError of the 10 M-event engines benchmark). Here on a real local Spark session
(one core, ~15-30 s to start), with `toPandas` made to fail: the staged read returns every row and type,
an empty result keeps its columns, and without a staging folder the same job does collect (so the check
could fail). Tests/integration/test_spark_parity.py runs the whole features stage this way against DuckDB.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from personaflow.core import spark
from personaflow.core.feature_store import spark_offline_store
from personaflow.core.spark import SparkWarehouse
from personaflow.pipeline.features import retrieved

ROWS = 20_000


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    where = SparkWarehouse("local[1]", tmp_path_factory.mktemp("spark-staging") / "spark", (), "1g")
    started = spark.session(where)
    yield where, started
    spark.stop()


def _job(where: SparkWarehouse, session, staging: Path | None, query: str):
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkRetrievalJob
    from feast.repo_config import RepoConfig

    config = RepoConfig(
        project="staging", provider="local", registry=str(where.directory / "registry.db"),
        offline_store=spark_offline_store(where, staging), entity_key_serialization_version=3,
        online_store={"type": "sqlite", "path": str(where.directory / "online.db")},
    )  # fmt: skip
    job = SparkRetrievalJob(spark_session=session, query=query, full_feature_names=False, config=config)
    return job, SimpleNamespace(config=config)


QUERY = (
    f"select concat('u', id) as user_id, timestamp_seconds(1790000000 + id) as event_timestamp,"
    f" cast(id as double) / 2 as monetary, if(id % 3 = 0, null, id) as frequency from range({ROWS})"
)


def test_rows_come_back_through_staged_parquet_without_a_driver_collect(session, tmp_path, monkeypatch):
    from pyspark.sql import DataFrame

    where, started = session

    def no_collect(self):  # what a staged read must never call
        raise AssertionError("toPandas: every row through the driver JVM")

    monkeypatch.setattr(DataFrame, "toPandas", no_collect)
    staging = tmp_path / "staging"
    job, store = _job(where, started, staging, QUERY)
    frame = retrieved(job, store)
    assert len(frame) == ROWS
    assert sorted(frame["user_id"]) == sorted(f"u{i}" for i in range(ROWS))
    assert frame["monetary"].sum() == pytest.approx(sum(range(ROWS)) / 2)
    assert frame["frequency"].isna().sum() == len(range(0, ROWS, 3))
    stamps = pd.to_datetime(frame["event_timestamp"])
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps  # Spark's UTC, naive
    assert stamps.min() == pd.Timestamp(1_790_000_000, unit="s", tz="UTC")
    # Spark wrote the rows as Parquet in the staging folder (the features stage removes its window)
    assert list(staging.rglob("*.parquet"))

    # an empty result still has its columns (Feast's materialization and the join select them)
    empty, store = _job(where, started, staging, QUERY + " where id < 0")
    assert list(retrieved(empty, store).columns) == ["user_id", "event_timestamp", "monetary", "frequency"]

    # without a staging folder the same job is a toPandas: the check above could fail
    job, store = _job(where, started, None, QUERY)
    with pytest.raises(AssertionError, match="toPandas"):
        retrieved(job, store)
