"""One night through Airflow with PERSONAFLOW_WAREHOUSE_URL=spark and two Celery workers (issue 24).

The nightly DAG, unchanged, on the Spark warehouse in local mode (`local[2]`, bound to 127.0.0.1): each
task is a process of its own on one of two `airflow celery worker`s and starts its own SparkSession on
the same catalog, the tables' Parquet files and the embedded Derby metastore under the Spark dir, which
must outlive every task process: ingest.load registers the day's partition that transform builds on, the
marts that the checks, profiles, features, train, promote and the report read. Derby takes one JVM at a
time, so a task that runs beside another (segments beside a churn that trains) waits for the metastore
lock (personaflow/core/spark.py); tonight's churn skips on dbt's record of its empty mart, no JVM.
Airflow's metadata DB is on the test PostgreSQL; the Celery broker and Feast's online store on the test
Redis, on db numbers of their own (the celery stack of test_e2e_celery.py may be running on the same
servers). The history before the night (20 days of a
400-user shop) is loaded by a `personaflow ingest` child, as a shop would from the CLI.

Kept to one night on a tiny shop: each Spark task pays its JVM's start and warm-up, which is most of
this module's time. Measured alone at load average 8-13 (not idle): 1,369 s with the JVM's default JIT
(the night 1,237 s), 898 s since local mode runs the driver with the quick JIT alone (the night 756 s),
578 s since churn skips on dbt's record of its empty mart (the night 484 s; one run at load 11-15, per
task and the caveats: docs/guides/spark.md). `pytest -s` prints each task's time.
"""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest
import redis

from personaflow.ops.demo import free_port
from tests.e2e_helpers import assert_night_on_the_workers, print_task_times, run_day, running_stack

pytestmark = pytest.mark.e2e

# The tasks that open the warehouse (the others read files: the sensor, drift, prune, and churn, which
# skips on dbt's record of an empty marts.churn_labels without starting a JVM).
SPARK_TASKS = {
    "ingest.load", "ingest.validate_batch", "transform.dbt_build", "transform.validate_marts",
    "profiles.segments", "profiles.audiences", "features.materialize", "model.train",
    "model.promote", "report.render",
}  # fmt: skip


@pytest.fixture(scope="module")
def spark_night(tmp_path_factory, inbox, postgres_server, redis_server):
    redis_base = redis_server.url.rsplit("/", 1)[0]
    settings = {
        "PERSONAFLOW_AIRFLOW_EXECUTOR": "celery",
        "PERSONAFLOW_CELERY_WORKERS": "2",
        "PERSONAFLOW_AIRFLOW_DB_URL": postgres_server.create_database(f"airflow_spark_{free_port()}"),
        "PERSONAFLOW_CELERY_BROKER_URL": f"{redis_base}/3",
        "PERSONAFLOW_REDIS_URL": f"{redis_base}/4",
        "PERSONAFLOW_WAREHOUSE_URL": "spark",
        "PERSONAFLOW_SPARK_MASTER": "local[2]",
    }
    started = time.perf_counter()
    with running_stack(tmp_path_factory.mktemp("e2e-spark"), inbox, settings) as stack:
        ready = time.perf_counter() - started
        run = run_day(stack, stack.last, timeout=1800)
        print(f"\nnight on Spark + celery: {run.seconds:.0f} s (history and Airflow start {ready:.0f} s)")
        print_task_times(stack, run)
        yield stack, run


def test_the_night_runs_on_spark_task_by_task_on_the_celery_workers(spark_night):
    stack, run = spark_night
    tis = assert_night_on_the_workers(stack, run)
    # every warehouse task was a process of its own: the catalog outlived each one
    processes = {(tis[t]["hostname"], tis[t]["pid"]) for t in SPARK_TASKS}
    assert len(processes) == len(SPARK_TASKS), processes
    # churn skipped on the dbt build's record (transform.BUILT_ROWS), not by reading the mart on Spark
    churn = json.loads((stack.s.reports_dir / "churn" / f"churn_{stack.last.isoformat()}.json").read_text())
    assert "(0 rows after the dbt build as of" in churn["reason"], churn


def test_the_night_landed_in_the_spark_catalog_and_redis_not_in_duckdb(spark_night):
    stack, run = spark_night
    assert run.state == "success", run.tasks
    s = stack.s
    assert not s.warehouse.exists(), "a DuckDB warehouse was written beside Spark's"
    assert not (s.features_dir / "online_store.db").exists(), "the SQLite online store was written"
    tables = s.spark_dir / "warehouse"
    # the night's day is a partition of raw.events, beside the history's days
    days = sorted(p.name for p in (tables / "raw.db" / "events").glob("batch_date=*"))
    assert days[-1] == f"batch_date={stack.last.isoformat()}" and len(days) == 21, days
    batches = pq.read_table(tables / "raw.db" / "batches").to_pandas()
    tonight = batches[batches["batch_date"].astype(str) == stack.last.isoformat()]
    assert len(tonight) == 1 and tonight["status"].iloc[0] != "quarantined", tonight
    users = pq.read_table(tables / "marts.db" / "user_features").to_pandas()
    assert str(users["as_of_date"].max()) == stack.last.isoformat()
    assert users["user_id"].nunique() > 0
    store = redis.Redis.from_url(s.redis_url)
    try:
        assert store.dbsize() >= users["user_id"].nunique(), "materialize wrote fewer Redis hashes than users"
    finally:
        store.close()
    # one metastore for every task: the embedded Derby database under the Spark dir, its lock released
    assert (s.spark_dir / "metastore_db").is_dir()
    holder = (s.spark_dir / "metastore.lock").read_text().strip()
    assert holder.isdigit(), holder  # the last task's JVM
