"""`personaflow up` / `down`: Airflow and the BentoML server as background services.

Airflow runs as its four components (scheduler, dag-processor, triggerer, api-server) under a small
supervisor (`python -m personaflow.ops.airflow_supervisor`), not `airflow standalone`: standalone cannot turn
off the components' log servers, which listen on every interface on fixed ports (8793/8794), and on
first start it prints a generated admin password into its output (our run/airflow.log). Here the log
servers are off (tasks run on this machine and their logs are read from local files), the api-server
binds PERSONAFLOW_AIRFLOW_HOST (127.0.0.1 by default), and the admin password is ours: from
PERSONAFLOW_AIRFLOW_PASSWORD or generated into SimpleAuthManager's passwords file, mode 0600, before
any component starts, so Airflow never generates or prints one.

In celery mode (PERSONAFLOW_AIRFLOW_EXECUTOR=celery, personaflow/orchestration/airflow_mode.py) the metadata
DB is PostgreSQL, and the supervisor also runs PERSONAFLOW_CELERY_WORKERS `airflow celery worker` processes;
`up` returns once every worker answers a Celery ping on the broker, besides the health check.

Each service runs in its own process group, so stopping it signals every child. Pids and ports go to
`<PERSONAFLOW_HOME>/run/*.json` (the workers' in run/airflow-workers.json) so `down` works from any
shell.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from personaflow.core.settings import Settings
from personaflow.ops.airflow_supervisor import WORKERS_FILE
from personaflow.ops.process_groups import port_open, stop_group, stop_session
from personaflow.orchestration import airflow_mode
from personaflow.orchestration.airflow_api import password_file
from personaflow.orchestration.orchestrate import airflow_env, migrate

__all__ = ["Started", "down", "port_open", "start_airflow", "stop_group", "up", "worker_pids"]


@dataclass(frozen=True)
class Started:
    url: str
    user: str
    password: str
    airflow_pid: int
    serving_url: str | None
    seconds: float
    workers: tuple[str, ...] = ()


def run_dir(s: Settings) -> Path:
    return s.home / "run"


# What SimpleAuthManager prints when it generates a password (older runs of `airflow standalone`).
_PRINTED_PASSWORD = re.compile(rb"(Password for user '[^']*': )\S+")


def _private(path: Path) -> None:
    if path.exists():
        path.chmod(0o700 if path.is_dir() else 0o600)


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, created 0600 (never readable by others, not even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _write_password(s: Settings) -> str:
    """The admin password in SimpleAuthManager's file (0600): the one from settings, else the one already
    there, else a new random one. Airflow then finds its user and neither generates nor prints one."""
    path = password_file(s.airflow_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
    password = s.airflow_password or passwords.get(s.airflow_user) or secrets.token_urlsafe(18)
    if passwords.get(s.airflow_user) != password or not path.exists():
        passwords[s.airflow_user] = password
        _write_private(path, json.dumps(passwords) + "\n")
    _private(path)
    return password


def scrub_log(path: Path) -> None:
    """Blank out passwords an older `airflow standalone` printed into a log we keep (and make it 0600)."""
    if not path.exists():
        return
    text = path.read_bytes()
    cleaned = _PRINTED_PASSWORD.sub(rb"\1[redacted]", text)
    if cleaned != text:
        _write_private(path, cleaned.decode("utf-8", "replace"))
    _private(path)


def wait_healthy(base_url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until the api-server answers and reports scheduler, dag-processor and metadata DB healthy."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Airflow exited with code {proc.returncode} while starting (run/airflow.log)")
        try:
            health = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=2).json()
            states = {k: (v or {}).get("status") for k, v in health.items()}
            if all(states.get(k) == "healthy" for k in ("metadatabase", "scheduler", "dag_processor")):
                return
            last = str(states)
        except (httpx.TransportError, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise TimeoutError(f"Airflow at {base_url} not healthy after {timeout:.0f}s (last: {last})")


def start_airflow(s: Settings, extra_env: dict[str, str] | None = None, timeout: float = 180) -> Started:
    """Start Airflow's components for our DAGs and wait until they are healthy; idempotent per home."""
    if port_open(s.airflow_host, s.airflow_port):
        raise RuntimeError(f"{s.airflow_host}:{s.airflow_port} is in use: `personaflow down`, or set "
                           "PERSONAFLOW_AIRFLOW_PORT")  # fmt: skip
    airflow_mode.check(s)  # a setting at fault is an error before anything starts
    started = time.perf_counter()
    migrate(s)  # metadata DB, `gpu` and `dbt` pools (and the dbt manifest), before any component needs them
    password = _write_password(s)
    _private(s.airflow_home)
    _private(s.airflow_home / "airflow.cfg")  # holds Airflow's own generated keys
    env = {
        **airflow_env(s),  # with the mode's executor, metadata DB and broker (airflow_mode.mode_env)
        "AIRFLOW__API__HOST": s.airflow_host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        **(extra_env or {}),
    }
    run_dir(s).mkdir(parents=True, exist_ok=True)
    _private(run_dir(s))
    log_path = run_dir(s) / "airflow.log"
    scrub_log(log_path)
    crew = airflow_mode.workers(s)
    plan = {"run_dir": str(run_dir(s)), "workers": [w.__dict__ for w in crew]}
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "personaflow.ops.airflow_supervisor", json.dumps(plan)],
            env=env,
            stdout=fd,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(fd)
    url = f"http://{s.airflow_host}:{s.airflow_port}"
    _save(s, "airflow", {"pid": proc.pid, "host": s.airflow_host, "port": s.airflow_port})
    try:
        wait_healthy(url, timeout, proc)
        if crew:
            wait_workers(airflow_mode.broker_url(s), [w.node for w in crew], started + timeout, proc)
    except BaseException:
        _stop_airflow(s, {"pid": proc.pid, "host": s.airflow_host, "port": s.airflow_port}, signal.SIGINT)
        (run_dir(s) / "airflow.json").unlink(missing_ok=True)
        raise
    nodes = tuple(w.node for w in crew)
    return Started(url, s.airflow_user, password, proc.pid, None, time.perf_counter() - started, nodes)


def wait_workers(broker: str, nodes: list[str], deadline: float, proc: subprocess.Popen) -> None:
    """Until every Celery node in `nodes` answers a ping on the broker (deadline: perf_counter time)."""
    from celery import Celery

    app = Celery(broker=broker)  # a bare app to ping with: Airflow's own needs Airflow's config
    seen: set[str] = set()
    try:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Airflow exited with code {proc.returncode} while its workers started "
                                   "(run/airflow.log)")  # fmt: skip
            seen |= {node for reply in app.control.ping(timeout=1.0) for node in reply}
            if set(nodes) <= seen:
                return
            time.sleep(0.5)
    finally:
        app.close()
    missing = sorted(set(nodes) - seen)
    raise TimeoutError(f"celery workers {missing} did not answer on the broker (run/airflow.log)")


def worker_pids(s: Settings) -> dict[str, dict]:
    """The running workers of celery mode: name -> {"pid" (= its session), "node"}; empty otherwise."""
    path = run_dir(s) / WORKERS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _stop_airflow(s: Settings, info: dict, first: int) -> bool:
    """The supervisor's group (it stops its components and workers), then any worker session left
    behind (a supervisor that had to be killed cannot stop its workers)."""
    stopped = stop_group(info["pid"], info["host"], info["port"], first=first)
    for worker in worker_pids(s).values():
        if _ours(worker["pid"]):
            stopped = stop_session(worker["pid"], signal.SIGKILL, timeout=10) or stopped
    (run_dir(s) / WORKERS_FILE).unlink(missing_ok=True)
    return stopped


def _ours(sid: int) -> bool:
    """Session `sid` is a worker we started: its leader gone (its tasks may remain) or still a worker,
    not a process that came later with a reused pid."""
    import psutil

    try:
        return psutil.Process(sid).cmdline()[1:4] == ["-m", "airflow", "celery"]
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def start_serving(s: Settings, timeout: float = 120) -> str | None:
    """The BentoML server, only if a model is in production (it has nothing to serve otherwise)."""
    if not s.production_pointer.exists():
        return None
    from personaflow.serving.process import port_in_use, start, stop, wait_ready

    if port_in_use(s.serve_host, s.serve_port):
        raise RuntimeError(f"{s.serve_host}:{s.serve_port} is in use: `personaflow down`, or set "
                           "PERSONAFLOW_SERVE_PORT")  # fmt: skip
    url = f"http://{s.serve_host}:{s.serve_port}"
    run_dir(s).mkdir(parents=True, exist_ok=True)
    proc = start(s.serve_host, s.serve_port, env=airflow_env(s), log_file=run_dir(s) / "bentoml.log")
    _save(s, "bentoml", {"pid": proc.pid, "host": s.serve_host, "port": s.serve_port})
    try:
        wait_ready(url, timeout=timeout, proc=proc)
    except BaseException:
        stop(proc)
        (run_dir(s) / "bentoml.json").unlink(missing_ok=True)
        raise
    return url


def up(s: Settings) -> Started:
    """Airflow, then BentoML; a port in use is an error before anything starts, and a failure (or a
    signal) while starting stops what had started."""
    from personaflow.serving.process import port_in_use

    if s.production_pointer.exists() and port_in_use(s.serve_host, s.serve_port):
        raise RuntimeError(f"{s.serve_host}:{s.serve_port} is in use: `personaflow down`, or set "
                           "PERSONAFLOW_SERVE_PORT")  # fmt: skip
    air = start_airflow(s)
    try:
        serving = start_serving(s)
    except BaseException:
        down(s)
        raise
    return Started(air.url, air.user, air.password, air.airflow_pid, serving, air.seconds, air.workers)


def down(s: Settings) -> list[str]:
    """Stop whatever `up` started (BentoML first, then Airflow); returns what was stopped."""
    stopped = []
    for name in ("bentoml", "airflow"):
        path = run_dir(s) / f"{name}.json"
        if not path.exists():
            continue
        info = json.loads(path.read_text())
        # every component shuts down cleanly on SIGTERM (Airflow's supervisor waits for them)
        if name == "airflow":
            done = _stop_airflow(s, info, signal.SIGTERM)
        else:
            done = stop_group(info["pid"], info["host"], info["port"], first=signal.SIGTERM)
        if done:
            stopped.append(f"{name} (pid {info['pid']}, {info['host']}:{info['port']})")
        path.unlink()
    return stopped


def _save(s: Settings, name: str, info: dict) -> None:
    _write_private(run_dir(s) / f"{name}.json", json.dumps(info) + "\n")


