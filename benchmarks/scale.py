"""Benchmark (issue 12): the embedded stack vs the scale stack, same data, same machine.

Embedded: DuckDB warehouse, Feast's SQLite online store, Airflow's LocalExecutor on SQLite, one
BentoML worker. Scale: PostgreSQL warehouse and Airflow metadata DB, Redis online store and Celery
broker, two Celery workers, two BentoML workers. PostgreSQL and Redis are started locally
(personaflow/ops/local_servers.py, durable: fsync on, Redis appendfsync everysec) for the run.
Parts (each re-runnable alone; merge_results keeps the other keys of benchmarks/results/scale.json):
  transform  benchmarks/transform.py's steps on DuckDB and on PostgreSQL from the same landed CSVs:
             history load + build, one nightly day (load, GX, incremental dbt, GX), a full rebuild
  feast      benchmarks/serving.py's prepare (1 M users) into SQLite and into Redis: materialize rows/s
  serving    /recommend and /profile p50/p99 open loop at 300 and 1,000 req/s, and closed loop c=32,
             BentoML (SQLite 1 worker, Redis 1 and 2 workers) and the bare FastAPI floor per store
  events     /events closed loop (c=32, 64) with the landing log's group commit (durable answers)
  night      one nightly DAG run, LocalExecutor (SQLite, DuckDB) vs CeleryExecutor (Postgres, Redis)
Keys are flat with units (_s, _rows_per_s, _p99_ms, _req_per_s, _peak_rss_mb); time_* keys say where
each stack's time goes. The load generator shares the cores with the servers under test.

    make bench-scale                                   # every part, real sizes
    python benchmarks/scale.py --parts transform --sizes small --engines duckdb postgres
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
# The repo root first (its `serving` package, not benchmarks/serving.py); benchmarks/ last (_common).
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH), str(BENCH)]

from benchmarks import transform as bench_transform  # noqa: E402
from benchmarks._common import merge_results  # noqa: E402
from personaflow.ops.local_servers import Postgres, Redis, default_os_user, free_port  # noqa: E402

RESULTS = BENCH / "results" / "scale.json"
PARTS = ("transform", "feast", "serving", "events", "night")
TRANSFORM_SIZES = {"small": {"users": 2_000, "items": 300, "days": 20}, **bench_transform.SIZES}
USER_SIZES = {"small": {"users": 20_000, "items": 3_684}, "1m": {"users": 1_000_000, "items": 3_684}}
NIGHT_SHOPS = {"small": {"users": 400, "items": 120, "days": 21}, "real": {"users": 4_000, "items": 600,
                                                                       "days": 30}}  # fmt: skip


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def part_transform(
    sizes: list[str], engines: list[str], pg: Postgres, work: Path, out: dict, validate: bool = True
) -> dict:
    """Fills `out` as it goes: a run stopped midway (10 M rows on PostgreSQL) keeps what it measured."""
    for size in sizes:
        shape = TRANSFORM_SIZES[size]
        landing = work / f"landing-{size}"
        out.update(bench_transform.generate(size, landing, **shape))
        for engine in engines:
            if engine == "duckdb":
                where: Path | str = work / f"warehouse-{size}.duckdb"
            else:
                where = pg.create_database(f"warehouse_{size}_{free_port()}")
            started = time.perf_counter()
            out[f"transform_{size}_{engine}_finished"] = False
            out[f"transform_{size}_{engine}_validated"] = validate
            bench_transform.run_engine(f"{size}_{engine}", work, landing, where, shape["days"], validate, out)
            out[f"transform_{size}_{engine}_all_steps_s"] = round(time.perf_counter() - started, 1)
            out[f"transform_{size}_{engine}_finished"] = True
            if engine == "duckdb":
                Path(where).unlink(missing_ok=True)
        # where the time goes: ingest (COPY on PostgreSQL, DuckDB's CSV reader) vs dbt, per engine
        for engine in engines:
            load = out.get(f"load_history_{size}_{engine}_s")
            events = out.get(f"{size}_{engine}_events")
            if load and events:
                out[f"time_{size}_{engine}_ingest_rows_per_s"] = round(int(events) / float(load))
        shutil.rmtree(landing, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--sizes", nargs="+", default=["1m", "10m"], choices=list(TRANSFORM_SIZES),
                        help="transform sizes (synthetic events)")  # fmt: skip
    engines = ["duckdb", "postgres"]
    parser.add_argument("--engines", nargs="+", default=engines, choices=engines)
    parser.add_argument("--no-validate", action="store_true", help="transform: skip the GX steps")
    parser.add_argument("--users", default="1m", choices=list(USER_SIZES), help="feast/serving size")
    parser.add_argument("--night", default="real", choices=list(NIGHT_SHOPS), help="the night's shop")
    parser.add_argument("--seconds", type=float, default=10.0, help="each open-loop run's length")
    work = Path(tempfile.gettempdir()) / "personaflow-bench-scale"
    parser.add_argument("--work", type=Path, default=work,
                        help="kept between runs: prepared stores, Redis' append-only file")  # fmt: skip
    parser.add_argument("--note", action="append", default=[], metavar="KEY=TEXT",
                        help="a note_KEY kept with the figures (what was not measured, why)")  # fmt: skip
    args = parser.parse_args()
    # `timeout` and friends send SIGTERM: unwind (finally blocks stop the servers, keep the figures)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = set(args.parts)
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {
        "cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "postgres_durable": True, "redis_appendfsync": "everysec",
    }  # fmt: skip
    for note in args.note:
        key, _, text = note.partition("=")
        result[f"note_{key}"] = text
    # as root the cluster runs as an unprivileged user that must own its folder: a fresh temp folder
    pg_dir = Path(tempfile.mkdtemp(prefix="personaflow-bench-scale-pg-"))
    pg = Postgres(pg_dir, free_port(), default_os_user()).start(durable=True)
    redis = Redis(args.work / "redis", free_port()).start(durable=True)
    try:
        for part in [p for p in PARTS if p in parts]:
            if part == "events" and "serving" in parts:
                continue  # measured on the same servers as serving
            result[f"{part}_loadavg_at_start"] = load_avg()
            started = time.perf_counter()
            if part == "transform":
                try:
                    part_transform(args.sizes, args.engines, pg, args.work, result, not args.no_validate)
                finally:  # stopped (SIGTERM, a failed step): keep the steps measured so far
                    merge_results(RESULTS, result)
            else:
                result.update(run_part(part, parts, args, pg, redis))
            result[f"{part}_part_s"] = round(time.perf_counter() - started, 1)
            result[f"{part}_loadavg_at_end"] = load_avg()
            merge_results(RESULTS, result)  # a later part failing keeps what is measured
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


def run_part(part: str, parts: set[str], args: argparse.Namespace, pg: Postgres, redis: Redis) -> dict:
    from benchmarks import scale_serving as online

    shape = USER_SIZES[args.users]
    size = args.users
    if part == "feast":
        out = {f"feast_{size}_users": shape["users"], f"feast_{size}_items": shape["items"]}
        for store in ("sqlite", "redis"):
            out.update(online.prepare_store(args.work, size, **shape, store=store, redis_url=redis.url))
        return out
    if part in ("serving", "events"):
        out = {f"serve_{size}_users": shape["users"], f"serve_{size}_open_loop_s": args.seconds}
        out.update(online.run_online(args.work, size, shape["users"], shape["items"], redis.url,
                                     parts & {"serving", "events"}, args.seconds))  # fmt: skip
        if part == "serving":  # last, with no server holding the stores
            out.update(online.where_online_time_goes(args.work, size, shape["users"], redis.url))
        return out
    from benchmarks import _airflow_night

    return _airflow_night.run_nights(args.work, pg, redis, args.night, NIGHT_SHOPS[args.night])


if __name__ == "__main__":
    main()
