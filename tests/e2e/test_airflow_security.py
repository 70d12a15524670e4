"""`personaflow up` / `down` as a user runs them (subprocesses, real Airflow on 127.0.0.1): secrets are
0600 and never in a log, every server we start listens on 127.0.0.1 only (no log servers on all
interfaces), a signal while starting stops the whole process group, a port in use is one clear error.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from personaflow.core import settings as config
from personaflow.core.settings import REPO_ROOT
from personaflow.ops.airflow_service import _write_password, port_open, scrub_log
from personaflow.orchestration.airflow_api import AirflowClient, password_file
from tests._serving_setup import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_password_printed_by_an_older_standalone_is_scrubbed(tmp_path):
    log = tmp_path / "airflow.log"
    log.write_text("standalone | Password for user 'admin': s3cr3tXYZ\nother line\n")
    log.chmod(0o644)
    scrub_log(log)
    assert "s3cr3tXYZ" not in log.read_text() and "[redacted]" in log.read_text()
    assert mode(log) == 0o600


def test_password_file_is_rewritten_0600_and_keeps_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("PERSONAFLOW_AIRFLOW_PASSWORD", raising=False)
    path = password_file(tmp_path)
    path.write_text(json.dumps({"admin": "kept"}))
    path.chmod(0o644)  # what Airflow's own generation leaves
    assert _write_password(config.load()) == "kept" and mode(path) == 0o600
    path.unlink()
    fresh = _write_password(config.load())
    assert len(fresh) >= 20 and json.loads(path.read_text()) == {"admin": fresh} and mode(path) == 0o600


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.25)
    return False


def _listening(pgid: int) -> list[tuple[str, str, int]]:
    out = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((" ".join(proc.cmdline()[:4]), conn.laddr.ip, conn.laddr.port))
        except (psutil.Error, ProcessLookupError):
            continue
    return out


@pytest.mark.e2e
def test_up_down_secrets_binds_and_signals(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PERSONAFLOW_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "PERSONAFLOW_AIRFLOW_PORT": str(port),
        "PERSONAFLOW_AIRFLOW_SCHEDULE": "false",
    }
    env.pop("PERSONAFLOW_AIRFLOW_PASSWORD", None)
    cli = [sys.executable, "-m", "personaflow.cli"]
    run_dir, pid_file = home / "run", home / "run" / "airflow.json"

    # 1. SIGTERM while `up` waits for Airflow: the whole group goes, the port closes.
    first = subprocess.Popen([*cli, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert pid_file.exists(), first.communicate(timeout=30)
    pgid = json.loads(pid_file.read_text())["pid"]
    time.sleep(4)  # components are starting
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=90)
    assert first.returncode == 130, (out, err)
    assert _wait_gone(pgid, 10), "Airflow's process group outlived `up` being stopped"
    assert not port_open("127.0.0.1", port) and not pid_file.exists()

    # 2. `up` for real.
    started = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=400)
    assert started.returncode == 0, (started.stdout, started.stderr)
    pgid = json.loads(pid_file.read_text())["pid"]
    try:
        pw_file = password_file(home / "airflow")
        password = json.loads(pw_file.read_text())["admin"]
        assert mode(pw_file) == 0o600 and mode(home / "airflow") == 0o700
        assert mode(run_dir) == 0o700 and mode(run_dir / "airflow.log") == 0o600 and mode(pid_file) == 0o600
        if (home / "airflow" / "airflow.cfg").exists():
            assert mode(home / "airflow" / "airflow.cfg") == 0o600
        assert password not in started.stdout + started.stderr and str(pw_file) in started.stdout
        # One airflow.cfg (one JWT secret) for all components, written before any of them started.
        assert b"was empty, using a generated one" not in (run_dir / "airflow.log").read_bytes()
        AirflowClient(f"http://127.0.0.1:{port}", "admin", password)  # the password is the real one

        listening = _listening(pgid)
        assert any(p == port for _, _, p in listening), listening
        assert all(ip == "127.0.0.1" for _, ip, _ in listening), listening
        assert not {8793, 8794} & {p for _, _, p in listening}, listening

        # 3. A second `up` on the same port: one line, exit 1, nothing else started.
        again = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1, again.stderr
        assert f"127.0.0.1:{port} is in use" in again.stderr
    finally:
        stopped = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "airflow" in stopped.stdout, stopped
    assert _wait_gone(pgid, 5) and not port_open("127.0.0.1", port)

    # No log we (or Airflow) wrote holds the password.
    logs = [p for p in home.rglob("*") if p.is_file() and p.suffix in (".log", ".json", ".txt", "")]
    leaked = [p for p in logs if p != pw_file and password.encode() in p.read_bytes()]
    assert not leaked, leaked
