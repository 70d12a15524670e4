"""The package's layers hold: `lint-imports` with the contracts in pyproject.toml ([tool.importlinter]).

The contracts are import-linter's own (layers, acyclic siblings); this only runs it, and shows on a
tiny package that an arrow back up, or a cycle, does break a contract of the same kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from personaflow.core.settings import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(extra_path or cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_package_keeps_its_layers_and_has_no_cycles():
    done = lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "3 kept" in done.stdout, done.stdout


def _package(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


CONFIG = """
[tool.importlinter]
root_package = "pkg"

[[tool.importlinter.contracts]]
name = "layers"
type = "layers"
layers = ["pkg.top", "pkg.core"]

[[tool.importlinter.contracts]]
name = "acyclic"
type = "acyclic_siblings"
ancestors = ["pkg"]
"""


def test_an_import_back_up_or_a_cycle_breaks_a_contract(tmp_path):
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    files = {"__init__.py": "", "top/__init__.py": "", "core/__init__.py": ""}
    _package(tmp_path, {**files, "top/a.py": "from pkg.core import b\n", "core/b.py": "x = 1\n"})
    assert lint_imports(tmp_path).returncode == 0

    _package(tmp_path, {"core/b.py": "def f():\n    from pkg.top import a  # a function-local arrow up\n"})
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "layers BROKEN" in done.stdout, done.stdout

    _package(tmp_path, {"core/b.py": "from pkg.core import c\n", "core/c.py": "from pkg.core import b\n"})
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "acyclic BROKEN" in done.stdout, done.stdout
