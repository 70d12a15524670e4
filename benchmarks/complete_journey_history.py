"""Benchmark: The Complete Journey built from its folder with all its tables, then /profile for every
household, on this machine.

1. `personaflow history ../shared/data/complete-journey --manifest complete-journey` (transactions,
   demographics, the product catalogue, campaigns with their members, their coupons, coupon
   redemptions; the shipped
   manifest personaflow/ingest/mappings/complete-journey.toml) as one child process under
   `/usr/bin/time -v`: wall time, CPU time and its peak RSS, plus each stage's time and peak memory as
   the command reports them.
   The first model is trained with one fixed recipe (`--model`, default tifu, no re-ranker)
   instead of the nightly `auto` choice, which fits every option and takes far longer on 2 cores; or
   `--no-train` (then no model is served, and step 2 is skipped: /profile needs a production model).
2. `bentoml serve` on 127.0.0.1 (a free port) over that home, and POST /profile for every household of
   the transactions: how many answer, how many with demographics (801 have a record), how many with a
   campaign history (1,559 were reached by a campaign), how many with coupon redemptions and the coupons'
   departments in it (410 households redeemed), how many with review fields (the set has no reviews:
   none, and none invented), and the requests' time.
3. `personaflow export-customer` of one household with demographics and a redemption: seconds and size.

Writes benchmarks/results/complete_journey_history.json (flat keys with units, cores, data size, whether
the machine was idle at the start).

    make bench-complete-journey-history            # ARGS="--no-train" to skip the model and /profile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from _common import write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "complete_journey_history.json"
DATA = ROOT.parent / "shared" / "data" / "complete-journey"


def _time_v(stderr: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}: (.+)$", stderr, re.MULTILINE)
    if match is None:
        raise SystemExit(f"/usr/bin/time -v gave no '{label}'")
    return match.group(1).strip()


def _wall_seconds(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    return round(sum(p * 60**i for i, p in enumerate(reversed(parts))), 2)


def history(home: Path, env: dict[str, str], train: bool) -> dict[str, object]:
    args = ["/usr/bin/time", "-v", sys.executable, "-m", "personaflow.cli", "history", str(DATA),
            "--manifest", "complete-journey", *([] if train else ["--no-train"])]  # fmt: skip
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    (home / "history.stderr.log").write_text(done.stderr)
    (home / "history.summary.json").write_text(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"personaflow history failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return parse_history(done.stdout, done.stderr)


def parse_history(stdout: str, stderr: str) -> dict[str, object]:
    """The history's summary (stdout) and /usr/bin/time -v's report (the end of stderr) as flat keys."""
    summary = json.loads(stdout)
    out: dict[str, object] = {
        "history_wall_s": _wall_seconds(_time_v(stderr, "Elapsed (wall clock) time (h:mm:ss or m:ss)")),
        "history_peak_rss_mb": round(int(_time_v(stderr, "Maximum resident set size (kbytes)")) / 1024, 1),
        "history_user_cpu_s": float(_time_v(stderr, "User time (seconds)")),
        "history_system_cpu_s": float(_time_v(stderr, "System time (seconds)")),
        "history_stages_total_s": summary["total_seconds"],
        "events_rows_read": summary["rows"],
        "events_rows_set_aside": summary.get("rows_set_aside", 0),
        **{f"events_rows_set_aside_{k}": v for k, v in (summary.get("set_aside_reasons") or {}).items()},
        "days": summary["days"],
        "days_failed": len(summary["failed_days"]),
        "customers_with_events": summary["customers"],
        "products_with_events": summary["products"],
        "first_model_promoted": summary["production"] is not None,
        "as_of": summary["as_of"],
    }
    for stage, cost in summary["stages"].items():
        out[f"stage_{stage}_s"] = cost["seconds"]
        out[f"stage_{stage}_peak_rss_mb"] = cost["peak_rss_mb"]
    for kind, counts in summary.get("tables", {}).items():
        for key, value in counts.items():
            if isinstance(value, int):
                out[f"table_{kind}_{key}"] = value
    return out


async def _profiles(base: str, users: list[str]) -> tuple[list[dict | None], float]:
    limits = httpx.Limits(max_connections=8)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(8)

        async def one(user: str) -> dict | None:
            async with gate:
                answer = await client.post("/profile", json={"user_id": user})
            return answer.json() if answer.status_code == 200 else None

        answers = await asyncio.gather(*(one(u) for u in users))
    return list(answers), time.perf_counter() - started


def profiles(home: Path, env: dict[str, str]) -> dict[str, object]:
    """/profile for every household, through the real server."""
    from personaflow.serving import process

    households = sorted(
        pd.read_parquet(DATA / "transactions.parquet", columns=["household_id"])["household_id"]
        .astype(str)
        .unique()
    )
    demographics = set(
        pd.read_parquet(DATA / "demographics.parquet", columns=["household_id"])["household_id"].astype(str)
    )
    reached = set(
        pd.read_parquet(DATA / "campaigns.parquet", columns=["household_id"])["household_id"].astype(str)
    )
    redeemed = set(
        pd.read_parquet(DATA / "coupon_redemptions.parquet", columns=["household_id"])["household_id"]
        .astype(str)
    )
    port = _free_port()
    proc = process.start("127.0.0.1", port, env={**env, "PERSONAFLOW_SERVE_PORT": str(port)},
                         log_file=home / "serve.log")  # fmt: skip
    try:
        ready = process.wait_ready(f"http://127.0.0.1:{port}", timeout=300, proc=proc)
        answers, seconds = asyncio.run(_profiles(f"http://127.0.0.1:{port}", households))
    finally:
        process.stop(proc)
    pointer = json.loads((home / "registry" / "production.json").read_text())
    by_user = dict(zip(households, answers, strict=True))
    ok = {u: a for u, a in by_user.items() if a is not None}
    with_demo = {
        u for u, a in ok.items() if (a.get("demographics") or {}).get("label", "unknown") != "unknown"
    }
    with_campaigns = {u for u, a in ok.items() if a.get("campaigns") is not None}
    reached_any = {u for u, a in ok.items() if ((a.get("campaigns") or {}).get("campaigns_reached") or 0) > 0}
    with_coupons = {u for u, a in ok.items() if ((a.get("campaigns") or {}).get("coupons_redeemed") or 0) > 0}
    coupon_departments = {u for u in with_coupons if ok[u]["campaigns"].get("coupon_departments")}
    return {
        "served_model": pointer.get("tag"),
        "served_model_forced_past_gate": bool(pointer.get("forced")),
        "serve_ready_s": round(ready, 1),
        "profile_households_asked": len(households),
        "profile_households_answered": len(ok),
        # a household whose every line was set aside at import (price under 0.01) has no events: 404
        "profile_households_not_answered": len(households) - len(ok),
        "profile_households_with_demographics": len(with_demo),
        "profile_households_with_demographics_expected": len(demographics & set(households)),
        "profile_demographics_match_source": with_demo == (demographics & set(households)),
        "profile_households_with_campaign_fields": len(with_campaigns),
        "profile_households_reached_by_a_campaign": len(reached_any),
        "profile_households_reached_expected_by_end": len(reached & set(households)),
        "profile_households_with_redeem_score": sum(
            1 for a in ok.values() if (a.get("campaigns") or {}).get("redeem_score") is not None
        ),
        "profile_households_with_coupons_redeemed": len(with_coupons),
        "profile_households_with_coupons_redeemed_expected": len(redeemed & set(households)),
        "profile_coupons_match_source": with_coupons == (redeemed & set(households)),
        "profile_households_with_coupon_departments": len(coupon_departments),
        "profile_households_with_reviews": sum(1 for a in ok.values() if a.get("reviews") is not None),
        "profile_requests_s": round(seconds, 2),
        "profile_requests_per_s": round(len(households) / seconds, 1),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def export_one(env: dict[str, str]) -> dict[str, object]:
    """export-customer of a household with demographics and a coupon redemption."""
    redeemed = pd.read_parquet(DATA / "coupon_redemptions.parquet", columns=["household_id"])["household_id"]
    demo = set(pd.read_parquet(DATA / "demographics.parquet", columns=["household_id"])["household_id"])
    user = str(sorted(set(redeemed) & demo)[0])
    started = time.perf_counter()
    command = [sys.executable, "-m", "personaflow.cli", "export-customer", user]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"export-customer {user} failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout)
    return {
        "export_customer_user_id": user,
        "export_customer_s": round(seconds, 2),
        "export_customer_bytes": len(done.stdout.encode()),
        "export_customer_events": len(out["events"]),
        "export_customer_demographics_versions": len(out["demographics"]["versions"]),
        "export_customer_campaigns_reached": len(out["campaigns"]["reached"]),
        "export_customer_redemptions": len(out["campaigns"]["redemptions"]),
        "export_customer_warehouse_tables": len(out["warehouse"]),
        "export_customer_places_held": len(out["held_in"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-train", action="store_true", help="history --no-train; no /profile")
    parser.add_argument("--model", default="tifu", help="the first model's recipe (PERSONAFLOW_MODEL)")
    parser.add_argument("--home", type=Path, help="keep the built home here (default: a temporary folder)")
    parser.add_argument(
        "--from-run", type=Path, metavar="DIR",
        help="take step 1 from a run already made with the same command: DIR/home (the home), "
        "DIR/summary.json (its stdout), DIR/stderr.log (its stderr, ending in /usr/bin/time -v's report)",
    )  # fmt: skip
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    result: dict[str, object] = {
        "data": "The Complete Journey 2.0 (../shared/data/complete-journey)",
        "cores": os.cpu_count(),
        "load_avg_1m_at_start": round(load_start, 2),
        "machine_idle": load_start < 0.5,
        "machine_shared_with_other_jobs": load_start >= 0.5,
        "transaction_lines": int(pd.read_parquet(DATA / "transactions.parquet", columns=["week"]).shape[0]),
        "households": int(
            pd.read_parquet(DATA / "transactions.parquet", columns=["household_id"]).nunique().iloc[0]
        ),
        "catalogue_products": int(
            pd.read_parquet(DATA / "products.parquet", columns=["product_id"]).shape[0]
        ),
        "trained": not args.no_train,
        "model": None if args.no_train else args.model,
    }
    with tempfile.TemporaryDirectory(prefix="pf-cj-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PERSONAFLOW_HOME": str(home),
               "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
               "PERSONAFLOW_SMTP_PORT": "1", "PERSONAFLOW_MODEL": args.model,
               "PERSONAFLOW_RERANK": "false", "PERSONAFLOW_HYBRID": "false"}  # fmt: skip
        if args.from_run:
            home = args.from_run / "home"
            env["PERSONAFLOW_HOME"], env["PERSONAFLOW_FEATURES_DIR"] = str(home), str(home / "features")
            stdout, stderr = (
                (args.from_run / "summary.json").read_text(),
                (args.from_run / "stderr.log").read_text(),
            )
            result |= {"history_from_earlier_run": True, **parse_history(stdout, stderr)}
        else:
            result |= history(home, env, train=not args.no_train)
        print(json.dumps(result, indent=1), flush=True)
        if not args.no_train:
            result |= profiles(home, env)
        result |= export_one(env)
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()
