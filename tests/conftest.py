"""Every test session gets its own state folder, so tests never touch a user's `.personaflow/`.

Set before any test module imports Airflow, BentoML or Feast: they read these variables at import.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="personaflow-tests-"))
_REPO = Path(__file__).resolve().parent.parent
os.environ.update(
    {
        "PERSONAFLOW_HOME": str(_HOME),
        "AIRFLOW_HOME": str(_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "BENTOML_HOME": str(_HOME / "bentoml"),
        "PERSONAFLOW_FEATURES_DIR": str(_HOME / "features"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
)

# Session fixtures of the end-to-end tests (one Airflow for test_e2e.py and test_e2e_ui.py).
# A real PostgreSQL and Redis for the scale-path tests (tests/_servers.py).
from tests._servers import postgres_server, postgres_url, redis_server, redis_url  # noqa: E402,F401
from tests.e2e_helpers import airflow_celery_stack, airflow_stack, close_stack, good_run, inbox  # noqa: E402,F401

TIERS = ("unit", "integration", "e2e")  # tests/<tier>/: what a test needs, and its marker


# `make test` runs the suite on two processes (pytest-xdist). Each test module is one unit of work on
# one process (its module fixtures are built once), except the modules that share a session's server
# stack: they form one unit and run in file order on one process, as in a serial run (test_e2e_rerun.py
# must follow test_e2e.py, and precede test_e2e_ui.py and test_forget.py).
SHARED_STACKS = {
    "airflow_stack": ("test_e2e.py", "test_e2e_rerun.py", "test_e2e_ui.py", "test_forget.py",
                      "test_missing_night.py"),
    "airflow_celery_stack": ("test_e2e_celery.py", "test_airflow_celery.py"),
}  # fmt: skip
# The longest units start first, so that the short ones fill the other process meanwhile instead of
# one long unit running alone at the end (measured with `pytest --durations`; the rest keeps file order).
LONGEST_FIRST = ("airflow_stack", "airflow_celery_stack", "test_spark_parity.py", "test_e2e_spark.py",
                 "test_real_data.py")


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module's file name, or the shared stack's name."""
    name = Path(nodeid.split("::", 1)[0]).name
    return next((stack for stack, files in SHARED_STACKS.items() if name in files), name)


def pytest_xdist_make_scheduler(config, log):
    """xdist's own per-scope scheduler with the units above as scopes. (Its `loadgroup` mode would do
    this from marks, but it renames node ids, which pytest 9 no longer allows.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ByUnit(config, log)


# The last collected test of each shared stack's unit: the stack is stopped when that test is done.
# (A test deselected later, by -k, only means the stack runs to the session's end, as before.)
_LAST_OF_STACK: dict[str, str] = {}


def pytest_collection_modifyitems(config, items):
    """Every test under tests/<tier>/ carries that tier's marker (`pytest -m unit`); on a parallel run
    the longest units come first (stable: file order kept within and after them); the last test of
    each shared stack's unit is noted for `pytest_runtest_teardown`."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(_REPO / "tests").parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
    if config.getoption("dist", "no") != "no":
        rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))
    _LAST_OF_STACK.clear()
    for item in items:
        if unit_of(item.nodeid) in SHARED_STACKS:
            _LAST_OF_STACK[unit_of(item.nodeid)] = item.nodeid


@pytest.hookimpl(trylast=True)  # after pytest's own teardown of the test's fixtures
def pytest_runtest_teardown(item, nextitem):
    """Stop a shared stack (airflow_stack, airflow_celery_stack) right after the last test of its unit
    instead of at the session's end: the unit's modules run together on one process (xdist) or in file
    order (serial), so no later test needs it, and an idle Airflow kept the other process's cores busy."""
    unit = unit_of(item.nodeid)
    if _LAST_OF_STACK.get(unit) == item.nodeid:
        close_stack(unit)


@pytest.fixture(autouse=True)
def edge_env_restored():
    """A test that runs a process edge in this process (the CLI through typer's CliRunner, a DAG task's
    helper, export_tool_env itself) has the edge export the tools' variables into os.environ; without
    this, one test's warehouse would leak into the next test's settings. Every test gets it, so a new
    test cannot forget it (stages and domain code never write the environment:
    tests/unit/test_config_channel.py)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def one_torch_thread():
    """Small batches: one thread is several times faster than two fighting over two shared cores."""
    import torch  # here, not at the top: most tests never need it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh BentoML model store and the production pointer path beside it."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    return tmp_path / "registry" / "production.json"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)
    # the forget key's folder lives beside the home, not in it (personaflow/core/forgotten.py)
    shutil.rmtree(_HOME.parent / f"{_HOME.name}-secrets", ignore_errors=True)
