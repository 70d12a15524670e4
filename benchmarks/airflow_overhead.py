"""Benchmark: what running the nightly stages through Airflow costs over running them from the CLI.

On a demo-size shop (synthetic; this machine has no network to fetch Online Retail), the same batch
day goes through the seven stages twice: once as `personaflow <stage>` CLI processes one after the
other, once as a personaflow_nightly run triggered through the REST API of a real Airflow
(standalone: scheduler + dag-processor + api-server, LocalExecutor). Every stage is idempotent, so both
do the same work. Also: Airflow's start time and the DAG file's parse time.
Writes benchmarks/results/airflow_overhead.json (flat keys, units in the names).

    make bench-airflow
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
from _common import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the project's packages sit at the repo root

from personaflow.core import settings as config  # noqa: E402
from personaflow.ops.airflow_service import start_airflow, stop_group  # noqa: E402
from personaflow.ops.demo import free_port  # noqa: E402
from personaflow.orchestration.airflow_api import AirflowClient  # noqa: E402
from personaflow.orchestration.orchestrate import DAG_ID  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "airflow_overhead.json"
SHOP = {"users": 2000, "items": 500, "days": 60}
START = date(2026, 9, 1)


def cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "personaflow.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"`personaflow {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def parse_seconds() -> float:
    code = (
        "import airflow.sdk, runpy, time; t = time.perf_counter(); "
        f"runpy.run_path({str(ROOT / 'dags' / 'personaflow_nightly.py')!r}); print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="personaflow-bench-airflow-"))
    env = {
        **os.environ,
        "PERSONAFLOW_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "PERSONAFLOW_SMTP_PORT": "1",  # no mail server: alerts are written to disk only
        "PERSONAFLOW_AIRFLOW_PORT": str(free_port()),
        "PERSONAFLOW_AIRFLOW_SCHEDULE": "false",
        "PYTHONPATH": str(ROOT),
    }
    prefixes = ("PERSONAFLOW_", "AIRFLOW_", "BENTOML_")
    os.environ.update({k: v for k, v in env.items() if k.startswith(prefixes)})
    s = config.load()
    day = START + timedelta(days=SHOP["days"] - 1)
    d = ["--date", day.isoformat()]
    cli(["generate", *[f"--{k}={v}" for k, v in SHOP.items()], f"--start={START}"], env)
    cli(["ingest", "--through", (day - timedelta(days=1)).isoformat()], env)

    out: dict[str, object] = {"cores": os.cpu_count(), "machine": platform.machine(),
                              "python": platform.python_version(), "batch_date": day.isoformat(),
                              **{f"shop_{k}": v for k, v in SHOP.items()}}  # fmt: skip
    steps = [
        ("ingest", ["ingest", *d]), ("validate_batch", ["validate", *d]), ("transform", ["transform", *d]),
        ("validate_marts", ["validate", "--marts", *d]), ("features", ["features", *d]), ("train", ["train"]),
    ]  # fmt: skip
    cli_total = 0.0
    for name, args in steps:
        seconds, stdout = cli(args, env)
        cli_total += seconds
        out[f"cli_{name}_s"] = round(seconds, 2)
        if name == "train":
            tag = json.loads(stdout)["tag"]
        print(f"cli     {name:15s} {seconds:7.2f} s", flush=True)
    seconds, _ = cli(["promote", tag], env)
    cli_total += seconds
    out["cli_promote_s"] = round(seconds, 2)
    out["cli_total_s"] = round(cli_total, 2)
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        out["events_total_rows"] = con.execute("select count(*) from raw.events").fetchone()[0]
        out["events_batch_rows"] = con.execute(
            "select count(*) from raw.events where batch_date = ?", [day]
        ).fetchone()[0]
    out["warehouse_mb"] = round(s.warehouse.stat().st_size / 2**20, 1)

    out["dag_parse_s"] = round(min(parse_seconds() for _ in range(3)), 3)
    started = start_airflow(s)
    out["airflow_start_s"] = round(started.seconds, 1)
    try:
        client = AirflowClient(started.url, started.user, started.password)
        client.wait_for_dag(DAG_ID)
        client.set_paused(DAG_ID, False)
        t0 = time.perf_counter()
        run_id = client.trigger(DAG_ID, day, conf={"batch_date": day.isoformat()})
        run = client.wait(DAG_ID, run_id, timeout=1800, poll=0.5)
        wall = time.perf_counter() - t0
        if run["state"] != "success":
            states = client.task_states(DAG_ID, run_id)
            raise SystemExit(f"Airflow run {run_id} ended {run['state']}: {states}")
        tis = client.task_instances(DAG_ID, run_id)
    finally:
        stop_group(started.airflow_pid, s.airflow_host, s.airflow_port)
    task_sum = 0.0
    for ti in tis:
        task_sum += ti["duration"] or 0.0
        out[f"airflow_task_{ti['task_id'].split('.')[-1]}_s"] = round(ti["duration"] or 0.0, 2)
    first = min(datetime.fromisoformat(ti["start_date"]) for ti in tis)
    last = max(datetime.fromisoformat(ti["end_date"]) for ti in tis)
    out["airflow_run_s"] = round(wall, 2)  # trigger -> run success, as a user waits for it
    out["airflow_tasks_sum_s"] = round(task_sum, 2)
    out["airflow_first_start_to_last_end_s"] = round((last - first).total_seconds(), 2)
    out["airflow_scheduling_gaps_s"] = round((last - first).total_seconds() - task_sum, 2)
    out["airflow_over_cli_ratio"] = round(wall / cli_total, 3)
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
