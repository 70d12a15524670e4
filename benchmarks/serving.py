"""Benchmark: latency and throughput of the running BentoML server, and of a bare FastAPI floor.

For each size: a synthetic shop (random-weight model of the real shape, marts written straight into
DuckDB, the real features stage into Feast's SQLite online store), `bentoml serve` on 127.0.0.1, then an
async aiohttp load generator in this process: /recommend, /profile, /events at concurrency 1, 8, 32, 64
(each bounded by time and count), open-loop 300 and 1,000 requests/s runs of /recommend, and the same
/recommend and /profile against `benchmarks/serving_floor.py` under uvicorn (bare FastAPI calling the same
service code: both must give byte-identical answers to a fixed set of requests first). Also times the parts of
a request in-process (scoring, online read, online write, fsync) to say where the time goes.
The client shares the machine's cores with the server: figures are for both on one box.

    make bench-serving                      # retail size (Online Retail: ~4.4k users, ~3.7k items)
    python benchmarks/serving.py --sizes retail 1m
    python benchmarks/serving.py --sizes 1m --redis --workers 2      # Redis online store, 2 workers
    python benchmarks/serving.py --sizes 1m --baseline /tmp/old-checkout  # before/after, same shop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import duckdb
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from personaflow.pipeline.features import build_features  # noqa: E402
from personaflow.serving import process  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
SIZES = {"retail": {"users": 4_372, "items": 3_684}, "1m": {"users": 1_000_000, "items": 3_684}}
CONCURRENCY = (1, 8, 32, 64)
SECONDS_PER_RUN = 4.0
MAX_REQUESTS_PER_RUN = 20_000
# The server under test accepts this token (PERSONAFLOW_API_TOKENS); every request sends it.
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPEN_LOOP_RATES, OPEN_LOOP_SECONDS = (300, 1000), 10.0


def prepare(home: Path, users: int, items: int) -> dict[str, str]:
    """Model + marts + Feast store under `home`; returns the server's environment."""
    env = {
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_PRODUCTION_POINTER": str(home / "production.json"),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "PERSONAFLOW_LANDING_DIR": str(home / "landing"),
        "BENTOML_DO_NOT_TRACK": "True",
        # POST /events needs a token (every request sends it)
        "PERSONAFLOW_API_TOKENS": TOKEN,
    }
    os.environ.update(env)
    from personaflow.training.data.interactions import IdMaps
    from personaflow.training.models.bpr import MatrixFactorization
    from personaflow.training.registry.pointer import promote
    from personaflow.training.registry.store import save_candidate

    user_ids = [f"u{u:07d}" for u in range(users)]
    item_ids = [f"i{i:05d}" for i in range(items)]
    model = MatrixFactorization(users, items, dim=64)
    popularity = [(i, float(items - n)) for n, i in enumerate(item_ids)]
    tag = save_candidate(
        model, IdMaps(user_ids, item_ids), popularity, {"ndcg_at_10": 0.2, "baseline_ndcg_at_10": 0.1}, {}
    )
    promote(tag, home / "production.json")
    as_of = datetime.now(UTC).date() - timedelta(days=1)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create schema marts")
        con.execute(
            f"""create table marts.user_features as select printf('u%07d', u) as user_id,
              date '{as_of}' as as_of_date, timestamp '{as_of} 10:00:00' as first_event_ts,
              timestamp '{as_of} 12:00:00' as last_event_ts, null::timestamp as last_purchase_ts,
              (u % 90)::int as recency_days, (u % 7)::int as frequency, (u % 500)::double as monetary,
              (1 + u % 5)::int as r_score, (1 + u % 5)::int as f_score, (1 + u % 5)::int as m_score,
              'Segment ' || (u % 6) as rfm_segment, (u % 40)::int as n_views, (u % 5)::int as n_carts,
              (u % 3)::int as n_purchases, (1 + u % 9)::int as n_sessions
            from range({users}) t(u)"""
        )
        con.execute(
            f"""create table marts.item_features as select printf('i%05d', i) as item_id,
              'cat-' || (i % 12) as category, 'brand-' || (i % 40) as brand, 1.0 + i % 90 as price,
              100 as n_views, 10 as n_carts, 5 as n_purchases, 4 as n_buyers, 50.0 as revenue,
              (i + 1)::int as popularity_rank
            from range({items}) t(i)"""
        )
        # One past purchase for one user in 20 (what exclude_purchased reads).
        con.execute(
            f"""create table marts.interactions as select printf('u%07d', u) as user_id,
              printf('i%05d', (u * 7) % {items}) as item_id, date '{as_of}' as event_date,
              timestamp '{as_of} 12:00:00' as last_event_ts, 1 as n_views, 1 as n_carts, 1 as n_purchases,
              1 as quantity, 5.0 as revenue, 9.0 as weight
            from range(0, {users}, 20) t(u)"""
        )
    started = time.perf_counter()
    build_features(home / "warehouse.duckdb", home / "features", ROOT / "feature_repo", as_of)
    env["_features_s"] = f"{time.perf_counter() - started:.1f}"
    return env


async def closed_loop(base: str, path: str, make, concurrency: int) -> dict[str, float]:
    """`concurrency` clients each sending back to back until the time or count bound."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.perf_counter() + SECONDS_PER_RUN
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector, headers=AUTH) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS_PER_RUN:
                t0 = time.perf_counter()
                async with client.post(path, json=make()) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t0)
                codes[resp.status] = codes.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return summarize(latencies, codes, elapsed)


async def open_loop(base: str, path: str, make, rps: int, seconds: float) -> dict[str, float]:
    """Requests sent on a fixed schedule (not waiting for answers): latency at a sustained rate."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(base, connector=connector, headers=AUTH) as client:

        async def one() -> None:
            t0 = time.perf_counter()
            async with client.post(path, json=make()) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - t0)
            codes[resp.status] = codes.get(resp.status, 0) + 1

        started = time.perf_counter()
        tasks = []
        for n in range(int(rps * seconds)):
            delay = started + n / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return summarize(latencies, codes, elapsed)


def summarize(latencies: list[float], codes: dict[int, int], elapsed: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    errors = sum(n for code, n in codes.items() if code != 200)
    return {
        "requests": len(ms),
        "rps": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
    }


def request_makers(users: int, items: int) -> dict[str, object]:
    rnd = random.Random(7)

    def user() -> str:
        return f"u{rnd.randrange(users):07d}"

    def item() -> str:
        return f"i{rnd.randrange(items):05d}"

    return {
        "recommend": lambda: {"user_id": user(), "k": 10},
        "profile": lambda: {"user_id": user()},
        "events": lambda: {"user_id": user(), "item_id": item(), "event_type": "cart"},
    }


def component_times(env: dict[str, str], users: int) -> dict[str, float]:
    """Microseconds per call of each part of a request, in this process (no HTTP)."""
    from personaflow.core.settings import load
    from personaflow.ingest.live import LiveLog
    from personaflow.serving.online import OnlineFeatures, load_catalogue
    from personaflow.serving.ranking import Ranker
    from personaflow.training.registry.loading import load_production

    s = load()
    model = load_production(Path(env["PERSONAFLOW_PRODUCTION_POINTER"]))
    ranker = Ranker(model, load_catalogue(s.features_dir))
    online = OnlineFeatures(s.feature_repo_dir, s.features_dir)
    log = LiveLog(Path(env["PERSONAFLOW_LANDING_DIR"]) / "bench-components")
    today = datetime.now(UTC).date()
    event = {"event_type": "view", "item_id": "i00001", "price": 1.0, "quantity": 1, "event_ts": "x"}
    parts = {
        "score_topk": lambda n: ranker.recommend(f"u{n % users:07d}", 10),
        "online_read_user": lambda n: online.user(f"u{n % users:07d}"),
        "online_write_live": lambda n: online.record(f"bench{n % 500}", today, event),
        "fsync_append": lambda n: log.append(today, {"n": n, "event_id": f"bench-{n}"}),
    }
    out = {}
    for name, fn in parts.items():
        started = time.perf_counter()
        for n in range(500):
            fn(n)
        out[f"part_{name}_us"] = round((time.perf_counter() - started) / 500 * 1e6, 1)
    return out


def sustained(base: str, makers: dict, rps: int) -> dict[str, float]:
    return asyncio.run(open_loop(base, "/recommend", makers["recommend"], rps, OPEN_LOOP_SECONDS))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bentoml_phase(
    key: str, root: Path, port: int, env: dict[str, str], home: Path, makers: dict
) -> dict[str, object]:
    """`bentoml serve` from checkout `root` on `port`: every endpoint closed loop, /recommend open loop."""
    out: dict[str, object] = {}
    base = f"http://127.0.0.1:{port}"
    log_file = home / f"serve-{key}.log"
    if root == ROOT:
        proc = process.start("127.0.0.1", port, env=env, log_file=log_file)
    else:
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", process.SERVICE, "--host", "127.0.0.1",
                 "--port", str(port)],
                cwd=root, env={**os.environ, **env, "PYTHONPATH": str(root)}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
    try:
        out[f"{key}_ready_s"] = round(process.wait_ready(base, timeout=300, proc=proc), 1)
        for endpoint in ("recommend", "profile", "events"):
            for c in CONCURRENCY:
                res = asyncio.run(closed_loop(base, f"/{endpoint}", makers[endpoint], c))
                out.update({f"{key}_{endpoint}_c{c}_{k}": v for k, v in res.items()})
                print(key, endpoint, c, res, flush=True)
        for rps in OPEN_LOOP_RATES:
            res = sustained(base, makers, rps)
            out.update({f"{key}_recommend_at_{rps}rps_{k}": v for k, v in res.items()})
            print(key, "open loop", rps, res, flush=True)
        # what the floor must answer too, asked last: the events above no longer change the store
        out["_answers"] = sample_answers(base)
    finally:
        process.stop(proc)
    return out


def sample_requests() -> list[tuple[str, dict]]:
    """Fixed requests whose answers the server and the floor must give byte for byte: known users, one
    unknown id (fallback), a filter that reads the online store, and profiles."""
    users = [f"u{u:07d}" for u in range(0, 4_000, 250)] + ["nobody-at-all"]
    asks = [("/recommend", {"user_id": u, "k": 10}) for u in users]
    asks += [("/recommend", {"user_id": u, "k": 5, "exclude_purchased": True}) for u in users[:4]]
    return asks + [("/profile", {"user_id": u}) for u in users]


def sample_answers(base: str) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
        return [(r.status_code, r.content) for r in (client.post(p, json=b) for p, b in sample_requests())]


def run_size(
    name: str,
    users: int,
    items: int,
    workers: int = 1,
    redis: bool = False,
    floor: bool = True,
    baseline: Path | None = None,
) -> dict[str, object]:
    """One size on one stack: SQLite online store and one worker, or Redis and `workers` workers."""
    out: dict[str, object] = {f"{name}_n_users": users, f"{name}_n_items": items}
    with (
        tempfile.TemporaryDirectory(prefix="personaflow-bench-serving-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        home = Path(tmp)
        if redis:  # a local redis-server, durable as in production (appendfsync everysec)
            from personaflow.ops.local_servers import Redis

            server = Redis(home / "redis", free_port()).start()
            stack.callback(server.stop)
            os.environ["PERSONAFLOW_REDIS_URL"] = server.url
            stack.callback(os.environ.pop, "PERSONAFLOW_REDIS_URL", None)
        out[f"{name}_online_store"] = "redis" if redis else "sqlite"
        out[f"{name}_workers"] = workers
        started = time.perf_counter()
        env = prepare(home, users, items)
        env["PERSONAFLOW_SERVE_WORKERS"] = str(workers)
        if redis:
            env["PERSONAFLOW_REDIS_URL"] = os.environ["PERSONAFLOW_REDIS_URL"]
        out[f"{name}_features_build_s"] = float(env.pop("_features_s"))
        out[f"{name}_prepare_s"] = round(time.perf_counter() - started, 1)
        makers = request_makers(users, items)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # Before/after in the same conditions: another checkout's server on the same shop, right before
        # this one's (keys `<size>_baseline_bentoml_...`).
        roots = [("baseline_bentoml", baseline)] if baseline is not None else []
        served_answers = None
        for key, root in [*roots, ("bentoml", ROOT)]:
            out[f"{name}_{key}_load_avg_1m"] = round(os.getloadavg()[0], 2)
            phase = bentoml_phase(f"{name}_{key}", root, port, env, home, makers)
            answers = phase.pop("_answers", None)
            if key == "bentoml":
                served_answers = answers
            out.update(phase)
        if not floor:
            return out

        floor = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.serving_floor:app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    httpx.post(base + "/recommend", json={"user_id": "u0000000"}, timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            # The floor runs the same service code: same answers, or the ratio below compares other work.
            floor_answers = sample_answers(base)
            same = floor_answers == served_answers
            out[f"{name}_floor_same_answers"] = same
            out[f"{name}_floor_sample_requests"] = len(floor_answers)
            if not same:
                pairs = zip(sample_requests(), floor_answers, served_answers or [], strict=False)
                ask, floor_says, server_says = next(p for p in pairs if p[1] != p[2])
                raise SystemExit(f"the floor answers {ask} with {floor_says!r}, the server {server_says!r}")
            for endpoint in ("recommend", "profile"):
                for c in CONCURRENCY:
                    res = asyncio.run(closed_loop(base, f"/{endpoint}", makers[endpoint], c))
                    out.update({f"{name}_fastapi_{endpoint}_c{c}_{k}": v for k, v in res.items()})
                    print(name, "fastapi", endpoint, c, res, flush=True)
                    bento = out[f"{name}_bentoml_{endpoint}_c{c}_rps"]
                    ratio = round(res["rps"] / bento, 2)
                    out[f"{name}_ratio_{endpoint}_c{c}_fastapi_over_bentoml_rps"] = ratio
                    # issue 12's target reads the other way: BentoML's requests/s as a share of the floor's
                    for key in ("bentoml", "baseline_bentoml"):
                        if f"{name}_{key}_{endpoint}_c{c}_rps" in out:
                            share = out[f"{name}_{key}_{endpoint}_c{c}_rps"] / res["rps"]
                            out[f"{name}_share_{endpoint}_c{c}_{key}_of_fastapi_rps"] = round(share, 2)
            # issue 22's bar: one worker's peak requests/s (best concurrency) as a share of the floor's peak
            for endpoint in ("recommend", "profile"):
                for key in ("bentoml", "baseline_bentoml"):
                    if f"{name}_{key}_{endpoint}_c1_rps" not in out:
                        continue
                    ours = max(out[f"{name}_{key}_{endpoint}_c{c}_rps"] for c in CONCURRENCY)
                    floor_peak = max(out[f"{name}_fastapi_{endpoint}_c{c}_rps"] for c in CONCURRENCY)
                    out[f"{name}_peak_share_{endpoint}_{key}_of_fastapi_rps"] = round(ours / floor_peak, 3)
            for rps in OPEN_LOOP_RATES:
                res = sustained(base, makers, rps)
                out.update({f"{name}_fastapi_recommend_at_{rps}rps_{k}": v for k, v in res.items()})
        finally:
            process.stop(floor)
        # Last, once no server holds the online store: an open reader here slowed the server's writes.
        out.update({f"{name}_{k}": v for k, v in component_times(env, users).items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["retail"], choices=sorted(SIZES))
    parser.add_argument("--workers", type=int, default=1, help="BentoML workers (more than 1 needs --redis)")
    parser.add_argument("--redis", action="store_true", help="online store on a local redis-server")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare FastAPI floor")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file to merge the figures into")
    parser.add_argument("--baseline", type=Path, help="another checkout whose server runs first, same shop")
    args = parser.parse_args()
    results: dict[str, object] = {
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "seconds_per_run": SECONDS_PER_RUN,
        "online_store": "sqlite",
        "client": "aiohttp in one process on the same machine (httpx pools stall past ~16 connections)",
        # Other work on the box skews every figure: the 1-minute load average when the run started.
        "load_avg_1m": round(os.getloadavg()[0], 2),
        # idle: under half a core busy with other work when the run started (else the figures are
        # only comparable within this run: baseline, this checkout and the floor back to back)
        "machine_idle": os.getloadavg()[0] < 0.5,
    }
    for size in args.sizes:
        # the default stack keeps its historical keys; others are named after it: 1m_redis_w2_...
        name = size + ("_redis" if args.redis else "") + (f"_w{args.workers}" if args.workers > 1 else "")
        results[f"{name}_load_avg_1m_before"] = round(os.getloadavg()[0], 2)
        results.update(run_size(name, **SIZES[size], workers=args.workers, redis=args.redis,
                                floor=not args.no_floor, baseline=args.baseline))  # fmt: skip
        results[f"{name}_load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    out = args.results
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep figures of sizes not run this time
        results = {**json.loads(out.read_text()), **results}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
