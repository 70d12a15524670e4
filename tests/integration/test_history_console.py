"""Issue 27: `history` printed 363 stderr lines, 28 of them progress (the rest dbt's log, Feast's coloured
lines, epoch lines). Now the terminal shows the stages, a bar for the long one and our warnings; the
tools' output goes to the log file the summary names; `--verbose` shows it on the terminal again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from personaflow.core.settings import REPO_ROOT

MAPPING = "customer=user_id,sku=item_id,action=event_type,ts=event_ts,amount=price"


def history(tmp_path: Path, name: str, *extra: str) -> tuple[dict, str]:
    rng = np.random.default_rng(11)
    n = 300
    frame = pd.DataFrame({
        "customer": [f"c{i}" for i in rng.integers(0, 30, n)],
        "sku": [f"p{i}" for i in rng.integers(0, 12, n)],
        "action": "purchase",
        "ts": [f"2024-05-{1 + i % 6:02d} {8 + i % 11}:{i % 60:02d}:00" for i in range(n)],
        "amount": rng.uniform(1, 20, n).round(2),
    })  # fmt: skip
    frame.loc[3, "amount"] = 0.0  # one faulty row: its warning must still reach the terminal
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    home = tmp_path / name
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
           "PERSONAFLOW_SMTP_PORT": "1"}  # fmt: skip
    args = [sys.executable, "-m", "personaflow.cli", "history", str(path), "--format", "csv",
            "--mapping", MAPPING, "--no-train", *extra]  # fmt: skip
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def test_the_console_shows_stages_and_the_log_file_holds_the_tools(tmp_path):
    summary, stderr = history(tmp_path, "quiet")
    lines = stderr.splitlines()
    assert all(line.startswith("[") for line in lines), lines  # ours only: [history] / [personaflow...]
    for stage in ("import", "validate_history", "transform", "validate_marts", "features"):
        assert any(line.startswith(f"[history] {stage}: done in") for line in lines), stage
    assert any("faulty row(s) set aside" in line for line in lines)  # a warning stays on the terminal
    assert len(lines) <= 30, lines
    assert "\x1b[" not in stderr and "Materializing" not in stderr  # no Feast colours, no tool logs
    log = Path(summary["log"]).read_text(errors="replace")
    assert "Materializing" in log and "dbt" in log.lower()  # the tools' output is kept, in the file
    assert Path(summary["log"]).stat().st_mode & 0o077 == 0


def test_verbose_shows_the_tools_output_on_the_terminal(tmp_path):
    summary, stderr = history(tmp_path, "verbose", "--verbose")
    assert summary["log"] is None
    assert "Materializing" in stderr and len(stderr.splitlines()) > 30
