"""The supervisor `personaflow up` runs (`python -m personaflow.ops.airflow_supervisor PLAN`): Airflow's
components as children in its own process group and, in celery mode, the workers, each in a session
of its own.

The components are one unit: one exiting on its own stops the others (a half-running Airflow is worse
than none). Workers are not: a worker that dies (its machine lost, in production) leaves the others
serving the queue, and the scheduler retries its running tasks on them once their heartbeats time out;
only when no worker is left does the supervisor stop everything. A dead worker's session is swept, so a
task it was running (in a process group of its own) does not run on unsupervised beside its retry.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from personaflow.ops.process_groups import session_pids, signal_session, stop_session

# Airflow's components, as `airflow standalone` runs them, less the log servers.
COMPONENTS = (
    ("scheduler", ["scheduler", "--skip-serve-logs"]),
    ("dag-processor", ["dag-processor"]),
    ("triggerer", ["triggerer", "--skip-serve-logs"]),
    ("api-server", ["api-server"]),
)
WORKERS_FILE = "airflow-workers.json"


def _airflow(argv: list[str], **kwargs) -> subprocess.Popen:
    """`airflow ARGV` with this interpreter (the venv's Airflow, whatever PATH holds)."""
    command = [sys.executable, "-m", "airflow", *argv]
    return subprocess.Popen(command, **kwargs)


def start_workers(plan: list[dict], run_dir: Path) -> dict[str, subprocess.Popen]:
    """Each worker in a session of its own (its pid = its group = its session); pids to WORKERS_FILE."""
    import os

    crew = {w["name"]: _airflow(w["argv"], env={**os.environ, **w["env"]}, start_new_session=True)
            for w in plan}  # fmt: skip
    info = {w["name"]: {"pid": crew[w["name"]].pid, "node": w["node"]} for w in plan}
    (run_dir / WORKERS_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return crew


def supervise(run_dir: Path, plan: list[dict], components=COMPONENTS) -> int:
    """Run the components (and workers) until SIGTERM/SIGINT, a component exiting, or no worker left.

    Stopping: SIGTERM to every component and to every worker's whole session; 25 s later, SIGKILL.
    """
    # airflow.cfg (with the JWT secret every component must share) before any component starts: the
    # `airflow` CLI writes it when missing, and several of them starting at once would each invent one.
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    procs = {name: _airflow(cmd) for name, cmd in components}
    crew = start_workers(plan, run_dir) if plan else {}
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = None
    while not stopping and failed is None:
        failed = next((n for n, p in procs.items() if p.poll() is not None), None)
        for name, p in list(crew.items()):
            if p.poll() is not None:
                del crew[name]
                signal_session(p.pid, signal.SIGKILL)  # its tasks, in groups of their own
                left = f"{len(crew)} worker(s) left"
                print(f"celery {name} exited with code {p.returncode}; {left}", flush=True)
                if not crew:
                    failed = "every celery worker"
        time.sleep(0.5)
    if failed is not None:
        print(f"airflow {failed} exited: stopping the others", flush=True)
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    for p in crew.values():
        signal_session(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 25
    for p in [*procs.values(), *crew.values()]:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for p in crew.values():
        if session_pids(p.pid):
            stop_session(p.pid, signal.SIGKILL, timeout=5)
    return 1 if failed is not None else 0


if __name__ == "__main__":  # the supervisor `airflow_service.start_airflow` runs
    given = json.loads(sys.argv[1])
    sys.exit(supervise(Path(given["run_dir"]), given["workers"]))
