"""The scale benchmark's online half: Feast materialize into SQLite vs Redis, then /recommend, /profile
and /events on BentoML (1 worker on SQLite and Redis, 2 on Redis) next to the bare FastAPI floor.

Every load generator, server launcher and store builder is benchmarks/serving.py's (prepare,
open_loop, closed_loop, component_times) and personaflow/serving/process.py's: this module only chooses the
configurations and names the keys. A prepared store (model, marts, Feast registry and online store)
is kept under the work folder with the env it needs, so `--parts serving` can re-run without the
minutes a 1 M-user materialize costs; Redis keeps its copy in its append-only file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from benchmarks import serving as bench
from personaflow.serving import process

ROOT = Path(__file__).resolve().parent.parent
RATES = (300, 1000)
# (online store, BentoML workers): several workers need Redis (serving/process.serve_workers)
CONFIGS = (("sqlite", 1), ("redis", 1), ("redis", 2))
MAX_CONCURRENCY = 32
EVENTS_CONCURRENCY = (32, 64)


@contextlib.contextmanager
def timed_materialize() -> Iterator[list[tuple[str, float]]]:
    """Record (view, seconds) of each FeatureStore.materialize call made inside the block."""
    from feast import FeatureStore

    calls: list[tuple[str, float]] = []
    original = FeatureStore.materialize

    def materialize(self, *args, **kwargs):
        started = time.perf_counter()
        result = original(self, *args, **kwargs)
        calls.append((",".join(kwargs.get("feature_views") or ["all"]), time.perf_counter() - started))
        return result

    FeatureStore.materialize = materialize
    try:
        yield calls
    finally:
        FeatureStore.materialize = original


def store_home(work: Path, size: str, store: str) -> Path:
    return work / f"store-{size}-{store}"


def prepare_store(work: Path, size: str, users: int, items: int, store: str, redis_url: str) -> dict:
    """benchmarks/serving.py's prepare into SQLite or Redis, with Feast's materialize timed per view."""
    home = store_home(work, size, store)
    if home.exists():
        import shutil

        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ.pop("PERSONAFLOW_REDIS_URL", None)
    if store == "redis":
        os.environ["PERSONAFLOW_REDIS_URL"] = redis_url
    with timed_materialize() as calls:
        env = bench.prepare(home, users, items)
    if store == "redis":
        env["PERSONAFLOW_REDIS_URL"] = redis_url
    build_s = float(env.pop("_features_s"))
    (home / "env.json").write_text(json.dumps(env))
    # rows each view loads: one per user, per item, per buyer (one user in 20 has a purchase)
    rows = {"user_profile": users, "item_stats": items, "user_purchases": len(range(0, users, 20))}
    key = f"feast_{size}_{store}"
    out: dict[str, object] = {f"{key}_build_features_s": build_s}
    total_s = total_rows = 0.0
    for view, seconds in calls:
        out[f"{key}_materialize_{view}_s"] = round(seconds, 2)
        if view in rows:
            out[f"{key}_materialize_{view}_rows_per_s"] = round(rows[view] / seconds)
            total_s, total_rows = total_s + seconds, total_rows + rows[view]
    out[f"{key}_materialize_s"] = round(total_s, 2)
    out[f"{key}_materialize_rows"] = int(total_rows)
    out[f"{key}_materialize_rows_per_s"] = round(total_rows / total_s) if total_s else 0
    print(key, out, flush=True)
    return out


def stored_env(work: Path, size: str, store: str, redis_url: str) -> dict[str, str]:
    path = store_home(work, size, store) / "env.json"
    if not path.exists():
        raise SystemExit(f"no prepared {store} store for {size} under {work}: run --parts feast first")
    env = json.loads(path.read_text())
    env["PERSONAFLOW_API_TOKENS"] = bench.TOKEN  # the token this process's load generator sends
    if store == "redis":
        env["PERSONAFLOW_REDIS_URL"] = redis_url  # this run's Redis (same append-only file)
    return env


def tree_rss_mb(pid: int) -> float:
    """RSS summed over the server and its descendants (circus starts each BentoML worker in a session
    of its own, so the process group alone misses them)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


def measure(base: str, makers: dict, key: str, endpoints: tuple[str, ...], seconds: float) -> dict:
    out: dict[str, object] = {}
    for endpoint in endpoints:
        for rps in RATES:
            res = asyncio.run(bench.open_loop(base, f"/{endpoint}", makers[endpoint], rps, seconds))
            out.update(flat(f"{key}_{endpoint}_at_{rps}rps", res))
        res = asyncio.run(bench.closed_loop(base, f"/{endpoint}", makers[endpoint], MAX_CONCURRENCY))
        out.update(flat(f"{key}_{endpoint}_c{MAX_CONCURRENCY}", res))
        print(key, endpoint, {k: v for k, v in out.items() if endpoint in k}, flush=True)
    return out


def flat(prefix: str, res: dict[str, float]) -> dict[str, float]:
    units = {"rps": "req_per_s", "requests": "requests", "errors": "errors"}
    return {f"{prefix}_{units.get(k, k)}": v for k, v in res.items()}


@contextlib.contextmanager
def floor_server(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """benchmarks/serving_floor.py under uvicorn with the store's env, until it answers."""
    with open(log, "ab") as out:
        floor = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.serving_floor:app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": "u0000000"}, timeout=2)
                break
            except httpx.TransportError:
                if floor.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the FastAPI floor did not start (log: {log})") from None
                time.sleep(0.3)
        yield floor
    finally:
        process.stop(floor)


def run_online(work: Path, size: str, users: int, items: int, redis_url: str, parts: set[str],
               seconds: float) -> dict:  # fmt: skip
    """Each (store, workers) config: BentoML, then the floor once per store; serving and/or events."""
    makers = bench.request_makers(users, items)
    out: dict[str, object] = {}
    for store, workers in CONFIGS:
        env = {**stored_env(work, size, store, redis_url), "PERSONAFLOW_SERVE_WORKERS": str(workers)}
        key = f"serve_{size}_{store}_w{workers}"
        port = bench.free_port()
        base = f"http://127.0.0.1:{port}"
        proc = process.start("127.0.0.1", port, env=env, log_file=work / f"{key}.log")
        try:
            out[f"{key}_ready_s"] = round(process.wait_ready(base, timeout=600, proc=proc), 1)
            if "serving" in parts:
                out.update(measure(base, makers, key, ("recommend", "profile"), seconds))
            if "events" in parts:
                for c in EVENTS_CONCURRENCY:
                    res = asyncio.run(bench.closed_loop(base, "/events", makers["events"], c))
                    out.update(flat(f"events_{size}_{store}_w{workers}_c{c}", res))
                    print(key, "events", c, res, flush=True)
            out[f"{key}_rss_mb"] = tree_rss_mb(proc.pid)
        finally:
            process.stop(proc)
    if "serving" in parts:
        for store in ("sqlite", "redis"):
            env = stored_env(work, size, store, redis_url)
            key = f"floor_{size}_{store}"
            port = bench.free_port()
            with floor_server(env, port, work / f"{key}.log"):
                endpoints = ("recommend", "profile")
                out.update(measure(f"http://127.0.0.1:{port}", makers, key, endpoints, seconds))
            c = MAX_CONCURRENCY
            for workers in (1, 2):
                for endpoint in ("recommend", "profile"):
                    bento = out.get(f"serve_{size}_{store}_w{workers}_{endpoint}_c{c}_req_per_s")
                    floor = out[f"{key}_{endpoint}_c{c}_req_per_s"]
                    if bento is not None and floor:
                        share = f"serve_{size}_{store}_w{workers}_{endpoint}_share_of_floor_pct"
                        out[share] = round(100 * bento / floor, 1)
    return out


def where_online_time_goes(work: Path, size: str, users: int, redis_url: str) -> dict:
    """benchmarks/serving.py's in-process parts (score, online read, live write, fsync) per store."""
    out: dict[str, object] = {}
    saved = dict(os.environ)
    try:
        for store in ("sqlite", "redis"):
            env = stored_env(work, size, store, redis_url)
            os.environ.pop("PERSONAFLOW_REDIS_URL", None)
            os.environ.update(env)
            for name, us in bench.component_times(env, users).items():
                out[f"time_{size}_{store}_{name.removesuffix('_us')}_ms"] = round(us / 1000, 3)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return out
