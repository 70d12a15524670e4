"""`personaflow up` / `down`: Airflow (standalone) and the BentoML server as background services.

Each service runs in its own process group, so stopping it signals every child (standalone starts
scheduler, dag-processor, triggerer and api-server as children; a SIGTERM to the parent alone leaves
them running). Pids and ports go to `<PERSONAFLOW_HOME>/run/*.json` so `down` works from any shell.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from personaflow.airflow_api import password_file, read_password
from personaflow.orchestrate import airflow_env, migrate
from personaflow.settings import Settings


@dataclass(frozen=True)
class Started:
    url: str
    user: str
    password: str
    airflow_pid: int
    serving_url: str | None
    seconds: float


def run_dir(s: Settings) -> Path:
    return s.home / "run"


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _write_password(s: Settings) -> None:
    """A password from settings goes into SimpleAuthManager's file; without one, Airflow generates it."""
    if not s.airflow_password:
        return
    path = password_file(s.airflow_home)
    passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
    passwords[s.airflow_user] = s.airflow_password
    path.write_text(json.dumps(passwords) + "\n")
    path.chmod(0o600)


def wait_healthy(base_url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until the api-server answers and reports scheduler, dag-processor and metadata DB healthy."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with code {proc.returncode} while starting")
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
    """Start `airflow standalone` for our DAGs and wait until it is healthy; idempotent per home."""
    if port_open(s.airflow_host, s.airflow_port):
        raise RuntimeError(f"{s.airflow_host}:{s.airflow_port} is in use: `personaflow down`, or set "
                           "PERSONAFLOW_AIRFLOW_PORT")  # fmt: skip
    started = time.perf_counter()
    migrate(s)  # metadata DB, `gpu` and `dbt` pools (and the dbt manifest), before any component needs them
    _write_password(s)
    env = {**airflow_env(s), **(extra_env or {})}
    run_dir(s).mkdir(parents=True, exist_ok=True)
    log = open(run_dir(s) / "airflow.log", "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    url = f"http://{s.airflow_host}:{s.airflow_port}"
    _save(s, "airflow", {"pid": proc.pid, "host": s.airflow_host, "port": s.airflow_port})
    try:
        wait_healthy(url, timeout, proc)
        password = s.airflow_password or _wait_password(s, deadline=time.monotonic() + 30)
    except BaseException:
        stop_group(proc.pid, s.airflow_host, s.airflow_port)
        raise
    return Started(url, s.airflow_user, password, proc.pid, None, time.perf_counter() - started)


def _wait_password(s: Settings, deadline: float) -> str:
    while True:
        try:
            return read_password(s.airflow_home, s.airflow_user)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_serving(s: Settings, timeout: float = 120) -> str | None:
    """The BentoML server, only if a model is in production (it has nothing to serve otherwise)."""
    if not s.production_pointer.exists():
        return None
    from serving.process import start, wait_ready

    url = f"http://{s.serve_host}:{s.serve_port}"
    proc = start(s.serve_host, s.serve_port, env=airflow_env(s), log_file=run_dir(s) / "bentoml.log")
    _save(s, "bentoml", {"pid": proc.pid, "host": s.serve_host, "port": s.serve_port})
    wait_ready(url, timeout=timeout, proc=proc)
    return url


def up(s: Settings) -> Started:
    air = start_airflow(s)
    serving = start_serving(s)
    return Started(air.url, air.user, air.password, air.airflow_pid, serving, air.seconds)


def down(s: Settings) -> list[str]:
    """Stop whatever `up` started (BentoML first, then Airflow); returns what was stopped."""
    stopped = []
    for name in ("bentoml", "airflow"):
        path = run_dir(s) / f"{name}.json"
        if not path.exists():
            continue
        info = json.loads(path.read_text())
        # standalone shuts its components down cleanly on SIGINT (its KeyboardInterrupt path)
        sig = signal.SIGINT if name == "airflow" else signal.SIGTERM
        if stop_group(info["pid"], info["host"], info["port"], first=sig):
            stopped.append(f"{name} (pid {info['pid']}, {info['host']}:{info['port']})")
        path.unlink()
    return stopped


def stop_group(pgid: int, host: str, port: int, first: int = signal.SIGINT, timeout: float = 30) -> bool:
    """Signal a process group, wait for it to exit and its port to close; SIGKILL what is left."""
    if not _alive(pgid):
        return False
    _signal(pgid, first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (_alive(pgid) or port_open(host, port)):
        time.sleep(0.25)
    if _alive(pgid):
        _signal(pgid, signal.SIGKILL)
        while _alive(pgid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    return True


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts as "alive" for killpg; reap it if it is our child.
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _save(s: Settings, name: str, info: dict) -> None:
    (run_dir(s) / f"{name}.json").write_text(json.dumps(info) + "\n")
