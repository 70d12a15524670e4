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
    """Issue 26: a truncated DuckDB file. DuckDB's own checks refuse it (at open, or at its first read of a
    missing block, before this load writes anything); the command says
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


def _serve(home: Path, port: int) -> tuple[int | None, str, float]:
    """`personaflow serve` with stderr to a file; (exit code, or None if still running after 30 s;
    stderr; seconds). Whatever it started (bentoml runs in its own process group) is killed after,
    so a failing run leaks no server."""
    import contextlib
    import time

    import psutil

    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"),
           "PERSONAFLOW_SERVE_HOST": "127.0.0.1", "PERSONAFLOW_SERVE_PORT": str(port)}  # fmt: skip
    env.pop("PERSONAFLOW_PRODUCTION_POINTER", None)  # the default: $PERSONAFLOW_HOME/registry/production.json
    err_file = home / f"serve-{port}.err"
    started = time.monotonic()
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from personaflow.cli import app; app()", "serve"],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
        # bentoml's arbiter leaves the process tree: find what this run started by its environment
        ours = set(psutil.Process(proc.pid).children(recursive=True))
        for other in psutil.process_iter():
            try:
                if other.environ().get("PERSONAFLOW_PRODUCTION_POINTER", "").startswith(str(home)):
                    ours.add(other)
            except psutil.Error:
                pass
        for child in ours:
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.kill()
        proc.wait()
    return code, err_file.read_text(), time.monotonic() - started


def test_serve_without_a_model_in_production_exits_1_with_one_line_naming_the_fix(tmp_path):
    import json

    from personaflow.ops.demo import free_port
    from personaflow.serving.process import port_in_use

    pointer = tmp_path / "registry" / "production.json"
    for case in ("no pointer", "a pointer to a model the store does not have"):
        if case != "no pointer":
            pointer.parent.mkdir(parents=True, exist_ok=True)
            pointer.write_text(json.dumps({"tag": "personaflow_recommender:gone", "history": []}))
        port = free_port()
        code, err, seconds = _serve(tmp_path, port)
        assert code == 1, f"{case}: exit {code} after {seconds:.0f}s; stderr: {err[-2000:]}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{case}: {lines}"
        assert lines[0].startswith("serve: no model in production"), lines[0]
        assert "personaflow history" in lines[0] and "personaflow train" in lines[0], lines[0]
        assert seconds < 30 and not port_in_use("127.0.0.1", port), case


def test_a_misspelt_segment_is_an_error_listing_the_valid_names(tmp_path):
    """It used to answer an audience of 0 customers, exit 0."""
    import json

    from tests.unit.test_audiences import PROFILE, _marts

    _marts(tmp_path / "warehouse.duckdb", "2011-12-08", PROFILE)  # $PERSONAFLOW_HOME/warehouse.duckdb
    right = _run(tmp_path, "audience", "--rfm-segment", "Champions")
    assert right.returncode == 0 and json.loads(right.stdout)["size"] == 2, right.stderr
    failed = _run(tmp_path, "audience", "--rfm-segment", "Loyal customers")
    assert failed.returncode == 1 and failed.stdout == ""
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("personaflow audience failed: ")
    assert "rfm_segments 'Loyal customers' is not a segment name" in lines[0]
    assert "did you mean 'Loyal Customers'?" in lines[0] and "Champions, Loyal Customers, " in lines[0]
