"""Benchmark: dbt transform (+ validation) time and peak memory, nightly incremental day vs full rebuild.

For each size a synthetic shop is generated (ingest.generate), landed as daily CSVs and loaded into
a fresh raw layer (ingest.load): DuckDB here; `run_engine` takes any warehouse location, a DuckDB path
or a postgresql:// URL (benchmarks/scale.py runs both). Then, each step in its own child process so
its peak RSS (os.wait4) is its own:
  history   `dbt build` as of the day before the last (the first build: every model from scratch)
  day       load + validate the last day's batch, then `dbt build` as of that day (the nightly run:
            incremental models rewrite that day only) and validate the marts
  full      `dbt build --full-refresh` as of the last day (every model from all of raw.events)
Writes benchmarks/results/transform.json with flat keys: <step>_<size>_<what>_s / _peak_rss_mb.
<step>_<size>_transform_s is the whole child process (imports, dbt parse, build, tests);
_dbt_only_s is run_dbt's call, _dbt_exec_s dbt's own build-and-test clock.

    make bench-transform                       # 1m and 10m
    python benchmarks/transform.py --sizes 1m
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

from _common import merge_results, run_measured

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "transform.json"
PROJECT = ROOT / "dbt_project"
START = date(2026, 9, 1)
SIZES = {
    "1m": {"users": 22_000, "items": 3_000, "days": 60},
    "10m": {"users": 220_000, "items": 20_000, "days": 60},
}
# ---- steps, each run in a child process: `python benchmarks/transform.py --step NAME ARGS_JSON` ----


def step_generate(landing: str, users: int, items: int, days: int) -> dict:
    from personaflow.ingest.generate import generate_shop, write_shop

    shop = generate_shop(users=users, items=items, days=days, start=START)
    write_shop(shop, Path(landing))
    return {"events": len(shop.events)}


def where(warehouse: str) -> Path | str:
    """A step's warehouse argument as personaflow.core.warehouse takes it: a postgresql:// URL or a DuckDB
    path."""
    from personaflow.core.warehouse import is_postgres

    return warehouse if is_postgres(warehouse) else Path(warehouse)


def step_load(warehouse: str, landing: str, through: str) -> dict:
    from personaflow.ingest.load import ensure_raw_layer, load_dimensions, load_pending

    ensure_raw_layer(where(warehouse))
    load_dimensions(where(warehouse), Path(landing))
    loaded = load_pending(where(warehouse), Path(landing), date.fromisoformat(through))
    return {"batches": len(loaded), "rows": sum(int(b["rows"]) for b in loaded)}


def step_transform(warehouse: str, state: str, as_of: str, full_refresh: bool) -> dict:
    from personaflow.pipeline.transform import run_dbt

    summary = run_dbt(
        where(warehouse), date.fromisoformat(as_of), PROJECT, Path(state), full_refresh=full_refresh
    )
    # dbt's own clock: building and testing the nodes, without imports and parsing (a new as_of
    # var makes dbt re-parse the whole project, which a nightly run pays every night)
    run_results = json.loads((Path(state) / "target" / "run_results.json").read_text())
    models = [r for r in run_results["results"] if r["unique_id"].startswith("model.")]
    slowest = sorted(models, key=lambda r: -r["execution_time"])[:3]
    return {
        "dbt_s": summary["seconds"],
        "dbt_exec_s": round(run_results["elapsed_time"], 2),
        # where dbt's time goes: the slowest models, by their own execution time
        "slowest_models": {r["unique_id"].rsplit(".", 1)[-1]: round(r["execution_time"], 2) for r in slowest},
        "models": summary["models"],
        "tests": summary["tests"],
    }


def step_validate(warehouse: str, work: str, day: str, what: str) -> dict:
    from personaflow.quality.validate import SmtpConfig, validate_batch, validate_marts

    # port 1: no mail server; a failure would still raise (and keep the alert as .eml)
    smtp = SmtpConfig(host="127.0.0.1", port=1, sender="bench@localhost", recipients=["bench@localhost"])
    reports, quarantine = Path(work) / "reports", Path(work) / "quarantine"
    if what == "batch":
        validate_batch(where(warehouse), date.fromisoformat(day), quarantine, reports, smtp)
    else:
        validate_marts(where(warehouse), date.fromisoformat(day), reports, smtp)
    return {}


STEPS = {
    "generate": step_generate,
    "load": step_load,
    "transform": step_transform,
    "validate": step_validate,
}


# ---- the parent ----


def timed(step: str, **kwargs) -> tuple[float, float, dict]:
    """Run one step in a child; return (seconds, peak RSS in MB of that child alone, its result)."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    seconds, peak_mb = run_measured(
        [sys.executable, __file__, "--step", step, json.dumps(kwargs), "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result = json.loads(out.read_text())
    out.unlink()
    return seconds, peak_mb, result


def validation_available() -> bool:
    try:
        from personaflow.quality.validate import SmtpConfig, validate_batch, validate_marts  # noqa: F401
    except ImportError as exc:
        print(f"validation skipped: quality.validate not importable ({exc})")
        return False
    return True


def run_size(name: str, users: int, items: int, days: int, validate: bool, keep: bool) -> dict:
    """One size on the embedded DuckDB warehouse: generate, then the night and the rebuild."""
    work = Path(tempfile.mkdtemp(prefix=f"personaflow-bench-transform-{name}-"))
    try:
        out = generate(name, work / "landing", users, items, days)
        out.update(run_engine(name, work, work / "landing", work / "warehouse.duckdb", days, validate))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    return out


def record(out: dict, key: str, seconds: float, rss: float) -> None:
    out[f"{key}_s"], out[f"{key}_peak_rss_mb"] = seconds, rss
    print(f"{key:40s} {seconds:8.2f} s {rss:9.1f} MB", flush=True)


def generate(name: str, landing: Path, users: int, items: int, days: int) -> dict:
    """The synthetic shop of one size as daily CSVs in `landing` (shared by every engine measured)."""
    out: dict[str, object] = {}
    seconds, rss, gen = timed("generate", landing=str(landing), users=users, items=items, days=days)
    record(out, f"generate_{name}", seconds, rss)
    out[f"{name}_generated_events"] = gen["events"]
    out[f"{name}_users"], out[f"{name}_items"], out[f"{name}_days"] = users, items, days
    return out


def run_engine(
    name: str, work: Path, landing: Path, warehouse: Path | str, days: int, validate: bool,
    out: dict | None = None,
) -> dict:
    """History load + first build, the last day's night (load, validate, incremental build, validate
    marts) and a full rebuild, on `warehouse`: a DuckDB file or a postgresql:// URL (an empty database).
    Keys are named `<step>_<name>_...`; dbt's three slowest models as `<step>_<name>_model_<model>_s`.
    Filled into `out` step by step when given, so a run stopped midway keeps the steps it measured."""
    from personaflow.core import warehouse as wh

    state = work / f"dbt-{name}"
    last = START + timedelta(days=days - 1)
    before = last - timedelta(days=1)
    out = {} if out is None else out
    # the machine may be shared: the 1-minute load average says how much (2.0 = both cores busy)
    out[f"{name}_loadavg_at_start"] = round(os.getloadavg()[0], 2)
    at = {"warehouse": str(warehouse)}
    gx = str(work / f"gx-{name}")  # GX's context per engine: its data source names the engine
    seconds, rss, _ = timed("load", **at, landing=str(landing), through=before.isoformat())
    record(out, f"load_history_{name}", seconds, rss)
    seconds, rss, _ = timed("transform", **at, state=str(state), as_of=before.isoformat(),
                            full_refresh=False)  # fmt: skip
    record(out, f"history_{name}_transform", seconds, rss)

    seconds, rss, _ = timed("load", **at, landing=str(landing), through=str(last))
    record(out, f"day_{name}_load", seconds, rss)
    if validate:
        seconds, rss, _ = timed("validate", **at, work=gx, day=last.isoformat(), what="batch")
        record(out, f"day_{name}_validate_batch", seconds, rss)
    seconds, rss, res = timed("transform", **at, state=str(state), as_of=last.isoformat(), full_refresh=False)
    record(out, f"day_{name}_transform", seconds, rss)
    out[f"day_{name}_dbt_only_s"], out[f"day_{name}_dbt_exec_s"] = res["dbt_s"], res["dbt_exec_s"]
    out.update({f"day_{name}_model_{m}_s": s for m, s in res["slowest_models"].items()})
    if validate:
        seconds, rss, _ = timed("validate", **at, work=gx, day=last.isoformat(), what="marts")
        record(out, f"day_{name}_validate_marts", seconds, rss)

    seconds, rss, res = timed("transform", **at, state=str(state), as_of=last.isoformat(), full_refresh=True)
    record(out, f"full_{name}_transform", seconds, rss)
    out[f"full_{name}_dbt_only_s"], out[f"full_{name}_dbt_exec_s"] = res["dbt_s"], res["dbt_exec_s"]
    out.update({f"full_{name}_model_{m}_s": s for m, s in res["slowest_models"].items()})
    out[f"{name}_models"], out[f"{name}_data_tests"] = res["models"], res["tests"]

    with wh.connect(warehouse, read_only=True) as con:
        out[f"{name}_events"] = con.execute("select count(*) from raw.events").fetchone()[0]
        out[f"{name}_day_events"] = con.execute(
            "select count(*) from raw.events where batch_date = $1", [last]
        ).fetchone()[0]
        for mart in ("interactions", "sessions", "user_features", "item_features", "co_purchase"):
            out[f"{name}_{mart}_rows"] = con.execute(f"select count(*) from marts.{mart}").fetchone()[0]
        if con.engine == "postgres":
            size = con.execute("select pg_database_size(current_database())").fetchone()[0]
        else:
            size = Path(warehouse).stat().st_size
    out[f"{name}_warehouse_mb"] = round(size / 2**20, 1)
    out[f"{name}_loadavg_at_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--keep", action="store_true", help="keep the generated warehouse and landing files")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.step:  # a child: run one step, write its result
        result = STEPS[args.step](**json.loads(rest[0]))
        Path(args.out).write_text(json.dumps(result))
        return

    validate = validation_available()
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "dbt_threads": 2,
        "validated": validate,
    }
    for name in args.sizes:
        result.update(run_size(name, **SIZES[name], validate=validate, keep=args.keep))
    merge_results(RESULTS, result)


if __name__ == "__main__":
    main()
