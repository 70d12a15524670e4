"""One error style: a failed command prints one line naming it and the cause, exits 1, no traceback
unless --debug; an empty model store says so instead of printing nothing."""

import os
import subprocess
import sys
from pathlib import Path


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    env.pop("PERSONAFLOW_WAREHOUSE", None)
    code = "from personaflow.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_failed_stage_is_one_line_and_debug_shows_the_traceback(tmp_path):
    failed = _run(tmp_path, "train")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("personaflow train failed: warehouse ")
    assert "does not exist" in lines[0] and "Traceback" not in failed.stderr
    debug = _run(tmp_path, "train", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_models_on_an_empty_store_says_so(tmp_path):
    empty = _run(tmp_path, "models")
    assert empty.returncode == 0 and "no model saved yet" in empty.stdout
