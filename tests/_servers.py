"""Session fixtures: a real PostgreSQL and a real Redis (Debian's packages, `make servers`), each on a
free 127.0.0.1 port in a temporary folder, stopped when the session ends. No mocks: the scale-path
tests run the same code against these as production runs against managed servers."""

import shutil
import tempfile
from pathlib import Path

import pytest

from personaflow.ops.local_servers import Postgres, Redis, default_os_user, free_port


@pytest.fixture(scope="session")
def postgres_server():
    folder = Path(tempfile.mkdtemp(prefix="personaflow-pg-"))
    server = Postgres(folder, free_port(), default_os_user()).start(durable=False)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A database of its own for one test (created in the session's cluster): tests stay independent."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres_server.create_database(f"{name}_{free_port()}")


@pytest.fixture(scope="session")
def redis_server():
    folder = Path(tempfile.mkdtemp(prefix="personaflow-redis-"))
    server = Redis(folder, free_port()).start(durable=False)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis db 0, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # db 0 only: the celery stacks keep their broker and store on db 1 and 2
    client.close()
    return redis_server.url
