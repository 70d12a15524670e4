"""The local Spark driver's JIT: the quick compiler alone (C1, personaflow's local-mode default since
issue 24's suite work) against the JVM's default tiered C1+C2, on what a night's Spark task is.

A night on the Spark warehouse starts one driver JVM per Airflow task (personaflow/core/spark.py: a task
is a process, and Spark keeps one context per JVM); each runs a few dozen to a few hundred small
statements (dbt's models and data tests, GX's metrics, the loaders' writes) and exits. Two workloads,
each in a fresh child process (a fresh JVM), for each JIT:
- `small`: 20,000 rows written as a day-partitioned table, then 72 small distinct queries (null counts,
  grouped counts, min/max/distinct on a day range): the shape of a task;
- `heavy`: 3 M rows written, then six join + aggregate queries over them: a bigger local job, where
  C2's better code has more time to pay back its compiling.
C2 is brought back the way a shop would: PERSONAFLOW_SPARK_CONF="spark.driver.extraJavaOptions=
-XX:TieredStopAtLevel=4" (appended after personaflow's own options; the JVM takes a flag's last value).

Measured per run: wall seconds from the session's start, and the JVM's CPU seconds (user + system, read
from /proc just before the session stops: pyspark never waits for its JVM, so rusage misses it).
Memory: the driver holds one pandas frame of 20,000 rows (small) and no rows at all (heavy: written
and aggregated inside the JVM, 10 result rows collected per query); the JVM's heap is Spark's default
1 GB.

    python benchmarks/spark_jit.py            # both JITs, both workloads: benchmarks/results/spark_jit.json
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
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "spark_jit.json"
JITS = {"c1": "", "c2": "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=4"}
SMALL_ROWS, SMALL_QUERIES, HEAVY_ROWS, HEAVY_QUERIES = 20_000, 72, 3_000_000, 6


def _jvm_cpu_s(spark) -> float:
    fields = Path(f"/proc/{spark.sparkContext._gateway.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(jit: str, workload: str, home: Path) -> dict[str, float]:
    """One workload on a fresh local[2] session with the given JIT; the figures as a dict."""
    import numpy as np
    import pandas as pd

    from personaflow.core import spark
    from personaflow.core import warehouse as wh
    from personaflow.core.settings import Settings

    s = Settings(home=home, warehouse_url="spark", spark_master="local[2]", spark_conf=JITS[jit])
    started = time.perf_counter()
    session = spark.session(wh.location(s))
    if workload == "small":
        rng = np.random.default_rng(1)
        n = SMALL_ROWS
        frame = pd.DataFrame({
            "user_id": rng.integers(0, 400, n).astype(str), "item_id": rng.integers(0, 120, n).astype(str),
            "qty": rng.integers(1, 5, n), "price": rng.random(n) * 10,
            "day": pd.to_datetime("2026-09-01") + pd.to_timedelta(rng.integers(0, 21, n), unit="D"),
        })  # fmt: skip
        session.sql("create database if not exists raw")
        session.createDataFrame(frame).write.partitionBy("day").mode("overwrite").saveAsTable("raw.ev")
        for col in ("user_id", "item_id", "qty", "price"):
            for rep in range(SMALL_QUERIES // 12):
                session.sql(f"select count(*) from raw.ev where {col} is null and qty > {rep}").collect()
                session.sql(f"select {col}, count(*) c from raw.ev where qty >= {rep} group by {col} "
                            "having c > 1 limit 5").collect()  # fmt: skip
                session.sql(f"select min({col}), max({col}), count(distinct {col}) from raw.ev "
                            f"where day >= date'2026-09-{10 + rep:02d}'").collect()  # fmt: skip
    else:
        session.range(HEAVY_ROWS).selectExpr(
            "id", "cast(id % 40000 as string) as user_id", "id % 5000 as item_id", "rand(1) * 10 as price",
            "date_add(date'2026-01-01', cast(id % 60 as int)) as day",
        ).write.mode("overwrite").saveAsTable("ev")
        for rep in range(HEAVY_QUERIES):
            session.sql(f"""select e.user_id, count(*), sum(price), count(distinct e.item_id), max(i.n)
                from ev e join (select item_id, count(*) n from ev
                                where day > date_add(date'2026-01-01', {rep}) group by item_id) i
                on e.item_id = i.item_id group by e.user_id order by 3 desc limit 10""").collect()
    wall = time.perf_counter() - started
    cpu = _jvm_cpu_s(session)
    spark.stop()
    return {"wall_s": round(wall, 1), "jvm_cpu_s": round(cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=3, metavar=("JIT", "WORKLOAD", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        jit, workload, home = args.child
        print("RESULT " + json.dumps(child(jit, workload, Path(home))), flush=True)
        return
    load = os.getloadavg()
    out: dict[str, object] = {
        "cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "spark_master": "local[2]",
        "data": f"synthetic: {SMALL_ROWS:,} rows + {SMALL_QUERIES} small queries (small); "
                f"{HEAVY_ROWS:,} rows + {HEAVY_QUERIES} join/aggregate queries (heavy)",
        "small_rows": SMALL_ROWS, "small_queries": SMALL_QUERIES,
        "heavy_rows": HEAVY_ROWS, "heavy_queries": HEAVY_QUERIES,
        "loadavg_1m_at_start": round(load[0], 2), "machine_idle": load[0] < 0.5,
    }  # fmt: skip
    for workload in ("small", "heavy"):
        for jit in ("c2", "c1"):
            with tempfile.TemporaryDirectory(prefix="spark-jit-") as home:
                out[f"{workload}_{jit}_loadavg_at_start"] = round(os.getloadavg()[0], 2)
                done = subprocess.run([sys.executable, __file__, "--child", jit, workload, home],
                                      capture_output=True, text=True, check=False)  # fmt: skip
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{workload} {jit} failed:\n{done.stderr[-3000:]}")
                for key, value in json.loads(line[len("RESULT "):]).items():
                    out[f"{workload}_{jit}_{key}"] = value
                print(workload, jit, line, flush=True)
        out[f"{workload}_c1_jvm_cpu_saved_pct"] = round(
            100 * (1 - out[f"{workload}_c1_jvm_cpu_s"] / out[f"{workload}_c2_jvm_cpu_s"]), 1
        )
    load = os.getloadavg()
    out["loadavg_1m_at_end"] = round(load[0], 2)
    out["machine_idle"] = bool(out["machine_idle"]) and load[0] < 0.5
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
