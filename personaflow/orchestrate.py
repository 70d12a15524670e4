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

from personaflow.settings import REPO_ROOT, Settings

DAG_ID = "personaflow_nightly"


def airflow_env(s: Settings) -> dict[str, str]:
    """Our settings as Airflow and the tasks see them (tasks re-read them with `settings.load()`)."""
    env = dict(os.environ)
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
        }
    )
    return env


def migrate(s: Settings) -> None:
    """Create or upgrade Airflow's metadata DB (SQLite under AIRFLOW_HOME by default); idempotent."""
    s.airflow_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(s),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_once(s: Settings, day: date) -> dict[str, object]:
    """One full DAG run for `day` through Airflow's own executor loop (`dag.test()`).

    Returns the run's state and each task's state; the child's log goes to stderr.
    """
    migrate(s)
    done = subprocess.run(
        [sys.executable, "-m", "personaflow.orchestrate", day.isoformat()],
        env=airflow_env(s),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the Airflow run for {day} printed no result (exit {done.returncode})")
    return json.loads(lines[-1])


def _dag_test(day: str) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from pendulum import parse

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.get_dag(DAG_ID).test(logical_date=parse(day, tz="UTC"))
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"dag_id": DAG_ID, "logical_date": day, "state": str(run.state), "tasks": states}))


if __name__ == "__main__":
    _dag_test(sys.argv[1])
