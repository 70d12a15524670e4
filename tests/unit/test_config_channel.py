"""One configuration channel: no module reads or writes the process environment except the edge.

The settings model (personaflow/core/settings.py, pydantic-settings) is the only reader of
PERSONAFLOW_*; personaflow/core/tool_env.py is the process edge that writes the tools' own variables and
builds child-process environments. Every other module under personaflow/, dags/ and feature_repo/ gets
its values passed in. The scan is of the source (ast), so an indirect spelling is caught too:
`os.environ`, `os.getenv`, `os.putenv`, `os.unsetenv`, `from os import environ` and `environ[...]`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from personaflow.core.settings import REPO_ROOT

SCANNED = ("personaflow", "dags", "feature_repo")
# The process edge (README "Settings" names the same module).
ALLOWED = {"personaflow/core/tool_env.py"}
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of the process environment in `source`."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES:
            # os.environ, os.getenv(...), and the same through any alias of os (`import os as o`)
            found.append((node.lineno, f"<module>.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix", "nt"):
            for alias in node.names:
                if alias.name in ENV_NAMES:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        elif isinstance(node, ast.Name) and node.id in ENV_NAMES:
            found.append((node.lineno, node.id))  # a bare `environ[...]` / `getenv(...)`
    return sorted(set(found))


def sources() -> list[Path]:
    return sorted(p for top in SCANNED for p in (REPO_ROOT / top).rglob("*.py"))


def test_the_scan_sees_every_spelling():
    """The check can fail: each way of reaching the environment is reported."""
    spellings = [
        "import os\nos.environ['X'] = '1'",
        "import os\nx = os.environ.get('X')",
        "import os\nx = os.getenv('X')",
        "import os as o\nx = o.environ",
        "from os import environ\nx = environ['X']",
        "from os import getenv",
        "import os\nenv = {**os.environ, 'A': 'b'}",
    ]
    for text in spellings:
        assert environment_uses(text), text
    assert environment_uses("import os\nos.path.join('a', 'b')\nx = {'environ': 1}") == []


def test_no_module_touches_the_environment_outside_the_edge():
    assert sources(), "nothing scanned"
    offenders = []
    for path in sources():
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel in ALLOWED:
            continue
        offenders += [f"{rel}:{line}: {what}" for line, what in environment_uses(path.read_text())]
    hint = "use the settings (personaflow.core.settings.load) or the edge module (core/tool_env.py):"
    assert offenders == [], "\n".join([hint, *offenders])


def test_the_edge_module_exists_and_is_the_one_named_in_the_readme():
    for rel in ALLOWED:
        assert environment_uses((REPO_ROOT / rel).read_text()), f"{rel} no longer touches the environment"
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    for rel in ALLOWED:
        assert f"`{rel}`" in section, f"README's Settings section does not name {rel}"


def test_settings_read_personaflow_variables_with_their_defaults(monkeypatch, tmp_path):
    """The pydantic-settings model: the prefix, defaults under PERSONAFLOW_HOME, comma lists, empty is
    the default."""
    from personaflow.core.settings import Settings, load

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    for name in ("PERSONAFLOW_FEATURES_DIR", "BENTOML_HOME", "AIRFLOW_HOME", "PERSONAFLOW_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONAFLOW_LANDING_DIR", "")  # empty: the default
    monkeypatch.setenv("PERSONAFLOW_ALERT_TO", "a@x, b@y,")
    monkeypatch.setenv("PERSONAFLOW_SERVE_PORT", "3999")
    monkeypatch.setenv("PERSONAFLOW_AIRFLOW_EXECUTOR", "CELERY")
    s = load()
    assert isinstance(s, Settings)
    assert s.home == tmp_path.resolve()
    assert s.landing_dir == tmp_path.resolve() / "landing"
    assert s.features_dir == tmp_path.resolve() / "features"
    assert s.bentoml_home == tmp_path.resolve() / "bentoml"
    assert s.warehouse == tmp_path.resolve() / "warehouse.duckdb"
    assert s.alert_to == ("a@x", "b@y")
    assert s.serve_port == 3999
    assert s.airflow_executor == "celery"
    assert s.dbt_tasks == "single" and s.model == "auto" and s.hybrid is True
    changed = s.model_copy(update={"warehouse_url": "postgresql://u@h/d"})
    assert changed.warehouse_url == "postgresql://u@h/d" and s.warehouse_url == ""
    with pytest.raises(ValidationError):
        s.seed = 1  # frozen


def test_the_edge_exports_the_tools_variables(monkeypatch, tmp_path):
    import os

    from personaflow.core.settings import load
    from personaflow.core.tool_env import child_env, export_tool_env, tool_variable, tool_vars

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("BENTOML_HOME", raising=False)
    monkeypatch.delenv("PERSONAFLOW_FEATURES_DIR", raising=False)
    s = load().model_copy(update={"warehouse_url": "postgresql://ana:pw@db:6543/shop"})
    for name in [*tool_vars(s), "BENTOML_DO_NOT_TRACK"]:  # put back after the test, whatever it writes
        monkeypatch.delenv(name, raising=False)
    export_tool_env(s)
    assert os.environ["BENTOML_HOME"] == str(tmp_path.resolve() / "bentoml")
    assert os.environ["PERSONAFLOW_FEATURES_DIR"] == str(tmp_path.resolve() / "features")
    assert os.environ["PERSONAFLOW_PG_PORT"] == "6543"
    assert child_env({"EXTRA": "1"})["EXTRA"] == "1"
    assert child_env()["BENTOML_HOME"] == str(tmp_path.resolve() / "bentoml")
    with pytest.raises(ValueError):
        tool_variable("PERSONAFLOW_HOME")
