"""Airflow at scale (issue 12): `personaflow up` in celery mode on the real PostgreSQL metadata DB and
Redis broker, with two workers, runs tasks on both, keeps the one-slot `gpu` pool, and retries a task
whose worker was killed on the other worker, with its effect written once.

One Airflow start for the whole module (it costs most of the time); the probe DAGs are
tests/_celery_probe_dag.py, in a dags folder of the test's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psutil
import psycopg
import pytest

from personaflow.core import settings as config
from personaflow.ops.airflow_service import down, port_open, start_airflow, worker_pids
from personaflow.ops.local_servers import free_port
from personaflow.ops.process_groups import session_pids, signal_session
from personaflow.orchestration.airflow_api import AirflowClient
from personaflow.orchestration.airflow_mode import ModeError
from tests.e2e_helpers import celery_settings

pytestmark = pytest.mark.e2e
PROBE = Path(__file__).resolve().parents[1] / "_celery_probe_dag.py"
TABLES = """
create table attempts (run_id text, task_id text, map_index int, try_number int, worker text, what text,
                       at timestamptz not null default clock_timestamp());
create table effects (run_id text primary key, worker text, try_number int);
"""


def _settings(home: Path, **extra: str) -> config.Settings:
    env = {"PERSONAFLOW_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
           "PERSONAFLOW_AIRFLOW_PORT": str(free_port()), "PERSONAFLOW_AIRFLOW_SCHEDULE": "false",
           **extra}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return config.load()


def test_celery_mode_needs_postgres_and_a_broker(tmp_path):
    s = _settings(tmp_path, PERSONAFLOW_AIRFLOW_EXECUTOR="celery", PERSONAFLOW_REDIS_URL="redis://127.0.0.1:1/0")
    with pytest.raises(ModeError, match="PERSONAFLOW_AIRFLOW_DB_URL"):
        start_airflow(s)
    s = _settings(tmp_path, PERSONAFLOW_AIRFLOW_EXECUTOR="celery", PERSONAFLOW_AIRFLOW_DB_URL="sqlite:///x.db")
    with pytest.raises(ModeError, match="postgresql://"):
        start_airflow(s)
    assert not (tmp_path / "run" / "airflow.json").exists(), "nothing may start on bad settings"
    # the CLI says it in one line, exit 1
    env = {**os.environ, "PERSONAFLOW_HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "PERSONAFLOW_AIRFLOW_PORT": str(free_port()), "PERSONAFLOW_AIRFLOW_EXECUTOR": "celery",
           "PERSONAFLOW_AIRFLOW_DB_URL": "postgresql://u@127.0.0.1:1/x", "PERSONAFLOW_REDIS_URL": "",
           "PERSONAFLOW_CELERY_BROKER_URL": "amqp://guest:secret@127.0.0.1//"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "personaflow.cli", "up"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "redis:// broker" in done.stderr and "secret" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def celery_airflow(tmp_path_factory, postgres_server, redis_server):
    home = tmp_path_factory.mktemp("celery")
    probe_db = postgres_server.create_database(f"probe_{free_port()}")
    with psycopg.connect(probe_db, autocommit=True) as con:
        con.execute(TABLES)
    s = _settings(home, **celery_settings(postgres_server, redis_server, workers=2))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(PROBE, dags / "probe.py")
    extra = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "PROBE_DB_URL": probe_db,
        # a killed worker's task is failed (and retried) after 20 s without heartbeats, not 300
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    started = start_airflow(s, extra_env=extra, timeout=240)
    crew = worker_pids(s)
    try:
        client = AirflowClient(started.url, started.user, started.password)
        for dag_id in ("probe_spread", "probe_kill"):
            client.wait_for_dag(dag_id)
            client.set_paused(dag_id, False)
        yield s, client, probe_db, started, crew
    finally:
        stopped = down(s)
    assert stopped and stopped[0].startswith("airflow"), stopped
    assert not port_open(s.airflow_host, s.airflow_port), "Airflow still listens after `down`"
    left = {name: session_pids(w["pid"]) for name, w in crew.items()}
    assert not any(left.values()), f"worker processes left after `down`: {left}"


def _listening(sid: int) -> list[tuple[str, int]]:
    found = []
    for pid in session_pids(sid):
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def _rows(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(sql, params).fetchall()


def test_tasks_spread_over_both_workers_and_gpu_pool_holds(celery_airflow):
    s, client, probe_db, started, crew = celery_airflow
    assert sorted(crew) == ["worker-1", "worker-2"] and len(started.workers) == 2
    # workers open no port: no log server on 8793 (the api-server reads the task log files)
    assert not [_listening(w["pid"]) for w in crew.values() if _listening(w["pid"])]
    t0 = time.perf_counter()
    run_id = client.trigger("probe_spread", date(2026, 1, 2))
    run = client.wait("probe_spread", run_id, timeout=150, poll=1)
    print(f"\nprobe_spread (5 tasks of 2 s) on celery: {time.perf_counter() - t0:.1f} s; "
          f"start {started.seconds:.1f} s")  # fmt: skip
    assert run["state"] == "success", client.task_states("probe_spread", run_id)
    workers = {w for (w,) in _rows(probe_db, "select worker from attempts where run_id = %s", run_id)}
    assert workers == set(started.workers), f"tasks ran on {workers}, not on both workers"
    # what the UI shows as each try's host is the worker that ran it
    hosts = {ti["hostname"] for ti in client.task_instances("probe_spread", run_id)}
    assert hosts == set(started.workers), hosts
    spans = _rows(probe_db, "select map_index, min(at), max(at) from attempts where run_id = %s and "
                  "task_id = 'train' group by map_index order by 2", run_id)  # fmt: skip
    assert len(spans) == 3
    for (a, _, end), (b, begin, _) in zip(spans, spans[1:], strict=False):
        assert end <= begin, f"train[{a}] and train[{b}] overlapped: the one-slot gpu pool was not kept"


def test_killed_worker_task_retried_on_the_other_once(celery_airflow):
    s, client, probe_db, started, crew = celery_airflow
    run_id = client.trigger("probe_kill", date(2026, 1, 3))
    deadline = time.monotonic() + 90
    first = []
    while not first and time.monotonic() < deadline:
        first = _rows(probe_db, "select worker from effects where run_id = %s and try_number = 1", run_id)
        time.sleep(0.5)
    assert first, f"the first try never started: {client.task_states('probe_kill', run_id)}"
    victim = next(name for name, w in crew.items() if w["node"] == first[0][0])
    killed_at = time.perf_counter()
    # the worker's machine is lost: every process of its session (the task too, in a group of its own)
    assert signal_session(crew[victim]["pid"], signal.SIGKILL)
    run = client.wait("probe_kill", run_id, timeout=120, poll=1)
    print(f"\nprobe_kill: retried and done {time.perf_counter() - killed_at:.1f} s after the kill")
    assert run["state"] == "success", client.task_states("probe_kill", run_id)
    tries = _rows(probe_db, "select try_number, worker, what from attempts where run_id = %s order by at",
                  run_id)  # fmt: skip
    other = next(w["node"] for name, w in crew.items() if name != victim)
    assert tries == [(1, first[0][0], "start"), (2, other, "start"), (2, other, "end")], tries
    assert _rows(probe_db, "select worker, try_number from effects where run_id = %s", run_id) == [(other, 2)]
    assert not session_pids(crew[victim]["pid"]), "the killed worker's session is not empty"
