"""Benchmark: one whole night, stage by stage, on synthetic shops of 10k, 100k and 1M customers.

Each shop has a tenth as many items as customers and about 10 events per customer over `--days` days
(`personaflow generate --sessions-per-day`). The history before the last day is loaded and built
first (ingest + transform + features of the day before: not timed); then the night of the last day
runs through the CLI, each stage a child process of its own:

    ingest -> validate -> transform -> validate --marts -> segments -> churn -> features -> train -> promote

and each stage's wall seconds, CPU seconds (user + system) and peak RSS come from that child's rusage
(os.wait4: its own and its waited-for children's). A stage that fails or runs past `--stage-timeout`
is recorded as such (`<stage>_status`) and the night goes on where it can (promote needs train).
Train runs as configured by Settings (PERSONAFLOW_* variables; `--train-env KEY=VALUE` sets them for
the train and promote children, recorded in `train_config`): no special code path.

With every size done, the cost exponent of each stage is fitted (log CPU s against log customers,
least squares over the sizes that completed): `<stage>_cpu_exponent`.

The features series (`--features-series 100000`): after 0, 30 and 90 earlier nights, the features
stage's time and peak RSS for the last day. The earlier nights are the current marts' snapshots
stamped on the days before (written at once, one row group a night, as the stage writes them), the
last of them a real features run, so the measured night is a steady-state one.

    make bench-scale-night
    python benchmarks/scale_night.py --sizes 10000 100000 --stages ingest validate transform
    python benchmarks/scale_night.py --sizes 100000 --features-series 100000 --series-only
    python benchmarks/scale_night.py --sizes 1000000 --home KEPT_HOME --stages train promote

`--home` runs the given stages again on a shop kept by an earlier run (`--keep`), e.g. after a change
to one stage; its keys replace that stage's, and the run's own metadata goes to `n<size>_rerun_*`.

Writes benchmarks/results/scale_night.json (keys merged over earlier runs: n<customers>_<stage>_*).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale_night.json"
BIN = Path(sys.executable).parent
START = date(2026, 9, 1)
STAGES = ("ingest", "validate", "transform", "validate_marts", "segments", "churn", "features", "train",
          "promote")  # fmt: skip
EVENTS_PER_CUSTOMER_SESSIONS = 0.033  # sessions per active day giving ~10 events a customer (measured)


def run_child(cmd: list[str], env: dict[str, str], timeout: float, log: Path) -> dict[str, object]:
    """Run one stage as a child in its own process group; its wall s, CPU s, peak RSS and status."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        status = "ok"
        while True:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this run started, nothing else
                pid, code, usage = os.wait4(proc.pid, 0)
                status = f"timeout after {timeout:.0f} s"
                break
            time.sleep(0.2)
    exit_code = os.waitstatus_to_exitcode(code)
    if status == "ok" and exit_code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        status = f"failed (exit {exit_code}): {tail[0][:200]}"
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "status": status,
    }


def last_json(log: Path) -> dict | None:
    """The CLI prints its result as JSON last: the last line that parses as an object."""
    text = log.read_text(errors="replace")
    start = text.rfind("\n{")
    for candidate in (text[start + 1 :] if start >= 0 else "", text):
        try:
            value = json.loads(candidate)
            return value if isinstance(value, dict) else None
        except json.JSONDecodeError:
            continue
    return None


def stage_commands(day: str) -> dict[str, list[str]]:
    pf = str(BIN / "personaflow")
    return {
        "ingest": [pf, "ingest", "--date", day],
        "validate": [pf, "validate", "--date", day],
        "transform": [pf, "transform", "--date", day],
        "validate_marts": [pf, "validate", "--marts", "--date", day],
        "segments": [pf, "segments", "--date", day],
        "churn": [pf, "churn", "--date", day],
        "features": [pf, "features", "--date", day],
        "train": [pf, "train"],
    }


def night(size: int, args: argparse.Namespace, train_env: dict[str, str]) -> dict[str, object]:
    """Generate the shop, build the history before its last day, time the last day's night."""
    reuse = args.home is not None  # a shop kept by an earlier run (--keep): its stages run again
    home = args.home or Path(tempfile.mkdtemp(prefix=f"personaflow-scale-night-{size}-", dir=args.work))
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    logs = home / ("logs-rerun" if reuse else "logs")
    logs.mkdir(exist_ok=reuse)
    pf = str(BIN / "personaflow")
    last = START + timedelta(days=args.days - 1)
    before = last - timedelta(days=1)
    out: dict[str, object] = {}
    p = f"n{size}"
    if reuse:
        return stages(size, args, train_env, env, logs, last)
    gen = run_child(
        [pf, "generate", "--users", str(size), "--items", str(max(size // 10, 10)), "--days", str(args.days),
         "--seed", "11", "--start", START.isoformat(), "--sessions-per-day", str(args.sessions_per_day)],
        env, args.stage_timeout, logs / "generate.log",
    )  # fmt: skip
    shop = last_json(logs / "generate.log") or {}
    out.update({f"{p}_generate_{k}": v for k, v in gen.items()})
    out.update({f"{p}_items": max(size // 10, 10), f"{p}_events": shop.get("events"), f"{p}_days": args.days})
    print(f"[{size}] generate {gen} events={shop.get('events')}", flush=True)
    # The history before the night (not timed): every earlier day loaded and built, one features run.
    prepare = [
        ("prepare_ingest", [pf, "ingest", "--through", before.isoformat()]),
        ("prepare_transform", [pf, "transform", "--date", before.isoformat()]),
        ("prepare_features", [pf, "features", "--date", before.isoformat()]),
    ]
    if not {"features", "train", "promote"} & set(args.stages):
        prepare = prepare[:2]  # no Feast night before one that does not read Feast
    for name, cmd in prepare:
        prep = run_child(cmd, env, args.stage_timeout, logs / f"{name}.log")
        out[f"{p}_{name}_wall_s"], out[f"{p}_{name}_status"] = prep["wall_s"], prep["status"]
        print(f"[{size}] {name} {prep}", flush=True)
    out.update(stages(size, args, train_env, env, logs, last))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return out


def stages(
    size: int,
    args: argparse.Namespace,
    train_env: dict[str, str],
    env: dict[str, str],
    logs: Path,
    last: date,
) -> dict[str, object]:
    """The night of the last day, stage by stage (`args.stages`), on a prepared shop."""
    pf = str(BIN / "personaflow")
    p = f"n{size}"
    out: dict[str, object] = {}
    commands = stage_commands(last.isoformat())
    tag = None
    for stage in STAGES:
        if stage not in args.stages:
            continue
        if stage == "promote":
            if tag is None:
                out[f"{p}_promote_status"] = "skipped: no candidate (train did not finish)"
                continue
            cmd, stage_env = [pf, "promote", tag], {**env, **train_env}
        else:
            cmd, stage_env = commands[stage], {**env, **(train_env if stage == "train" else {})}
        timeout = args.train_timeout if stage == "train" else args.stage_timeout
        result = run_child(cmd, stage_env, timeout, logs / f"{stage}.log")
        out.update({f"{p}_{stage}_{k}": v for k, v in result.items()})
        print(f"[{size}] {stage} {result}", flush=True)
        if stage == "train" and result["status"] == "ok":
            trained = last_json(logs / "train.log") or {}
            metrics = trained.get("metrics", {})
            tag = trained.get("tag")
            out[f"{p}_served_model"] = (trained.get("params") or {}).get("kind") or metrics.get("model")
            out[f"{p}_served_ndcg_at_10"] = metrics.get("ndcg_at_10")
            out[f"{p}_best_baseline"] = metrics.get("gate_best_baseline")
            out[f"{p}_best_baseline_ndcg_at_10"] = metrics.get("gate_best_baseline_ndcg_at_10")
            out.update(choice_keys(p, trained.get("choice")))
        if stage == "promote" and result["status"] == "ok":
            promoted = last_json(logs / "promote.log") or {}
            out[f"{p}_promoted"] = promoted.get("promoted")
    return out


def choice_keys(prefix: str, choice: dict | None) -> dict[str, object]:
    """The recipe choice of a night's train, flat: what it chose and each option's status, validation
    NDCG@10, fit CPU seconds and CPU estimate (where a budget refused or skipped it, the note says why)."""
    if not choice:
        return {}
    out: dict[str, object] = {
        f"{prefix}_train_chosen": choice.get("chosen"),
        f"{prefix}_train_reason": choice.get("reason"),
    }
    for name, row in choice.get("options", {}).items():
        key = f"{prefix}_train_option_{name.replace('+', '_')}"
        for field in ("status", "val_ndcg_at_10", "fit_cpu_s", "serve_fit_cpu_s", "estimate_cpu_s", "note"):
            if row.get(field) is not None:
                out[f"{key}_{field}"] = row[field]
    return out


def seed_nights(features_dir: Path, as_of: date, nights: int) -> None:
    """`nights` earlier snapshots of the current marts, stamped on the days before `as_of`, written at
    once (one row group a night, as append_snapshot leaves them)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from personaflow.core import warehouse as wh
    from personaflow.core.feature_store import USER_COLUMNS
    from personaflow.core.settings import load
    from personaflow.pipeline.features import (
        ITEM_COLUMNS,
        ITEM_RENAMES,
        as_typed,
        purchased_items,
        read_marts,
        snapshot,
    )  # fmt: skip

    with wh.connect(wh.location(load()), read_only=True) as con:
        users, items, purchases = read_marts(con)
    days = [as_of - timedelta(days=k) for k in range(nights, 0, -1)]
    frames = {
        "user_features": lambda d, t: snapshot(users, USER_COLUMNS, d, t),
        "item_features": lambda d, t: snapshot(items, ITEM_COLUMNS, d, t).rename(columns=ITEM_RENAMES),
        "user_purchases": lambda d, t: purchased_items(purchases, d, t),
    }
    features_dir.mkdir(parents=True, exist_ok=True)
    for view, make in frames.items():
        path = features_dir / f"{view}.parquet"
        writer = None
        for d in days:
            table = as_typed(make(d, pd.Timestamp(d).to_pydatetime()), view)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=max(len(table), 1))
        if writer is not None:
            writer.close()


def features_series(size: int, args: argparse.Namespace) -> dict[str, object]:
    """The features stage of the last day after 0, 30 and 90 earlier nights, on one shop."""
    prepared = args.series_home is not None  # a home built by an earlier series run (--keep)
    prefix = f"personaflow-features-series-{size}-"
    home = args.series_home or Path(tempfile.mkdtemp(prefix=prefix, dir=args.work))
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    pf = str(BIN / "personaflow")
    last = START + timedelta(days=args.days - 1)
    out: dict[str, object] = {}
    for name, cmd in () if prepared else (
        ("generate", [pf, "generate", "--users", str(size), "--items", str(max(size // 10, 10)), "--days",
                      str(args.days), "--seed", "11", "--start", START.isoformat(), "--sessions-per-day",
                      str(args.sessions_per_day)]),
        ("ingest", [pf, "ingest", "--through", last.isoformat()]),
        ("transform", [pf, "transform", "--date", last.isoformat()]),
    ):  # fmt: skip
        prep = run_child(cmd, env, args.stage_timeout, logs / f"{name}.log")
        print(f"[series {size}] {name} {prep}", flush=True)
        if prep["status"] != "ok":
            return {f"features_series_n{size}_status": f"{name}: {prep['status']}"}
    features_dir = home / "features"
    for earlier in (0, 30, 90):
        shutil.rmtree(features_dir, ignore_errors=True)
        if earlier:
            os.environ["PERSONAFLOW_HOME"] = str(home)  # this process reads the marts for the seeds
            seed_nights(features_dir, last - timedelta(days=1), earlier - 1)
            prep = run_child([pf, "features", "--date", (last - timedelta(days=1)).isoformat()], env,
                             args.stage_timeout, logs / f"features_before_{earlier}.log")  # fmt: skip
            print(f"[series {size}] night before, {earlier} earlier {prep}", flush=True)
        result = run_child([pf, "features", "--date", last.isoformat()], env, args.stage_timeout,
                           logs / f"features_{earlier}.log")  # fmt: skip
        print(f"[series {size}] features after {earlier} earlier nights {result}", flush=True)
        out.update({f"features_series_n{size}_after_{earlier}_{k}": v for k, v in result.items()})
    for key in ("wall_s", "cpu_s", "peak_rss_mb"):
        values = [out.get(f"features_series_n{size}_after_{e}_{key}") for e in (0, 30, 90)]
        if all(isinstance(v, int | float) and v > 0 for v in values):
            out[f"features_series_n{size}_{key}_max_over_min"] = round(max(values) / min(values), 3)
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return out


def exponents(result: dict[str, object], sizes: list[int]) -> dict[str, object]:
    """Least-squares slope of log CPU s on log customers per stage, over the sizes where it ran ok."""
    out: dict[str, object] = {}
    for stage in ("generate", *STAGES):
        points = [
            (math.log(n), math.log(result[f"n{n}_{stage}_cpu_s"]))
            for n in sizes
            if result.get(f"n{n}_{stage}_status") == "ok" and (result.get(f"n{n}_{stage}_cpu_s") or 0) > 0
        ]
        if len(points) >= 2:
            mx = sum(x for x, _ in points) / len(points)
            my = sum(y for _, y in points) / len(points)
            slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
            out[f"{stage}_cpu_exponent"] = round(slope, 3)
            out[f"{stage}_cpu_exponent_sizes"] = ",".join(str(round(math.exp(x))) for x, _ in points)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--sessions-per-day", type=float, default=EVENTS_PER_CUSTOMER_SESSIONS)
    parser.add_argument("--stage-timeout", type=float, default=1800.0)
    parser.add_argument("--train-timeout", type=float, default=1800.0)
    parser.add_argument("--train-env", nargs="*", default=[], help="KEY=VALUE Settings for train and promote")
    parser.add_argument("--features-series", type=int, default=0, help="customers of the features series")
    parser.add_argument("--series-only", action="store_true")
    parser.add_argument("--series-home", type=Path, default=None, help="reuse a kept series shop (--keep)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the shops (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep each shop's folder")
    parser.add_argument(
        "--home", type=Path, default=None, help="a shop kept by --keep (one size): run --stages again on it"
    )
    args = parser.parse_args()
    if args.home is not None and len(args.sizes) != 1:
        parser.error("--home reruns one shop: give its one size with --sizes")
    train_env = dict(kv.split("=", 1) for kv in args.train_env)
    load = os.getloadavg()[0]
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "machine_idle": load < 0.5 * (os.cpu_count() or 1),
        "load_avg_1min_at_start": round(load, 2),
        "sizes": ",".join(str(n) for n in args.sizes),
        "stages": ",".join(args.stages),
        "events_per_customer_target": 10,
        "train_config": ",".join(f"{k}={v}" for k, v in train_env.items()) or "Settings defaults",
        "stage_timeout_s": args.stage_timeout,
        "train_timeout_s": args.train_timeout,
    }
    for size in [] if args.series_only else args.sizes:  # what this run was, kept per size
        for key in ("machine_idle", "load_avg_1min_at_start", "stages", "train_config"):
            # a rerun on a kept shop keeps the first run's keys and adds its own
            result[f"n{size}_{'rerun_' if args.home else ''}{key}"] = result[key]
    if args.series_only:  # the ladder's keys stay those of its own run
        result = {f"features_series_{k}": v for k, v in result.items() if k in ("cores", "machine_idle",
                  "load_avg_1min_at_start")}  # fmt: skip
    else:
        for size in args.sizes:
            result.update(night(size, args, train_env))
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        merged = {**previous, **result}
        done = sorted({int(k.split("_")[0][1:]) for k in merged if k.startswith("n") and k.endswith("_cpu_s")
                       and k.split("_")[0][1:].isdigit()})  # fmt: skip
        result.update(exponents(merged, done))
        result["sizes"] = ",".join(str(n) for n in done)  # every size in the file, this run's or earlier
    if args.features_series:
        result.update(features_series(args.features_series, args))
    end = "features_series_load_avg_1min_at_end" if args.series_only else "load_avg_1min_at_end"
    result[end] = round(os.getloadavg()[0], 2)
    # a whole night of a size replaces that size's rerun keys: they described a train rerun of an older shop
    fresh = () if args.series_only or args.home else tuple(f"n{size}_rerun_" for size in args.sizes)
    merge_results(RESULTS, result, replacing=fresh)


if __name__ == "__main__":
    main()
