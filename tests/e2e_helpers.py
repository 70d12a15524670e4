"""Session fixtures for the end-to-end tests: a generated shop, a real SMTP server, and ONE running
Airflow (standalone: api-server, scheduler, dag-processor, triggerer) shared by the scheduler tests and
the browser test, so its ~30 s start is paid once; `airflow_celery_stack` is the same in celery mode
(two workers, PostgreSQL metadata DB, Redis broker). Registered in conftest.py, which stops each of
the two after the last test that uses it (`close_stack`), not at the session's end.

Nothing here patches os.environ for the session: the settings are built once from a private
environment and everything Airflow runs gets them through `orchestrate.airflow_env`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from personaflow.core import settings as config
from personaflow.core import warehouse
from personaflow.ingest.generate import generate_shop, write_shop
from personaflow.ops.airflow_service import down, port_open, start_airflow, worker_pids
from personaflow.ops.demo import free_port
from personaflow.orchestration.airflow_api import AirflowClient
from personaflow.orchestration.orchestrate import DAG_ID, airflow_env
from personaflow.pipeline import ingest as ingest_stage

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TASKS = {
    "ingest.wait_for_batch", "ingest.load", "ingest.validate_batch", "transform.dbt_build",
    "transform.validate_marts",
    "profiles.segments", "profiles.churn", "profiles.audiences", "features.materialize", "features.drift",
    "model.train",
    "model.promote", "model.prune", "report.render",
}  # fmt: skip


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, needle: str, timeout: float = 30) -> list[Message]:
        """Messages whose subject contains `needle`, waiting a little for late ones."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if needle in (m["Subject"] or "")]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


@dataclass
class Stack:
    s: config.Settings
    shop: object
    last: date
    client: AirflowClient
    url: str
    user: str
    password: str
    inbox: Inbox
    start_seconds: float


@dataclass
class Run:
    run_id: str
    day: date
    state: str
    tasks: dict[str, str | None]
    seconds: float


def body_text(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    chunks = [p.get_payload(decode=True) for p in parts if p.get_content_maintype() == "text"]
    return "\n".join(c.decode(errors="replace") for c in chunks if c)


@pytest.fixture(scope="session")
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def celery_settings(postgres_server, redis_server, workers: int = 2) -> dict[str, str]:
    """The settings of celery mode on the test servers: a fresh metadata DB, the broker on Redis db 1."""
    return {
        "PERSONAFLOW_AIRFLOW_EXECUTOR": "celery",
        "PERSONAFLOW_CELERY_WORKERS": str(workers),
        "PERSONAFLOW_AIRFLOW_DB_URL": postgres_server.create_database(f"airflow_{free_port()}"),
        "PERSONAFLOW_CELERY_BROKER_URL": redis_server.url.rsplit("/", 1)[0] + "/1",
    }


def scale_settings(postgres_server, redis_server, workers: int = 2) -> dict[str, str]:
    """The whole scale stack: celery mode as above, plus the warehouse in its own PostgreSQL database
    and the online store (and the API's live counters) on Redis db 2."""
    return {
        **celery_settings(postgres_server, redis_server, workers),
        "PERSONAFLOW_WAREHOUSE_URL": postgres_server.create_database(f"warehouse_{free_port()}"),
        "PERSONAFLOW_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/2",
        "PERSONAFLOW_SERVE_WORKERS": "2",
    }


@contextlib.contextmanager
def running_stack(home: Path, inbox, settings: dict[str, str] | None = None) -> Iterator[Stack]:
    """A generated shop ingested up to its day before last and ONE Airflow on it (LocalExecutor, or
    celery mode with `settings=celery_settings(...)`), stopped the way `personaflow down` stops it."""
    controller, handler = inbox
    env = {
        "PERSONAFLOW_HOME": str(home),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_SMTP_PORT": str(controller.port),
        "PERSONAFLOW_ALERT_TO": "data-team@example.test",
        "PERSONAFLOW_AIRFLOW_PORT": str(free_port()),
        # manual runs only: the nightly clock would otherwise start a run for "yesterday"
        "PERSONAFLOW_AIRFLOW_SCHEDULE": "false",
        **(settings or {}),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        s = config.load()
    shop = generate_shop(users=400, items=120, days=21, seed=11)
    write_shop(shop, s.landing_dir)
    last = shop.events["event_ts"].max().date()
    if warehouse.is_spark(warehouse.location(s)):
        # in a child, as the CLI would: a Spark session in this process would hold the embedded
        # metastore (one process at a time, personaflow/core/spark.py) and every task would wait for it
        through = (last - timedelta(days=1)).isoformat()
        done = subprocess.run([sys.executable, "-m", "personaflow.cli", "ingest", "--through", through],
                              env=airflow_env(s), capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        ingest_stage.ingest_history(last - timedelta(days=1), s)

    started = start_airflow(s)
    try:
        client = AirflowClient(started.url, started.user, started.password)
        client.wait_for_dag(DAG_ID)
        client.set_paused(DAG_ID, False)
        yield Stack(s, shop, last, client, started.url, started.user, started.password, handler,
                    started.seconds)  # fmt: skip
    finally:
        stopped = down(s)  # what `personaflow down` does: signal the group, wait for the port
    assert stopped and stopped[0].startswith("airflow"), stopped
    assert not port_open(s.airflow_host, s.airflow_port), "Airflow still listens after `down`"


# The shared stacks still running, by fixture name: `close_stack` stops one as soon as the last test
# that uses it is done (tests/conftest.py), not at the session's end. An idle Airflow is not free: its
# scheduler, DAG processor, triggerer and api-server (and the Celery stack's two workers) took ~8 CPU
# s a minute here, and ~1.5 GB, for the rest of the session, on the two cores the other tests run on.
_OPEN: dict[str, contextlib.ExitStack] = {}


def close_stack(name: str) -> None:
    """Stop the shared stack `name` now if it runs (its checks on `down` run here); a later request of
    the fixture would get a stopped stack, so only the caller that knows no test needs it calls this."""
    exits = _OPEN.pop(name, None)
    if exits is not None:
        started = time.perf_counter()
        exits.close()
        print(f"\n{name} stopped after its last test ({time.perf_counter() - started:.0f} s)")


@contextlib.contextmanager
def _shared(name: str, stack: contextlib.AbstractContextManager[Stack]) -> Iterator[Stack]:
    with contextlib.ExitStack() as exits:
        running = exits.enter_context(stack)
        _OPEN[name] = exits
        try:
            yield running
        finally:
            _OPEN.pop(name, None)


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory, inbox):
    with _shared("airflow_stack", running_stack(tmp_path_factory.mktemp("e2e"), inbox)) as stack:
        yield stack


@pytest.fixture(scope="session")
def airflow_celery_stack(tmp_path_factory, inbox, postgres_server, redis_server):
    """The same stack on the scale path: two celery workers, metadata DB and warehouse on the test
    PostgreSQL, Redis broker and online store."""
    settings = scale_settings(postgres_server, redis_server)
    home = tmp_path_factory.mktemp("e2e-celery")
    with _shared("airflow_celery_stack", running_stack(home, inbox, settings)) as stack:
        yield stack


def run_day(stack: Stack, day: date, timeout: float = 600) -> Run:
    """Trigger personaflow_nightly for `day` through the REST API and wait for it to finish."""
    started = time.perf_counter()
    run_id = stack.client.trigger(DAG_ID, day, conf={"batch_date": day.isoformat()})
    run = stack.client.wait(DAG_ID, run_id, timeout=timeout)
    states = stack.client.task_states(DAG_ID, run_id)
    return Run(run_id, day, run["state"], states, time.perf_counter() - started)


def print_task_times(stack: Stack, run: Run) -> None:
    """Each task's time as Airflow recorded it, in start order (seen with `pytest -s`): where a night's
    minutes go."""
    tis = sorted(stack.client.task_instances(DAG_ID, run.run_id), key=lambda t: t["start_date"] or "")
    for ti in tis:
        print(f"  {ti['task_id']:<26} {ti['state']:<8} {ti['duration'] or 0:7.1f} s  from {ti['start_date']}")


def assert_night_on_the_workers(stack: Stack, run: Run) -> dict[str, dict]:
    """The night succeeded task by task on the Celery workers: every task of the DAG ran, churn was
    skipped (21 days of log train no churn model), every other task succeeded, each on one of the
    workers' nodes (never the scheduler's), and a model was promoted. Returns the task instances by
    task id, for the caller's own checks (the pool, the process each task ran in)."""
    assert run.state == "success", run.tasks
    assert set(run.tasks) == TASKS
    states = dict(run.tasks)
    assert states.pop("profiles.churn") == "skipped", states
    assert all(state == "success" for state in states.values()), states
    tis = {ti["task_id"]: ti for ti in stack.client.task_instances(DAG_ID, run.run_id)}
    nodes = {w["node"] for w in worker_pids(stack.s).values()}
    hosts = {ti["hostname"] for ti in tis.values() if ti["state"] == "success"}
    assert hosts and hosts <= nodes, f"tasks ran on {hosts}, not only on the workers {nodes}"
    assert stack.s.production_pointer.exists(), "the night promoted no model"
    return tis


@pytest.fixture(scope="session")
def good_run(airflow_stack) -> Run:
    """The last day's nightly run, done once for every test that needs a finished good run."""
    return run_day(airflow_stack, airflow_stack.last)
