"""Benchmark: the whole Online Retail history built at once, then nights on top of it, on this machine.

1. `personaflow history online_retail.csv.gz` (import, every day validated, marts, segments, churn,
   Feast, a first model through the gate) as one child process: wall time and its own peak RSS, plus
   the time and peak memory of each stage as the command reports them. Target: under 10 minutes.
2. One nightly incremental day on top of it through Airflow (`personaflow run-dag`, `dag.test()`).
3. (`--backfill-days N`, default 7) the last N real days replayed through a running Airflow:
   `personaflow up`, `personaflow backfill --from .. --to .. --wait`, `personaflow down`.

Writes benchmarks/results/history.json (flat keys with units, the machine's cores, the data size).

    make bench-history                 # all three
    python benchmarks/history.py --backfill-days 0
    python benchmarks/history.py --generic-csv   # only: the same log as a shop's own generic CSV

`--generic-csv`: the log rewritten as a shop would export it (its own column names; a `C` invoice is a
return) and built with `personaflow history FILE --format csv --mapping ... --no-train`: rows read,
rows set aside per reason (personaflow/quality/row_faults.py), days quarantined whole, rows loaded
(keys `generic_csv_*`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "history.json"
SOURCE = ROOT.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
LAST_DAY = date(2011, 12, 9)


def cli(args: list[str], env: dict[str, str], capture: bool = False) -> tuple[float, float, str]:
    """Run `personaflow ARGS`; (seconds, this child's peak RSS in MB, its stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "personaflow.cli", *args], env=env, cwd=ROOT,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL, text=True,
    )  # fmt: skip
    out = proc.stdout.read() if capture and proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"`personaflow {' '.join(args)}` failed with exit {code}")
    return round(time.perf_counter() - started, 2), round(usage.ru_maxrss / 1024, 1), out


GENERIC_MAPPING = (
    "customer=user_id,sku=item_id,action=event_type,ts=event_ts,unit_price=price,qty=quantity,"
    "invoice=order_id,title=description,country=country"
)


def generic_csv(home: Path) -> dict[str, object]:
    """The log as a generic CSV export, through `personaflow history --format csv` (no training)."""
    import duckdb
    import pandas as pd

    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False, encoding="latin-1")
    export = pd.DataFrame({
        "invoice": raw["InvoiceNo"], "sku": raw["StockCode"], "title": raw["Description"],
        "qty": raw["Quantity"], "ts": pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M"),
        "unit_price": raw["UnitPrice"], "customer": raw["CustomerID"].str.replace(r"\.0$", "", regex=True),
        "country": raw["Country"],
        "action": raw["InvoiceNo"].str.startswith("C").map({True: "return", False: "purchase"}),
    })  # fmt: skip
    path = home / "shop_export.csv"
    export.to_csv(path, index=False)
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "PERSONAFLOW_SMTP_PORT": "1"}
    args = ["history", str(path), "--format", "csv", "--mapping", GENERIC_MAPPING, "--no-train"]
    seconds, peak, out = cli(args, env, capture=True)
    summary = json.loads(out[out.index("{"):])
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute("select count(*) from raw.events").fetchall()[0][0]
    out_keys: dict[str, object] = {
        "generic_csv_source_rows": len(export), "generic_csv_rows_read": summary["rows"],
        "generic_csv_rows_set_aside": summary.get("rows_set_aside", 0),
        "generic_csv_rows_loaded": int(loaded), "generic_csv_days": summary["days"],
        "generic_csv_days_quarantined": len(summary["failed_days"]),
        "generic_csv_customers": summary["customers"], "generic_csv_history_s": seconds,
        "generic_csv_history_peak_rss_mb": peak,
    }  # fmt: skip
    for reason, n in (summary.get("set_aside_reasons") or {}).items():
        out_keys[f"generic_csv_rows_set_aside_{reason}"] = n
    out_keys["generic_csv_rows_loaded_share"] = round(out_keys["generic_csv_rows_loaded"] / len(export), 4)
    return out_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backfill-days", type=int, default=7)
    parser.add_argument("--generic-csv", action="store_true", help="only the generic-CSV history run")
    args = parser.parse_args()
    if not SOURCE.is_file():
        raise SystemExit(f"{SOURCE} not found: the benchmark runs on the real Online Retail log")
    home = Path(tempfile.mkdtemp(prefix="personaflow-bench-history-"))
    if args.generic_csv:
        idle = os.getloadavg()[0] < 0.5
        result = {"cores": os.cpu_count(), "generic_csv_machine_idle": idle, **generic_csv(home)}
        print(json.dumps(result, indent=2))
        merge_results(RESULTS, result)
        return
    env = {
        **os.environ, "PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"),
        "AIRFLOW_HOME": str(home / "airflow"), "PERSONAFLOW_SMTP_PORT": "1",  # alerts to disk only
        "PERSONAFLOW_AIRFLOW_SCHEDULE": "false", "PERSONAFLOW_SERVE_PORT": "3917",
    }  # fmt: skip
    result: dict[str, object] = {
        "cores": os.cpu_count(), "machine": platform.machine(), "device": "cpu",
        "online_retail_source_lines": 541_909,
    }  # fmt: skip

    seconds, peak, out = cli(["history", str(SOURCE)], env, capture=True)
    summary = json.loads(out)
    result |= {
        "online_retail_history_total_s": seconds, "online_retail_history_peak_rss_mb": peak,
        "online_retail_rows": summary["rows"], "online_retail_days": summary["days"],
        "online_retail_customers": summary["customers"], "online_retail_products": summary["products"],
        "online_retail_failed_days": len(summary["failed_days"]),
        "online_retail_first_model_promoted": summary["production"] is not None,
    }  # fmt: skip
    for stage, cost in summary["stages"].items():
        result[f"online_retail_history_{stage}_s"] = cost["seconds"]
        result[f"online_retail_history_{stage}_peak_rss_mb"] = cost["peak_rss_mb"]
    print(f"history: {seconds:.0f}s, peak {peak:.0f} MB")

    seconds, peak, _ = cli(["run-dag", "--date", LAST_DAY.isoformat()], env)
    result |= {"online_retail_nightly_day_s": seconds, "online_retail_nightly_day_peak_rss_mb": peak}
    print(f"one nightly day through Airflow: {seconds:.0f}s")

    if args.backfill_days:
        first = LAST_DAY - timedelta(days=args.backfill_days - 1)
        cli(["up"], env)
        try:
            seconds, _, out = cli(
                ["backfill", "--from", first.isoformat(), "--to", LAST_DAY.isoformat(), "--rerun", "--wait"],
                env, capture=True,
            )  # fmt: skip
        finally:
            cli(["down"], env)
        states = json.loads(out[out.index("{"):])
        succeeded = sum(v == "success" for v in states.values())
        result |= {
            "online_retail_backfill_days": args.backfill_days, "online_retail_backfill_s": seconds,
            "online_retail_backfill_s_per_day": round(seconds / args.backfill_days, 1),
            "online_retail_backfill_runs_succeeded": succeeded,
            "online_retail_backfill_all_success": succeeded == args.backfill_days,
        }  # fmt: skip
        print(f"backfill of {args.backfill_days} days through Airflow: {seconds:.0f}s {states}")
    merge_results(RESULTS, result)


if __name__ == "__main__":
    main()
