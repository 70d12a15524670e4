"""Benchmark (issue 24): the night's warehouse stages on DuckDB, PostgreSQL and Spark, side by side.

One run, one machine, the same synthetic shop per size (`personaflow generate`: the sizes of
benchmarks/transform.py, ~1 M and ~10 M events over 60 days, landed once as daily CSVs and shared by
every engine). For each engine a fresh home (PERSONAFLOW_HOME) on that landing area runs, each stage
through the CLI as a child process of its own, as a night's task does:

  connect      open the warehouse and run `select 1` (Spark: the JVM and the session start; each
               later stage pays it again, as every CLI command and Airflow task does)
  ingest       `personaflow ingest --through LAST`: every landed day into the raw layer
  transform    `personaflow transform --date LAST`: `dbt build` of every model and data test
  mart_checks  `personaflow validate --marts --date LAST`: the marts suite (SQL aggregates on DuckDB and
               PostgreSQL, GX's Spark data source on Spark)
  features     `personaflow features --date LAST`: the Feast stage (snapshots, apply, materialize into
               the online store, the point-in-time training set); offline store dask over Parquet on
               DuckDB and PostgreSQL, Feast's Spark offline store on Spark; online store SQLite for all
               three, so only the offline side differs

Each stage's wall seconds, CPU seconds and peak memory are those of its whole process tree
(_common.run_tree): the CLI process, and on Spark its JVM (pyspark never waits for it; this process is
their subreaper and reaps it, so its CPU counts). On PostgreSQL the work happens in the server's
backends: their CPU is added (`_server_cpu_s`, included in `_cpu_s`) and their memory given as PSS
(`_server_peak_pss_mb`; shared buffers counted once), `_peak_total_mb` being client RSS + server PSS.
PostgreSQL is a local durable cluster (personaflow/ops/local_servers.py), Spark runs `local[2]` with
a 2 GB driver heap (PERSONAFLOW_SPARK_DRIVER_MEMORY=2g, under the quarter of memory a local driver gets
by default, so that the figures compare with earlier runs and leave memory to what else runs here; its
executors are threads of that JVM).

Each engine gets `--engine-timeout` seconds per size (default 25 min; with `--total-timeout`, at most
an equal share of what is left of the run, `<engine>_<size>_budget_s`); a stage still running when it
is spent is killed and recorded as `timeout after N s: <its last log line>`, the stages after it as not
run. Keys (flat, with units): <engine>_<size>_<stage>_{wall_s,cpu_s,peak_rss_mb,status}, on Spark
`_jvm_cpu_s` (the JVM's share of the CPU: executors and the driver's JVM; the rest is Python), plus rows,
cores, load averages; written to benchmarks/results/engines.json after every stage (merged with the
other size's keys), so an interrupted run keeps what it measured. Memory of this parent: O(1); each
stage's memory is its own (ingest: one day's batch; dbt and GX: the engine's; features: O(users +
items) snapshots and the first night's training rows).

    make bench-engines                                   # 1m, then 10m
    python benchmarks/engines.py --sizes 1m --engines duckdb spark
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _common import become_subreaper, merge_results, run_tree

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "engines.json"
BIN = Path(sys.executable).parent
START = date(2026, 9, 1)
# The shapes of benchmarks/transform.py (22k users -> ~0.99 M events, 220k -> ~9.9 M); `small` is a
# smoke run of the benchmark itself.
SIZES = {
    "small": {"users": 2_000, "items": 300, "days": 20},
    "1m": {"users": 22_000, "items": 3_000, "days": 60},
    "10m": {"users": 220_000, "items": 20_000, "days": 60},
}
ENGINES = ("duckdb", "postgres", "spark")
STAGES = ("connect", "ingest", "transform", "mart_checks", "features")
SPARK_MASTER = "local[2]"
SPARK_DRIVER_MEMORY = "2g"


def last_json(log: Path) -> dict:
    """The CLI prints its result as JSON: the last line-led `{` that starts an object (a JVM's shutdown
    lines may follow it in the log)."""
    text = "\n" + log.read_text(errors="replace")  # a log that is only the answer starts with `{`
    start = len(text)
    while (start := text.rfind("\n{", 0, start)) >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start + 1)
            return value if isinstance(value, dict) else {}
        except json.JSONDecodeError:
            continue
    return {}


def folder_mb(folder: Path, pattern: str) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob(pattern) if f.is_file()) / 2**20, 1)


def step_connect() -> None:
    """A child: open the warehouse the settings name and run one trivial statement."""
    from personaflow.core import settings
    from personaflow.core import warehouse as wh

    with wh.connect(wh.location(settings.load())) as con:
        con.execute("select 1").fetchall()


def clean_env() -> dict[str, str]:
    """This process's environment without any PERSONAFLOW_* (a developer's own settings must not leak
    into a measured child; each engine's settings are set below)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PERSONAFLOW_")}


def engine_env(engine: str, home: Path, landing: Path, pg_url: str | None) -> dict[str, str]:
    env = {
        **clean_env(),
        "PERSONAFLOW_HOME": str(home),
        "PERSONAFLOW_LANDING_DIR": str(landing),
        "BENTOML_HOME": str(home / "bentoml"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "PYTHONPATH": str(ROOT),
        # no mail server: a failed check still fails its stage (and keeps its alert as .eml)
        "PERSONAFLOW_SMTP_HOST": "127.0.0.1",
        "PERSONAFLOW_SMTP_PORT": "1",
    }
    if engine == "postgres":
        env["PERSONAFLOW_WAREHOUSE_URL"] = str(pg_url)
    elif engine == "spark":
        env.update({"PERSONAFLOW_WAREHOUSE_URL": "spark", "PERSONAFLOW_SPARK_MASTER": SPARK_MASTER,
                    "PERSONAFLOW_SPARK_DRIVER_MEMORY": SPARK_DRIVER_MEMORY})  # fmt: skip
    return env


def commands(last: date) -> dict[str, list[str]]:
    pf, day = str(BIN / "personaflow"), last.isoformat()
    return {
        "connect": [sys.executable, __file__, "--step", "connect"],
        "ingest": [pf, "ingest", "--through", day],
        "transform": [pf, "transform", "--date", day],
        "mart_checks": [pf, "validate", "--marts", "--date", day],
        "features": [pf, "features", "--date", day],
    }


def what_it_did(stage: str, result: dict) -> dict[str, object]:
    """A few figures from a stage's own JSON answer (rows it moved), to check it did the same work."""
    if stage == "ingest":
        return {"rows": result.get("rows"), "batches": result.get("batches_loaded")}
    if stage == "transform":
        rows = result.get("rows") or {}
        return {"models": result.get("models"), "data_tests": result.get("tests"),
                "interactions_rows": rows.get("marts.interactions")}  # fmt: skip
    if stage == "mart_checks":
        return {"expectations": result.get("expectations"), "rows": result.get("rows")}
    if stage == "features":
        return {"training_set_rows": result.get("training_set_rows"),
                "training_rows_joined_tonight": result.get("training_rows_joined_tonight"),
                "user_snapshot_rows": result.get("user_snapshot_rows"),
                "stage_own_s": result.get("seconds")}  # fmt: skip
    return {}


def run_engine(
    engine: str, size: str, work: Path, landing: Path, last: date, budget: float, pg, out: dict
) -> None:
    """Every stage of one engine on one size, in order; `out` filled (and saved) after each."""
    home = work / f"{size}-{engine}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    logs = home / "logs"
    logs.mkdir()
    pg_url = pg.create_database(f"warehouse_{size}") if engine == "postgres" else None
    env = engine_env(engine, home, landing, pg_url)
    server = int((pg.folder / "data" / "postmaster.pid").read_text().split()[0]) if pg_url else None
    p, spent, stopped = f"{engine}_{size}", 0.0, None
    out[f"{p}_loadavg_at_start"] = round(os.getloadavg()[0], 2)
    for stage, cmd in commands(last).items():
        if stopped:
            out[f"{p}_{stage}_status"] = f"not run: {stopped}"
            continue
        out[f"{p}_{stage}_loadavg_at_start"] = round(os.getloadavg()[0], 2)
        log = logs / f"{stage}.log"
        result = run_tree(cmd, env=env, cwd=ROOT, timeout=max(budget - spent, 1), log=log, server=server)
        spent += float(result["wall_s"])
        out.update({f"{p}_{stage}_{k}": v for k, v in result.items()})
        if result["status"] == "ok":
            done = what_it_did(stage, last_json(log))
            out.update({f"{p}_{stage}_{k}": v for k, v in done.items() if v is not None})
        else:
            stopped = f"{stage} did not finish"
        print(f"[{p}] {stage}: {result}", flush=True)
        merge_results(RESULTS, out)
    out[f"{p}_all_stages_wall_s"] = round(spent, 1)
    out[f"{p}_finished"] = stopped is None
    out[f"{p}_loadavg_at_end"] = round(os.getloadavg()[0], 2)
    if engine == "postgres":
        import psycopg

        with psycopg.connect(str(pg_url)) as con:
            size_b = con.execute("select pg_database_size(current_database())").fetchone()[0]
        out[f"{p}_warehouse_mb"] = round(size_b / 2**20, 1)
    else:  # the tables' files
        out[f"{p}_warehouse_mb"] = folder_mb(home / "spark" / "warehouse" if engine == "spark" else home,
                                             "*" if engine == "spark" else "warehouse.duckdb")  # fmt: skip
    merge_results(RESULTS, out)
    # the logs stay (work/logs-<engine>_<size>/: what a failed or stopped stage said); the data goes
    shutil.rmtree(work / f"logs-{p}", ignore_errors=True)
    shutil.move(logs, work / f"logs-{p}")
    shutil.rmtree(home, ignore_errors=True)


def generate(size: str, landing: Path, work: Path, out: dict) -> date:
    """The size's shop as daily CSVs in `landing` (streamed by the CLI: one chunk of users in memory)."""
    shape = SIZES[size]
    shutil.rmtree(landing, ignore_errors=True)
    log = work / f"generate-{size}.log"
    env = {**clean_env(), "PERSONAFLOW_HOME": str(work / "gen-home"),
           "PERSONAFLOW_LANDING_DIR": str(landing)}  # fmt: skip
    cmd = [str(BIN / "personaflow"), "generate", "--users", str(shape["users"]),
           "--items", str(shape["items"]), "--days", str(shape["days"]), "--seed", "11",
           "--start", START.isoformat()]  # fmt: skip
    result = run_tree(cmd, env=env, cwd=ROOT, timeout=3600, log=log)
    if result["status"] != "ok":
        raise SystemExit(f"generate {size}: {result['status']}")
    shop = last_json(log)
    out.update({f"generate_{size}_wall_s": result["wall_s"],
                f"generate_{size}_peak_rss_mb": result["peak_rss_mb"],
                f"{size}_events": shop.get("events"), f"{size}_users": shape["users"],
                f"{size}_items": shape["items"], f"{size}_days": shape["days"],
                f"{size}_landing_mb": folder_mb(landing, "*")})  # fmt: skip
    return START + timedelta(days=shape["days"] - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1m", "10m"], choices=list(SIZES))
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--engine-timeout", type=float, default=1500.0,
                        help="seconds each engine gets per size, all its stages together")  # fmt: skip
    parser.add_argument("--total-timeout", type=float, default=None,
                        help="seconds for the whole run: each engine gets at most an equal share "
                             "of what is left when it starts (one done early leaves the rest)")  # fmt: skip
    work = Path(tempfile.gettempdir()) / "personaflow-bench-engines"
    parser.add_argument("--work", type=Path, default=work, help="landing files, homes and stage logs")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=TEXT",
                        help="a note_KEY kept with the figures (what else ran on the machine)")  # fmt: skip
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "connect":
        step_connect()
        return
    # `timeout` and friends send SIGTERM: unwind (the running stage's session is killed, servers stop,
    # the figures measured so far are already written)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from personaflow.ops.local_servers import Postgres, default_os_user, free_port

    args.work.mkdir(parents=True, exist_ok=True)
    run_started = time.monotonic()
    load = os.getloadavg()
    out: dict[str, object] = {
        "cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "spark_master": SPARK_MASTER, "spark_driver_memory": SPARK_DRIVER_MEMORY, "spark_conf": "",
        "postgres_durable": True,
        "online_store": "sqlite (every engine)",
        "loadavg_1m_at_start": round(load[0], 2), "loadavg_5m_at_start": round(load[1], 2),
        # 2 cores shared with other work: not idle unless the load average says so
        "machine_idle": load[0] < 0.5,
    }  # fmt: skip
    for note in args.note:
        key, _, text = note.partition("=")
        out[f"note_{key}"] = text
    # as root the cluster runs as an unprivileged user that must own its folder: a fresh temp folder
    pg_dir = Path(tempfile.mkdtemp(prefix="personaflow-bench-engines-pg-"))
    pg = Postgres(pg_dir, free_port(), default_os_user()).start(durable=True) if "postgres" in args.engines \
        else None  # fmt: skip
    become_subreaper()  # after the postmaster is init's child (Postgres.stop waits for it to vanish)
    try:
        for size in args.sizes:
            landing = args.work / f"landing-{size}"
            out[f"{size}_engine_timeout_s"] = args.engine_timeout  # what each engine got at this size
            last = generate(size, landing, args.work, out)
            merge_results(RESULTS, out)
            for i, engine in enumerate(args.engines):
                budget = args.engine_timeout
                if args.total_timeout is not None:
                    left = args.total_timeout - (time.monotonic() - run_started)
                    budget = min(budget, max(left, 60) / (len(args.engines) - i))
                out[f"{engine}_{size}_budget_s"] = round(budget)
                run_engine(engine, size, args.work, landing, last, budget, pg, out)
            shutil.rmtree(landing, ignore_errors=True)
        load = os.getloadavg()
        out["loadavg_1m_at_end"], out["loadavg_5m_at_end"] = round(load[0], 2), round(load[1], 2)
        merge_results(RESULTS, out)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
