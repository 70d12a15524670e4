"""Issue 26: 429 of 437 files under the home were 0644 in 0755 folders, the warehouse and the landed
events included. Every file the CLI and the tools it drives (GX, DuckDB) create under the home is the
owner's only: files without group/other bits, folders 0700."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from personaflow.core.settings import REPO_ROOT


def cli(home: Path, *args: str) -> str:
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "PERSONAFLOW_SMTP_PORT": "1",
           "PERSONAFLOW_FEATURES_DIR": str(home / "features")}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "personaflow.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          umask=0o022)  # a usual shell's, whatever this test process has  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_everything_under_the_home_is_the_owners_only(tmp_path):
    home = tmp_path / "home"
    made = json.loads(cli(home, "generate", "--users", "60", "--items", "20", "--days", "3"))
    cli(home, "ingest", "--date", made["first_day"])
    cli(home, "validate", "--date", made["first_day"])
    paths = [home, *home.rglob("*")]
    assert len(paths) > 10 and (home / "warehouse.duckdb").exists()
    loose = [f"{p.relative_to(tmp_path)} {stat.filemode(p.stat().st_mode)}" for p in paths
             if not p.is_symlink() and p.stat().st_mode & 0o077]  # fmt: skip
    assert not loose, loose[:20]
