"""The nightly DAG, unchanged, on the whole scale stack (fixture `airflow_celery_stack`): Airflow in
celery mode with two `airflow celery worker` processes and its metadata DB on the test PostgreSQL, the
warehouse in its own PostgreSQL database, Feast's online store and the live counters on Redis, the
broker on Redis; then BentoML with two workers answering from Redis. Slow (a whole nightly run); the
probe-DAG tests in test_airflow_celery.py check the celery mechanics."""

from __future__ import annotations

import httpx
import pytest
import redis

from personaflow.core import warehouse
from personaflow.ops.demo import free_port
from personaflow.orchestration.orchestrate import airflow_env
from personaflow.serving.auth import read_token_file
from tests.e2e_helpers import assert_night_on_the_workers, print_task_times, run_day

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scale_run(airflow_celery_stack):
    stack = airflow_celery_stack
    run = run_day(stack, stack.last, timeout=900)
    print(f"\nnightly on the scale stack: {run.seconds:.0f} s (start {stack.start_seconds:.0f} s)")
    print_task_times(stack, run)
    return stack, run


def test_nightly_run_succeeds_on_celery_workers(scale_run):
    stack, run = scale_run
    tis = assert_night_on_the_workers(stack, run)
    assert tis["model.train"]["pool"] == "gpu"  # on a worker's node: checked above for every task


def test_the_night_landed_in_postgres_and_redis_not_in_the_embedded_stores(scale_run):
    stack, run = scale_run
    assert run.state == "success", run.tasks
    assert not stack.s.warehouse.exists(), "a DuckDB warehouse was written beside PostgreSQL"
    assert not (stack.s.features_dir / "online_store.db").exists(), "the SQLite online store was written"
    with warehouse.connect(warehouse.location(stack.s), read_only=True) as con:
        assert con.engine == "postgres"
        day = con.execute("select status from raw.batches where batch_date = $1", [stack.last]).fetchone()
        users = con.execute("select count(distinct user_id) as n from marts.user_features").fetchone()[0]
    assert day is not None and day[0] != "quarantined", day
    assert users > 0
    store = redis.Redis.from_url(stack.s.redis_url)
    try:
        assert store.dbsize() >= users, "materialize wrote fewer Redis hashes than users"
    finally:
        store.close()


def test_two_bento_workers_answer_from_redis(scale_run):
    from personaflow.serving.process import start, stop, wait_ready

    stack, run = scale_run
    assert run.state == "success", run.tasks
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start("127.0.0.1", port, env=airflow_env(stack.s))
    try:
        wait_ready(base, timeout=180, proc=proc)
        auth = {"Authorization": f"Bearer {read_token_file(stack.s.api_token_file)[0]}"}
        events = stack.shop.events
        buyer = events.loc[events["event_type"] == "purchase", "user_id"].iloc[0]
        item = stack.shop.items["item_id"].iloc[0]
        pids, sent_by, seen = set(), None, {}
        for _ in range(60):  # a connection stays on the worker that accepted it
            with httpx.Client(timeout=30) as c:
                pid = c.post(f"{base}/metadata", json={}).json()["worker_pid"]
                pids.add(pid)
                if sent_by is None:
                    sent = c.post(f"{base}/events", headers=auth,
                                  json={"user_id": buyer, "item_id": item, "event_type": "view"})
                    assert sent.status_code == 200, sent.text
                    sent_by = pid
                seen[pid] = c.post(f"{base}/profile", json={"user_id": buyer}).json()
                answer = c.post(f"{base}/recommend", json={"user_id": buyer, "k": 5}).json()
                assert answer["fallback"] is None and len(answer["items"]) == 5, answer
            if len(pids) == 2:
                break
        assert len(pids) == 2, "only one BentoML worker answered"
        assert all(p["live_events"] == 1 for p in seen.values()), seen  # the other worker saw it too
    finally:
        stop(proc)
    assert proc.poll() is not None
