"""Run the DAG through Airflow from outside it: the environment Airflow needs, its metadata DB, a run.

Airflow reads AIRFLOW_HOME and its config at import, so every Airflow call happens in a child
process that gets the environment built here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from personaflow.core.settings import REPO_ROOT, Settings
from personaflow.core.tool_env import child_env
from personaflow.orchestration.airflow_mode import mode_env

DAG_ID = "personaflow_nightly"
REFRESH_DAG_ID = "personaflow_refresh"
# Announced after a corrected batch landed; starts REFRESH_DAG_ID (declared in dags/personaflow_nightly.py).
RAW_CORRECTED_URI = "personaflow://warehouse/raw/corrected_batch"
# Training runs in this pool; one slot, so two trainings never share the (one) GPU.
GPU_POOL = ("gpu", 1, "One slot per GPU: training tasks queue instead of sharing a device.")
# Per-model dbt tasks (PERSONAFLOW_DBT_TASKS=models) take turns: DuckDB has one writer at a time.
DBT_POOL = ("dbt", 1, "One dbt invocation at a time: the DuckDB warehouse takes one writer.")
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def smtp_connection(s: Settings) -> str:
    """Airflow's `smtp_default` connection (JSON form) for the SMTP notifier, built from our settings."""
    extra = {"disable_tls": True, "disable_ssl": True, "from_email": s.alert_from, "timeout": 10,
             "retry_limit": 1}  # fmt: skip
    return json.dumps({"conn_type": "smtp", "host": s.smtp_host, "port": s.smtp_port, "extra": extra})


def airflow_env(s: Settings) -> dict[str, str]:
    """Our settings as Airflow and the tasks see them (tasks re-read them with `settings.load()`)."""
    env = child_env()
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            "AIRFLOW_HOME": str(s.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
            "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "PERSONAFLOW_HOME": str(s.home),
            "PERSONAFLOW_LANDING_DIR": str(s.landing_dir),
            "PERSONAFLOW_QUARANTINE_DIR": str(s.quarantine_dir),
            "PERSONAFLOW_WAREHOUSE": str(s.warehouse),
            "PERSONAFLOW_FEATURES_DIR": str(s.features_dir),
            "PERSONAFLOW_REPORTS_DIR": str(s.reports_dir),
            "PERSONAFLOW_PRODUCTION_POINTER": str(s.production_pointer),
            "PERSONAFLOW_SMTP_HOST": s.smtp_host,
            "PERSONAFLOW_SMTP_PORT": str(s.smtp_port),
            "BENTOML_HOME": str(s.bentoml_home),
            "PERSONAFLOW_ALERT_FROM": s.alert_from,
            "PERSONAFLOW_ALERT_TO": ",".join(s.alert_to),
            # Failure emails go through the SMTP provider's notifier and this connection.
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(s),
            # The api-server (UI + REST + the execution API tasks talk to) on our address only.
            "AIRFLOW__API__HOST": s.airflow_host,
            "AIRFLOW__API__PORT": str(s.airflow_port),
            "AIRFLOW__API__BASE_URL": f"http://{s.airflow_host}:{s.airflow_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{s.airflow_host}:{s.airflow_port}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_user}:admin",
            # Small machine: one api worker, two task slots (the warehouse takes one writer anyway).
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "2"),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(s.airflow_schedule),
            "PERSONAFLOW_AIRFLOW_HOST": s.airflow_host,
            "PERSONAFLOW_AIRFLOW_PORT": str(s.airflow_port),
            "PERSONAFLOW_AIRFLOW_USER": s.airflow_user,
            # single (default): dbt is one task; models: one task per dbt model (from the manifest)
            "PERSONAFLOW_DBT_TASKS": dbt_tasks_mode(s),
            "PERSONAFLOW_CHURN_HORIZON_DAYS": str(s.churn_horizon_days),
            # The scale path: the tasks on every worker must land in the same warehouse and store.
            "PERSONAFLOW_WAREHOUSE_URL": s.warehouse_url,
            # With the Spark warehouse: every task's session on the same master, catalog and confs (a
            # task that fell back to the defaults would start local[*] on another metastore dir).
            "PERSONAFLOW_SPARK_MASTER": s.spark_master,
            "PERSONAFLOW_SPARK_DIR": str(s.spark_dir),
            "PERSONAFLOW_SPARK_CONF": ",".join(s.spark_conf),
            "PERSONAFLOW_REDIS_URL": s.redis_url,
            "PERSONAFLOW_SERVE_WORKERS": str(s.serve_workers),
        }
    )
    # The executor and metadata DB of the mode (LocalExecutor on SQLite, or Celery on Postgres + Redis).
    env.update(mode_env(s))
    if s.airflow_password:
        env["PERSONAFLOW_AIRFLOW_PASSWORD"] = s.airflow_password
    return env


def dbt_tasks_mode(s: Settings) -> str:
    """PERSONAFLOW_DBT_TASKS: `single` (default, one `dbt build` task) or `models` (a task per model)."""
    return s.dbt_tasks


def migrate(s: Settings) -> None:
    """Create or upgrade Airflow's metadata DB (SQLite under AIRFLOW_HOME by default) and the `gpu`
    and `dbt` pools; with PERSONAFLOW_DBT_TASKS=models, also `dbt parse` so the DAG finds the manifest
    it draws a task per model from. Idempotent. One child process for all: each Airflow start costs
    seconds of imports."""
    s.airflow_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "personaflow.orchestration.orchestrate", "migrate"],
        env=airflow_env(s),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _migrate() -> None:
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.initdb()
    for name, slots, description in (GPU_POOL, DBT_POOL):
        Pool.create_or_update_pool(name, slots, description, include_deferred=False)
    from personaflow.core.settings import load

    s = load()
    if dbt_tasks_mode(s) == "models":
        from personaflow.orchestration.dbt_graph import parse_project

        parse_project(s.dbt_project_dir, s.home / "dbt")


def announce_batch(s: Settings, day: date) -> dict[str, object]:
    """Tell the running Airflow that `day`'s batch was corrected: an event on the raw asset, which
    starts `personaflow_refresh` for that day (reload, validate, dbt, features, train, promote)."""
    from personaflow.orchestration.airflow_api import AirflowClient, read_password

    password = s.airflow_password or read_password(s.airflow_home, s.airflow_user)
    client = AirflowClient(f"http://{s.airflow_host}:{s.airflow_port}", s.airflow_user, password)
    try:
        return client.asset_event(RAW_CORRECTED_URI, {"batch_date": day.isoformat()})
    finally:
        client.close()


def failures_path(s: Settings, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return s.reports_dir / "airflow" / f"failures_{safe}.json"


def record_failure(s: Settings, dag_id: str, run_id: str, task_id: str, reason: str) -> None:
    """Keep why a task failed (the DAG's tasks call this), so `run-dag` can say it in one line."""
    path = failures_path(s, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    found = json.loads(path.read_text()) if path.exists() else {}
    found[task_id] = reason.splitlines()[0][:500] if reason else "no message"
    path.write_text(json.dumps(found, indent=2))


def run_once(s: Settings, day: date) -> dict[str, object]:
    """One full DAG run for `day` through Airflow's own executor loop (`dag.test()`).

    Returns the run's state and each task's state; the child's log goes to stderr.
    """
    migrate(s)
    done = subprocess.run(
        [sys.executable, "-m", "personaflow.orchestration.orchestrate", day.isoformat()],
        env=airflow_env(s),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the Airflow run for {day} printed no result (exit {done.returncode})")
    return json.loads(lines[-1])


def _dag_test(day: str) -> None:
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag
    from pendulum import parse

    bag = DagBag(dag_folder=conf.get("core", "dags_folder"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.get_dag(DAG_ID).test(logical_date=parse(day, tz="UTC"))
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    from personaflow.core.settings import load

    path = failures_path(load(), run.run_id)
    failures = json.loads(path.read_text()) if path.exists() else {}
    result = {"dag_id": DAG_ID, "logical_date": day, "state": str(run.state), "tasks": states}
    print(json.dumps({**result, "failures": failures}))


if __name__ == "__main__":
    if sys.argv[1] == "migrate":
        _migrate()
    elif sys.argv[1] == "announce":  # python -m personaflow.orchestration.orchestrate announce YYYY-MM-DD
        from personaflow.core.settings import load

        print(json.dumps(announce_batch(load(), date.fromisoformat(sys.argv[2])), default=str))
    else:
        _dag_test(sys.argv[1])
