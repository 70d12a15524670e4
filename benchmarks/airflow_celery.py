"""Benchmark: Airflow in celery mode (issue 12) against the LocalExecutor default, on one machine.

The same tiny DAG (tests/_celery_probe_dag.py `probe_spread`: three 2-second tasks in the one-slot
`gpu` pool and two free 2-second tasks) runs twice in each mode, triggered through the REST API:
  local:  LocalExecutor, metadata DB on SQLite (today's `personaflow up`), parallelism 2;
  celery: CeleryExecutor, metadata DB on PostgreSQL, Redis broker, 2 workers x 1 slot (parallelism 2).
Also: `up` time (metadata DB migration included; celery: until both workers answer a ping), the memory
of each stack while idle (PSS summed over every process of the supervisor's and the workers' sessions;
PostgreSQL and Redis not included), and `down` time. PostgreSQL/Redis are local (personaflow/local_servers).
Writes benchmarks/results/airflow_celery.json.

    .venv/bin/python benchmarks/airflow_celery.py
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the project's packages sit at the repo root

import psutil  # noqa: E402
import psycopg  # noqa: E402
from _common import settings_with, write_results  # noqa: E402

from personaflow.ops.airflow_service import down, start_airflow, worker_pids  # noqa: E402
from personaflow.ops.local_servers import Postgres, Redis, default_os_user, free_port  # noqa: E402
from personaflow.ops.process_groups import session_pids  # noqa: E402
from personaflow.orchestration.airflow_api import AirflowClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "airflow_celery.json"
PROBE = ROOT / "tests" / "_celery_probe_dag.py"
TABLES = """create table if not exists attempts (run_id text, task_id text, map_index int, try_number int,
  worker text, what text, at timestamptz not null default clock_timestamp());
create table if not exists effects (run_id text primary key, worker text, try_number int);"""
RUNS = 2


def pss_mib(sids: list[int]) -> float:
    total = 0
    for sid in sids:
        for pid in session_pids(sid):
            try:
                total += psutil.Process(pid).memory_full_info().pss
            except psutil.Error:
                continue
    return total / 2**20


def one_mode(mode: str, pg: Postgres, redis: Redis, probe_db: str) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"personaflow-bench-{mode}-"))
    env = {"PERSONAFLOW_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
           "PERSONAFLOW_AIRFLOW_PORT": str(free_port()), "PERSONAFLOW_AIRFLOW_SCHEDULE": "false"}  # fmt: skip
    if mode == "celery":
        env |= {"PERSONAFLOW_AIRFLOW_EXECUTOR": "celery", "PERSONAFLOW_CELERY_WORKERS": "2",
                "PERSONAFLOW_AIRFLOW_DB_URL": pg.create_database(f"airflow_{free_port()}"),
                "PERSONAFLOW_CELERY_BROKER_URL": redis.url}  # fmt: skip
    s = settings_with(env)
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(PROBE, dags / "probe.py")
    extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "PROBE_DB_URL": probe_db}
    started = start_airflow(s, extra, timeout=300)
    out = {"up_s": round(started.seconds, 1)}
    try:
        client = AirflowClient(started.url, started.user, started.password)
        client.wait_for_dag("probe_spread")
        client.set_paused("probe_spread", False)
        time.sleep(5)  # let the start settle before measuring memory
        sessions = [started.airflow_pid, *(w["pid"] for w in worker_pids(s).values())]
        out["idle_pss_mib"] = round(pss_mib(sessions))
        for i in range(RUNS):
            t0 = time.perf_counter()
            run_id = client.trigger("probe_spread", date(2026, 1, 1) + timedelta(days=i))
            run = client.wait("probe_spread", run_id, timeout=300, poll=0.5)
            if run["state"] != "success":
                states = client.task_states("probe_spread", run_id)
                raise SystemExit(f"{mode}: {run_id} ended {run['state']}: {states}")
            out[f"probe_run{i + 1}_s"] = round(time.perf_counter() - t0, 1)
    finally:
        t0 = time.perf_counter()
        down(s)
        out["down_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    # each server's folder is the temporary folder itself: the cluster's OS user (as root) owns it
    folder = Path(tempfile.mkdtemp(prefix="personaflow-bench-pg-"))
    pg = Postgres(folder, free_port(), default_os_user()).start(durable=False)
    redis_folder = Path(tempfile.mkdtemp(prefix="personaflow-bench-redis-"))
    redis = Redis(redis_folder, free_port()).start(durable=False)
    out: dict[str, object] = {"cores": os.cpu_count(), "machine": platform.machine(),
                              "python": platform.python_version(), "probe_tasks": 5,
                              "task_sleep_s": 2}  # fmt: skip
    try:
        probe_db = pg.create_database("probe")
        with psycopg.connect(probe_db, autocommit=True) as con:
            con.execute(TABLES)
        for mode in ("local", "celery"):
            for key, value in one_mode(mode, pg, redis, probe_db).items():
                out[f"{mode}_{key}"] = value
            print(mode, {k: v for k, v in out.items() if k.startswith(mode)}, flush=True)
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(redis_folder, ignore_errors=True)
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
