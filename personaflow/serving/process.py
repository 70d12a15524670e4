"""Start, wait for and stop `bentoml serve` as a child process (demo, CLI and tests share this)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from personaflow.core.settings import Settings
from personaflow.core.tool_env import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "personaflow.serving.service:Recommender"


def serve_workers(s: Settings) -> int:
    """Worker processes from PERSONAFLOW_SERVE_WORKERS; more than one needs the Redis online store."""
    if s.serve_workers < 1:
        raise ValueError(f"PERSONAFLOW_SERVE_WORKERS={s.serve_workers}: at least 1")
    if s.serve_workers > 1 and not s.redis_url:
        raise ValueError(
            f"PERSONAFLOW_SERVE_WORKERS={s.serve_workers} needs PERSONAFLOW_REDIS_URL: with the SQLite "
            "online store the live counters and the /events dedupe are exact inside one process only"
        )
    return s.serve_workers


def start(
    host: str, port: int, env: dict[str, str] | None = None, log_file: Path | None = None
) -> subprocess.Popen:
    """Launch `bentoml serve` from the repo root in its own process group (so stop() gets every child)."""
    server_env = child_env(env)
    server_env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # The service imports `personaflow` from the repo root.
    server_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), server_env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    out = None
    if log_file is not None:  # the owner's only, whatever the caller's umask (requests' ids are in it)
        out = os.fdopen(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        return subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()  # the child holds its own descriptor


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (binding it the way the server will fails)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_ready(base_url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> float:
    """Poll GET /readyz until it answers 200; returns the seconds waited.

    With `proc`, a server that dies while starting fails fast instead of waiting out the timeout.
    """
    started = time.monotonic()
    url = base_url.rstrip("/") + "/readyz"
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with code {proc.returncode} before {url} was ready")
        try:
            resp = httpx.get(url, timeout=2)
            if resp.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {resp.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s (last: {last})")


def stop(proc: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM the whole process group, wait, then SIGKILL it if needed; returns the exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    # Workers may outlive the arbiter for a moment; make sure none keeps the port.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.returncode
