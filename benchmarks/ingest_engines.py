"""Benchmark: landing the whole real Online Retail file in the raw layer, DuckDB vs PostgreSQL.

The file is imported once into daily landing files (ingest.landing), then `load_pending` loads every
day into a fresh warehouse of each engine (one connection, one transaction and, on PostgreSQL, one
COPY per day). PostgreSQL is a local server (personaflow/ops/local_servers.py) on this machine,
durable=False, so the numbers are the engine and the adapter, not a network.
Writes benchmarks/results/ingest_engines.json: <engine>_load_s, <engine>_rows_per_s, <engine>_days.

    python benchmarks/ingest_engines.py            # the file in ../shared/data/online-retail
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ingest_engines.json"
SOURCE = ROOT.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    args = parser.parse_args()
    from personaflow.ingest.landing import import_events
    from personaflow.ingest.load import load_pending
    from personaflow.ops.local_servers import Postgres, default_os_user, free_port

    work = Path(tempfile.mkdtemp(prefix="personaflow-bench-ingest-"))
    # a folder of its own, as the test fixture does: the cluster's OS user must be able to enter it
    pg_folder = Path(tempfile.mkdtemp(prefix="personaflow-bench-pg-"))
    server = Postgres(pg_folder, free_port(), default_os_user()).start(durable=False)
    try:
        started = time.perf_counter()
        import_events(args.source, "online-retail", work / "landing")
        results: dict[str, object] = {"import_s": round(time.perf_counter() - started, 2)}
        for engine, where in (("duckdb", work / "wh.duckdb"), ("postgres", server.create_database("bench"))):
            started = time.perf_counter()
            loaded = load_pending(where, work / "landing", date(2011, 12, 31))
            seconds = time.perf_counter() - started
            rows = sum(int(b["rows"]) for b in loaded)
            results.update({
                f"{engine}_load_s": round(seconds, 2), f"{engine}_rows": rows, f"{engine}_days": len(loaded),
                f"{engine}_rows_per_s": round(rows / seconds),
            })  # fmt: skip
            print(engine, results, flush=True)
        results["machine"] = f"{platform.machine()}, {platform.python_version()}"
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_folder, ignore_errors=True)


if __name__ == "__main__":
    main()
