"""The scale benchmark's night: one nightly DAG run of the same synthetic shop through LocalExecutor
(SQLite metadata DB, DuckDB warehouse, SQLite online store) and through CeleryExecutor (two workers,
PostgreSQL metadata DB and warehouse, Redis online store and broker).

Set up as tests/e2e_helpers.py's `running_stack` does: the shop landed and ingested up to its day
before last, Airflow started by personaflow.ops.airflow_service.start_airflow (its `up` seconds include
the metadata DB migration and, in celery mode, both workers answering a ping), the last day triggered
through the REST API (AirflowClient) and waited for, then `down`. A real SMTP server (aiosmtpd) takes
the night's mail.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from _common import settings_with
from aiosmtpd.controller import Controller

from personaflow.ops.local_servers import Postgres, Redis, free_port

# the night's tasks measured one by one (Airflow's own start/end per task instance)
SLOWEST_TASKS = 3


class Sink:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        return "250 OK"


def night_settings(mode: str, home: Path, smtp_port: int, pg: Postgres, redis: Redis) -> dict[str, str]:
    env = {
        "PERSONAFLOW_HOME": str(home),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_SMTP_PORT": str(smtp_port),
        "PERSONAFLOW_ALERT_TO": "data-team@example.test",
        "PERSONAFLOW_AIRFLOW_PORT": str(free_port()),
        "PERSONAFLOW_AIRFLOW_SCHEDULE": "false",  # manual runs only
    }
    if mode == "celery":  # tests/e2e_helpers.py scale_settings, on this run's servers
        base = redis.url.rsplit("/", 1)[0]
        env |= {
            "PERSONAFLOW_AIRFLOW_EXECUTOR": "celery",
            "PERSONAFLOW_CELERY_WORKERS": "2",
            "PERSONAFLOW_AIRFLOW_DB_URL": pg.create_database(f"airflow_{free_port()}"),
            "PERSONAFLOW_CELERY_BROKER_URL": f"{base}/1",
            "PERSONAFLOW_WAREHOUSE_URL": pg.create_database(f"night_{free_port()}"),
            "PERSONAFLOW_REDIS_URL": f"{base}/2",
            "PERSONAFLOW_SERVE_WORKERS": "2",
        }
    return env


def one_night(mode: str, work: Path, smtp_port: int, pg: Postgres, redis: Redis, shop_shape: dict) -> dict:
    from personaflow.ingest.generate import generate_shop, write_shop
    from personaflow.ops.airflow_service import down, start_airflow
    from personaflow.orchestration.airflow_api import AirflowClient
    from personaflow.orchestration.orchestrate import DAG_ID
    from personaflow.pipeline import ingest as ingest_stage

    home = work / f"night-{mode}"
    shutil.rmtree(home, ignore_errors=True)
    env = night_settings(mode, home, smtp_port, pg, redis)
    s = settings_with(env)
    shop = generate_shop(**shop_shape, seed=11)
    write_shop(shop, s.landing_dir)
    last = shop.events["event_ts"].max().date()
    out: dict[str, object] = {f"night_{mode}_loadavg_at_start": round(os.getloadavg()[0], 2)}
    started = time.perf_counter()
    ingest_stage.ingest_history(last - timedelta(days=1), s)
    out[f"night_{mode}_ingest_history_s"] = round(time.perf_counter() - started, 1)

    airflow = start_airflow(s, timeout=600)
    try:
        out[f"night_{mode}_airflow_start_s"] = round(airflow.seconds, 1)
        client = AirflowClient(airflow.url, airflow.user, airflow.password)
        client.wait_for_dag(DAG_ID)
        client.set_paused(DAG_ID, False)
        started = time.perf_counter()
        run_id = client.trigger(DAG_ID, last, conf={"batch_date": last.isoformat()})
        run = client.wait(DAG_ID, run_id, timeout=1800)
        out[f"night_{mode}_dag_run_s"] = round(time.perf_counter() - started, 1)
        out[f"night_{mode}_dag_state"] = run["state"]
        out.update(task_times(client, DAG_ID, run_id, f"time_night_{mode}"))
        if run["state"] != "success":
            failed = {t: st for t, st in client.task_states(DAG_ID, run_id).items() if st != "success"}
            out[f"night_{mode}_unfinished_tasks"] = ", ".join(f"{t}={st}" for t, st in failed.items())
    finally:
        started = time.perf_counter()
        down(s)
        out[f"night_{mode}_down_s"] = round(time.perf_counter() - started, 1)
    out[f"night_{mode}_events"] = int(len(shop.events))
    shutil.rmtree(home, ignore_errors=True)
    return out


def task_times(client, dag_id: str, run_id: str, prefix: str) -> dict[str, float]:
    """The slowest tasks of the run by their own duration, and the run's summed task seconds."""
    durations = {}
    for ti in client.task_instances(dag_id, run_id):
        if ti.get("duration") is not None:
            durations[ti["task_id"]] = float(ti["duration"])
    out = {f"{prefix}_tasks_sum_s": round(sum(durations.values()), 1)}
    for task, seconds in sorted(durations.items(), key=lambda kv: -kv[1])[:SLOWEST_TASKS]:
        out[f"{prefix}_task_{task.replace('.', '_')}_s"] = round(seconds, 1)
    return out


def run_nights(work: Path, pg: Postgres, redis: Redis, name: str, shop_shape: dict) -> dict:
    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    out: dict[str, object] = {f"night_shop_{k}": v for k, v in shop_shape.items()} | {"night_shop": name}
    try:
        for mode in ("local", "celery"):
            res = one_night(mode, work, controller.port, pg, redis, shop_shape)
            print(mode, res, flush=True)
            out.update(res)
    finally:
        controller.stop()
    local, celery = out.get("night_local_dag_run_s"), out.get("night_celery_dag_run_s")
    if local and celery:
        out["night_celery_over_local_dag_run_ratio"] = round(float(celery) / float(local), 2)
    return out
