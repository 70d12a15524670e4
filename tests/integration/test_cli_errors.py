"""One error style: a failed command prints one line naming it and the cause, exits 1, no traceback
unless --debug; an empty model store says so instead of printing nothing."""

import os
import subprocess
import sys
from datetime import date
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


def test_a_damaged_warehouse_is_refused_before_any_write_with_the_repair(tmp_path):
    """Issue 26: a truncated DuckDB file. DuckDB's own checks refuse it when it opens; the command says
    which file, that it is damaged and how to rebuild it, in one line, and leaves the file as it was."""
    from tests._warehouse import make_events, write_landing

    day = date(2024, 3, 8)
    write_landing(make_events(day, 50, seed=1), tmp_path / "landing", day)
    assert _run(tmp_path, "ingest", "--date", str(day)).returncode == 0
    warehouse = tmp_path / "warehouse.duckdb"
    data = warehouse.read_bytes()
    warehouse.write_bytes(data[: len(data) // 2])  # a copy cut short, a full disk
    damaged = warehouse.read_bytes()

    failed = _run(tmp_path, "ingest", "--date", str(day))

    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith(f"ingest failed: warehouse {warehouse} is damaged (")
    assert "personaflow ingest --through" in line and "Traceback" not in failed.stderr
    assert warehouse.read_bytes() == damaged  # nothing written into it
