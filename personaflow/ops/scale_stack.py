"""`personaflow stack up|down|status`: a local PostgreSQL and Redis for the scale path, in one folder.

Production points the PERSONAFLOW_*_URL settings at managed servers. On one machine (a try-out, the
scale benchmark) this starts the same servers from the machine's packages (personaflow/ops/local_servers.py)
under `<PERSONAFLOW_HOME>/stack/`, durable (fsync on, Redis appendonly), and writes `stack/env`: the
settings a shell exports (`set -a; . .personaflow/stack/env; set +a`) before `personaflow up`:
the warehouse and the Airflow metadata DB in two databases of the cluster, Feast's online store on
Redis db 0 and the Celery broker on db 1 (so a `flushdb` of one never empties the other), celery mode.

`up` is idempotent: servers already answering on their saved ports are kept, and the env is rewritten.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from personaflow.core.settings import Settings
from personaflow.ops.local_servers import (
    PG_DATABASE,
    Postgres,
    Redis,
    ServerError,
    default_os_user,
    free_port,
)
from personaflow.ops.process_groups import port_open, stop_session

AIRFLOW_DATABASE = "airflow"


@dataclass(frozen=True)
class StackState:
    folder: Path
    postgres_port: int
    redis_port: int
    redis_pid: int | None

    @property
    def env(self) -> dict[str, str]:
        """The settings that point personaflow at this stack."""
        pg = f"postgresql://personaflow@127.0.0.1:{self.postgres_port}"
        redis = f"redis://127.0.0.1:{self.redis_port}"
        return {
            "PERSONAFLOW_WAREHOUSE_URL": f"{pg}/{PG_DATABASE}",
            "PERSONAFLOW_AIRFLOW_DB_URL": f"{pg}/{AIRFLOW_DATABASE}",
            "PERSONAFLOW_REDIS_URL": f"{redis}/0",
            "PERSONAFLOW_CELERY_BROKER_URL": f"{redis}/1",
            "PERSONAFLOW_AIRFLOW_EXECUTOR": "celery",
            # nothing the API's workers must share is in process once the online store is on Redis
            "PERSONAFLOW_SERVE_WORKERS": "2",
        }


def stack_dir(s: Settings) -> Path:
    return s.home / "stack"


def load_state(s: Settings) -> StackState | None:
    path = stack_dir(s) / "stack.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return StackState(stack_dir(s), saved["postgres_port"], saved["redis_port"], saved.get("redis_pid"))


def _save(state: StackState) -> None:
    saved = {"postgres_port": state.postgres_port, "redis_port": state.redis_port,
             "redis_pid": state.redis_pid}  # fmt: skip
    (state.folder / "stack.json").write_text(json.dumps(saved) + "\n")
    lines = ["# personaflow stack: `set -a; . this-file; set +a`"]
    lines += [f"{key}={value}" for key, value in state.env.items()]
    (state.folder / "env").write_text("\n".join(lines) + "\n")


def _ensure_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        if not con.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            con.execute(f'create database "{name}"')


def up(s: Settings) -> StackState:
    """Start what is not running yet (same ports as last time when they are free); the state."""
    folder = stack_dir(s)
    folder.mkdir(parents=True, exist_ok=True)
    old = load_state(s)
    pg_port = old.postgres_port if old else free_port()
    redis_port = old.redis_port if old else free_port()
    if not port_open("127.0.0.1", pg_port):
        user = default_os_user()
        try:
            pg = Postgres(folder / "postgres", pg_port, user).start(durable=True)
        except subprocess.CalledProcessError as exc:
            hint = f" (it runs as {user!r}: each folder above {folder} must let that user in)" if user else ""
            raise ServerError(f"PostgreSQL in {folder / 'postgres'} would not start{hint}: "
                              f"{(exc.stderr or '').strip()[-500:]}") from exc  # fmt: skip
        _ensure_database(pg.url, AIRFLOW_DATABASE)
    redis_pid = old.redis_pid if old and _is_redis(old.redis_pid) else None
    if redis_pid is None or not port_open("127.0.0.1", redis_port):
        redis = Redis(folder / "redis", redis_port).start(durable=True)
        redis_pid = redis.process.pid if redis.process else None
    state = StackState(folder, pg_port, redis_port, redis_pid)
    _save(state)
    return state


def _is_redis(pid: int | None) -> bool:
    """`pid` is still our redis-server (not a reused pid)."""
    try:
        return pid is not None and "redis-server" in psutil.Process(pid).name()
    except psutil.Error:
        return False


def status(s: Settings) -> dict[str, object]:
    state = load_state(s)
    if state is None:
        return {"running": False, "folder": str(stack_dir(s))}
    return {
        "postgres": {"port": state.postgres_port, "up": port_open("127.0.0.1", state.postgres_port)},
        "redis": {"port": state.redis_port, "up": port_open("127.0.0.1", state.redis_port)},
        "env_file": str(state.folder / "env"),
        "env": state.env,
    }


def down(s: Settings) -> list[str]:
    """Stop both servers (their data stays in the folder for the next `up`); what was stopped."""
    state = load_state(s)
    if state is None:
        return []
    stopped = []
    if (state.folder / "postgres" / "data" / "postmaster.pid").exists():
        Postgres(state.folder / "postgres", state.postgres_port, default_os_user()).stop()
        stopped.append(f"postgres (127.0.0.1:{state.postgres_port})")
    if _is_redis(state.redis_pid) and stop_session(state.redis_pid, signal.SIGTERM, timeout=15):
        stopped.append(f"redis (pid {state.redis_pid}, 127.0.0.1:{state.redis_port})")
    return stopped
