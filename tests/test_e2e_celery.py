"""The nightly DAG, unchanged, on Airflow in celery mode: two `airflow celery worker` processes, the
metadata DB on the test PostgreSQL, the broker on its Redis (fixture `airflow_celery_stack`).
Slow (a whole nightly run); the probe-DAG tests in test_airflow_celery.py check the mechanics."""

from __future__ import annotations

import pytest

from personaflow.airflow_service import worker_pids
from personaflow.orchestrate import DAG_ID
from tests.e2e_helpers import TASKS, run_day

pytestmark = pytest.mark.e2e


def test_nightly_run_succeeds_on_celery_workers(airflow_celery_stack):
    stack = airflow_celery_stack
    run = run_day(stack, stack.last, timeout=900)
    print(f"\nnightly on celery: {run.seconds:.0f} s (start {stack.start_seconds:.0f} s)")
    assert run.state == "success", run.tasks
    assert set(run.tasks) == TASKS
    states = dict(run.tasks)
    assert states.pop("profiles.churn") == "skipped", states  # 21 days of log: no churn model
    assert all(state == "success" for state in states.values()), states
    tis = stack.client.task_instances(DAG_ID, run.run_id)
    nodes = {w["node"] for w in worker_pids(stack.s).values()}
    hosts = {ti["hostname"] for ti in tis if ti["state"] == "success"}
    assert hosts and hosts <= nodes, f"tasks ran on {hosts}, not only on the workers {nodes}"
    train = next(ti for ti in tis if ti["task_id"] == "model.train")
    assert train["pool"] == "gpu" and train["hostname"] in nodes
    assert stack.s.production_pointer.exists(), "the night promoted no model"
