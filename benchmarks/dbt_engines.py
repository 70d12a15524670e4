"""Benchmark: the dbt full rebuild on DuckDB (the embedded default) vs PostgreSQL, same raw rows.

The real Online Retail export is imported and loaded into a fresh DuckDB raw layer (the history path's
import stage), raw.* is copied into a throwaway local PostgreSQL (personaflow.ops.local_servers, fsync off
like the test clusters) through personaflow.core.warehouse, and `dbt build --full-refresh` as of the newest
event's day runs on each (models and every data test), then a nightly `dbt build` of that day (the
incremental models rewrite it only). Writes benchmarks/results/dbt_engines.json.

    python benchmarks/dbt_engines.py [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "dbt_engines.json"
DATA = Path(
    os.environ.get("PERSONAFLOW_ONLINE_RETAIL", "/work/shared/data/online-retail/online_retail.csv.gz")
)
RAW_TABLES = ("events", "users", "items", "batches", "batch_validations")


def copy_raw(duck: Path, pg_url: str) -> dict[str, int]:
    from personaflow.core import warehouse as wh

    counts = {}
    with wh.connect(duck, read_only=True) as source, wh.connect(pg_url) as target:
        target.execute("create schema if not exists raw")
        for name in RAW_TABLES:
            if not source.table_exists(f"raw.{name}"):
                continue
            target.register("frame", source.execute(f"select * from raw.{name}").arrow())
            target.execute(f"drop table if exists raw.{name}")
            target.execute(f"create table raw.{name} as select * from frame")
            counts[name] = int(target.execute(f"select count(*) from raw.{name}").fetchone()[0])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="personaflow-bench-engines-"))
    os.environ["PERSONAFLOW_HOME"] = str(home)
    from personaflow.core import settings
    from personaflow.ops.local_servers import Postgres, default_os_user, free_port
    from personaflow.pipeline import ingest as ingest_stage
    from personaflow.pipeline import transform as transform_stage
    from personaflow.pipeline.transform import run_dbt

    s = settings.load()
    # a folder of its own: run as root, the cluster's user (nobody) must be able to reach it
    pg_dir = Path(tempfile.mkdtemp(prefix="personaflow-bench-pg-"))
    server = Postgres(pg_dir, free_port(), default_os_user()).start(durable=False)
    try:
        started = time.perf_counter()
        ingest_stage.import_events(args.data, "online-retail", s)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        rows = copy_raw(s.warehouse, server.url)
        copy_s = time.perf_counter() - started
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "raw_rows": rows,
            "duckdb_import_load_s": round(load_s, 1), "postgres_copy_raw_s": round(copy_s, 1),
        }  # fmt: skip
        for name, where in (("duckdb", s.warehouse), ("postgres", server.url)):
            started = time.perf_counter()
            summary = run_dbt(where, None, s.dbt_project_dir, home / f"dbt-{name}", full_refresh=True,
                              dbt_vars=transform_stage.dbt_vars(s))  # fmt: skip
            results[f"{name}_full_rebuild_s"] = round(time.perf_counter() - started, 1)
            marts = {k: v for k, v in summary["rows"].items() if k.startswith("marts.")}
            results[f"{name}_marts_rows"] = marts
            results[f"{name}_tests"] = summary["tests"]
            # then a nightly run: the incremental models rewrite the last day only
            started = time.perf_counter()
            run_dbt(
                where, None, s.dbt_project_dir, home / f"dbt-{name}", dbt_vars=transform_stage.dbt_vars(s)
            )
            results[f"{name}_nightly_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(results, indent=2))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
