"""`personaflow stack up|down|status`: a real local PostgreSQL + Redis under <home>/stack/, the env file
that points personaflow at them, idempotent `up`, data kept across `down`/`up`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis

from personaflow.core import settings as config
from personaflow.ops import scale_stack
from personaflow.orchestration.airflow_mode import mode_env


@pytest.fixture
def stack_settings():
    # as root the cluster runs as an unprivileged user, who must be able to walk into the folder
    home = Path(tempfile.mkdtemp(prefix="personaflow-stack-"))
    home.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERSONAFLOW_HOME", str(home))
        s = config.load()
    yield s
    scale_stack.down(s)
    shutil.rmtree(home, ignore_errors=True)


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_stack_up_is_idempotent_and_keeps_data_across_down(stack_settings):
    s = stack_settings
    first = scale_stack.up(s)
    env = _env_file(first.folder / "env")
    assert env == first.env and env["PERSONAFLOW_AIRFLOW_EXECUTOR"] == "celery"
    with psycopg.connect(env["PERSONAFLOW_WAREHOUSE_URL"], autocommit=True) as con:
        con.execute("create table kept (x int); insert into kept values (7)")
    with psycopg.connect(env["PERSONAFLOW_AIRFLOW_DB_URL"]) as con:
        assert con.execute("select current_database()").fetchone() == ("airflow",)
    assert redis.Redis.from_url(env["PERSONAFLOW_CELERY_BROKER_URL"]).ping()
    # the env is a valid celery mode for `personaflow up`
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert mode_env(config.load())["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"

    again = scale_stack.up(s)  # already running: kept, same ports
    assert (again.postgres_port, again.redis_port, again.redis_pid) == (
        first.postgres_port, first.redis_port, first.redis_pid)  # fmt: skip
    assert scale_stack.status(s)["postgres"] == {"port": first.postgres_port, "up": True}

    stopped = scale_stack.down(s)
    assert [x.split(" ")[0] for x in stopped] == ["postgres", "redis"], stopped
    state = scale_stack.status(s)
    assert not state["postgres"]["up"] and not state["redis"]["up"]
    assert scale_stack.down(s) == []  # nothing left to stop

    back = scale_stack.up(s)
    assert back.postgres_port == first.postgres_port
    with psycopg.connect(back.env["PERSONAFLOW_WAREHOUSE_URL"]) as con:
        assert con.execute("select x from kept").fetchall() == [(7,)]
