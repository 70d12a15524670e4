"""Probe DAGs for tests/e2e/test_airflow_celery.py, copied into a temporary dags folder (not dags/).

Every try notes itself (run, task, map index, try, worker, start/end) in PROBE_DB_URL's `attempts`,
so the test sees from outside which worker ran what and when.
"""

import os
import time
from datetime import datetime, timedelta

import psycopg
from airflow.sdk import dag, get_current_context, task

START = datetime(2026, 1, 1)


def _connect() -> psycopg.Connection:
    return psycopg.connect(os.environ["PROBE_DB_URL"], autocommit=True)


def _note(what: str) -> None:
    ti = get_current_context()["ti"]
    with _connect() as con:
        con.execute(
            "insert into attempts (run_id, task_id, map_index, try_number, worker, what)"
            " values (%s, %s, %s, %s, %s, %s)",
            (ti.run_id, ti.task_id, ti.map_index, ti.try_number, os.environ.get("PERSONAFLOW_WORKER_NAME"),
             what),
        )  # fmt: skip


@dag(dag_id="probe_spread", schedule=None, start_date=START, catchup=False)
def probe_spread():
    @task
    def spread(i: int) -> None:
        _note("start")
        time.sleep(2)
        _note("end")

    @task(pool="gpu", pool_slots=1)
    def train(i: int) -> None:
        _note("start")
        time.sleep(2)
        _note("end")

    train.expand(i=[1, 2, 3])
    spread.expand(i=[1, 2])


@dag(dag_id="probe_kill", schedule=None, start_date=START, catchup=False,
     default_args={"retries": 2, "retry_delay": timedelta(seconds=1)})  # fmt: skip
def probe_kill():
    @task
    def effect() -> None:
        """The effect is keyed by run id (an upsert), written before the first try hangs: a retry after
        the worker died writes it again, and the run still has one row."""
        ti = get_current_context()["ti"]
        _note("start")
        with _connect() as con:
            con.execute(
                "insert into effects (run_id, worker, try_number) values (%s, %s, %s) on conflict (run_id)"
                " do update set worker = excluded.worker, try_number = excluded.try_number",
                (ti.run_id, os.environ.get("PERSONAFLOW_WORKER_NAME"), ti.try_number),
            )
        if ti.try_number == 1:
            time.sleep(600)  # the test kills this worker here
        _note("end")

    effect()


probe_spread()
probe_kill()
