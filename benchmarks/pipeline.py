"""Benchmark: wall time and peak memory of every nightly stage, at demo size and at ~1 M events.

Each stage runs as its own `personaflow` CLI process (as a user or a task would run it), so the
figures include that process's imports; peak RSS is the child's own high-water mark (wait4).
Writes benchmarks/results/pipeline.json with flat keys: <size>_<stage>_s and <size>_<stage>_peak_rss_mb.

    make bench-pipeline            # both sizes
    python benchmarks/pipeline.py --sizes demo
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import duckdb
from _common import merge_results, run_measured

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
SIZES = {
    "demo": {"users": 2000, "items": 500, "days": 60},
    "1m": {"users": 22000, "items": 3000, "days": 60},
}
START = date(2026, 9, 1)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one CLI command; return (seconds, peak RSS in MB) of that child alone."""
    return run_measured([sys.executable, "-m", "personaflow.cli", *args], env=env, cwd=ROOT)


def run_size(name: str, users: int, items: int, days: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"personaflow-bench-{name}-"))
    env = {
        **os.environ,
        "PERSONAFLOW_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_SMTP_PORT": "1",
    }  # no mail server: alerts are written to disk only
    last = START + timedelta(days=days - 1)
    day = ["--date", last.isoformat()]
    steps = [
        ("generate", ["generate", "--users", str(users), "--items", str(items), "--days", str(days)]),
        ("ingest_history", ["ingest", "--through", (last - timedelta(days=1)).isoformat()]),
        ("ingest", ["ingest", *day]),
        ("validate_batch", ["validate", *day]),
        ("transform", ["transform", *day]),
        ("validate_marts", ["validate", "--marts", *day]),
        ("features", ["features", *day]),
        ("train", ["train"]),
    ]
    out: dict[str, float] = {}
    for stage, args in steps:
        seconds, rss = timed(args, env)
        out[f"{name}_{stage}_s"] = seconds
        out[f"{name}_{stage}_peak_rss_mb"] = rss
        print(f"{name:5s} {stage:15s} {seconds:8.2f} s {rss:9.1f} MB", flush=True)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        out[f"{name}_events"] = con.execute("select count(*) from raw.events").fetchone()[0]
        out[f"{name}_users"] = users
        out[f"{name}_items"] = items
        out[f"{name}_days"] = days
    out[f"{name}_total_s"] = round(
        sum(v for k, v in out.items() if k.endswith("_s") and k.startswith(name)), 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for name in args.sizes:
        result.update(run_size(name, **SIZES[name]))
    merge_results(RESULTS, result)


if __name__ == "__main__":
    main()
