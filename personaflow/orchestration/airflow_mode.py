"""Which executor Airflow runs with and where its metadata lives: the environment of each mode.

local (the default): LocalExecutor, tasks run as children of the scheduler; the metadata DB is SQLite
in AIRFLOW_HOME unless PERSONAFLOW_AIRFLOW_DB_URL names a PostgreSQL.

celery (issue 12, the scale path): CeleryExecutor. The metadata DB must be PostgreSQL (SQLite cannot be
shared by processes on several machines; it is also Celery's result backend, so task states survive a
broker restart), the broker is Redis (PERSONAFLOW_CELERY_BROKER_URL, else PERSONAFLOW_REDIS_URL), and
`personaflow up` starts PERSONAFLOW_CELERY_WORKERS `airflow celery worker` processes beside the four
components. The DAG file and the pools do not change: pools are slots in the metadata DB that the
scheduler counts before it hands a task to any executor, so the one-slot `gpu` pool still runs one
training at a time across all workers.

Nothing here imports Airflow: the settings are turned into AIRFLOW__* variables that every component,
worker and task reads at its own start.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from personaflow.core.settings import Settings
from personaflow.core.tool_env import tool_variable

EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# Each worker's task instances report this as their hostname (Airflow's `[core] hostname_callable`),
# so the UI and the REST API say which worker ran a try, even with every worker on one machine.
HOSTNAME_CALLABLE = "personaflow.orchestration.airflow_mode.worker_hostname"
WORKER_NAME_VAR = "PERSONAFLOW_WORKER_NAME"


class ModeError(ValueError):
    """The settings ask for an Airflow mode they do not give what it needs for."""


@dataclass(frozen=True)
class Worker:
    """One `airflow celery worker`: its Celery node name (`name@host`), command line and extra env."""

    name: str
    node: str
    argv: tuple[str, ...]
    env: dict[str, str]


def sqlalchemy_url(url: str, setting: str = "PERSONAFLOW_AIRFLOW_DB_URL") -> str:
    """A postgresql:// URL as SQLAlchemy drives it with psycopg 3 (`postgresql+psycopg://`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ModeError(f"{setting}={_redact(url)!r}: use a postgresql://user@host:port/dbname URL")
    return "postgresql+psycopg://" + rest


def _redact(url: str) -> str:
    """The URL without its password (errors are printed; passwords must not be)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def broker_url(s: Settings) -> str:
    return s.celery_broker_url or s.redis_url


def check(s: Settings) -> None:
    """Raise ModeError, naming the setting at fault, unless the mode's needs are all set."""
    if s.airflow_executor not in EXECUTORS:
        choices = " or ".join(sorted(EXECUTORS))
        raise ModeError(f"PERSONAFLOW_AIRFLOW_EXECUTOR={s.airflow_executor!r}: use {choices}")
    if s.airflow_db_url:
        sqlalchemy_url(s.airflow_db_url)
    if s.airflow_executor != "celery":
        return
    if not s.airflow_db_url:
        raise ModeError("PERSONAFLOW_AIRFLOW_EXECUTOR=celery needs PERSONAFLOW_AIRFLOW_DB_URL (a "
                        "postgresql:// URL): workers and scheduler share the metadata DB")  # fmt: skip
    broker = broker_url(s)
    if not broker.startswith(("redis://", "rediss://")):
        raise ModeError("PERSONAFLOW_AIRFLOW_EXECUTOR=celery needs a redis:// broker in PERSONAFLOW_"
                        f"CELERY_BROKER_URL or PERSONAFLOW_REDIS_URL (got {_redact(broker)!r})")  # fmt: skip
    if s.celery_workers < 1 or s.celery_concurrency < 1:
        raise ModeError(f"PERSONAFLOW_CELERY_WORKERS={s.celery_workers} and PERSONAFLOW_CELERY_CONCURRENCY="
                        f"{s.celery_concurrency}: both must be at least 1")  # fmt: skip


def mode_env(s: Settings) -> dict[str, str]:
    """The AIRFLOW__* variables of the mode the settings ask for (checked first)."""
    check(s)
    env = {"AIRFLOW__CORE__EXECUTOR": EXECUTORS[s.airflow_executor]}
    if s.airflow_db_url:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sqlalchemy_url(s.airflow_db_url)
    if s.airflow_executor == "celery":
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": broker_url(s),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(s.airflow_db_url),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(s.celery_concurrency),
                # One task reserved per free slot: a worker never sits on a task another could run now.
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                # Every slot of every worker usable at once, unless the user sized it.
                "AIRFLOW__CORE__PARALLELISM": tool_variable(
                    "AIRFLOW__CORE__PARALLELISM", str(s.celery_workers * s.celery_concurrency)
                ),
            }
        )
    return env


def workers(s: Settings) -> list[Worker]:
    """The `airflow celery worker` processes of celery mode (none in local mode), named worker-1..N."""
    if s.airflow_executor != "celery":
        return []
    host = socket.gethostname()
    found = []
    for i in range(1, s.celery_workers + 1):
        name = f"worker-{i}"
        node = f"{name}@{host}"
        argv = ("celery", "worker", "--celery-hostname", node, "--concurrency", str(s.celery_concurrency),
                # logs are files in AIRFLOW_HOME/logs that the api-server reads; no log server on 8793
                "--skip-serve-logs")  # fmt: skip
        found.append(Worker(name, node, argv, {WORKER_NAME_VAR: node, "AIRFLOW__CORE__HOSTNAME_CALLABLE":
                                               HOSTNAME_CALLABLE}))  # fmt: skip
    return found


def worker_hostname() -> str:
    """Airflow's hostname callable in a worker: its Celery node name; elsewhere the machine's name."""
    from personaflow.core.settings import load

    return load().worker_name or socket.getfqdn()  # PERSONAFLOW_WORKER_NAME
