"""`personaflow demo`: the whole nightly pipeline once, end to end, on embedded defaults.

generate -> load history -> Airflow runs personaflow_nightly for the last day -> `bentoml serve`
-> one real HTTP request -> summary -> server stopped. Safe to run twice: every step is idempotent.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import httpx
import typer

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings, export_tool_env
from personaflow.pipeline import ingest as ingest_stage

TABLES = ["raw.events", "marts.interactions", "marts.user_features", "marts.item_features", "marts.sessions"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def table_counts(s: Settings) -> dict[str, int]:
    with wh.connect(wh.location(s), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def ask(base_url: str, user_id: str, k: int = 10) -> dict:
    response = httpx.post(f"{base_url}/recommend", json={"user_id": user_id, "k": k}, timeout=30)
    response.raise_for_status()
    return response.json()


def run_demo(s: Settings, users: int, items: int, days: int, seed: int) -> dict:
    from personaflow.ingest.generate import generate_shop, write_shop
    from personaflow.orchestration.orchestrate import run_once
    from personaflow.serving.process import start, stop, wait_ready

    started = time.perf_counter()
    shop = generate_shop(users=users, items=items, days=days, seed=seed)
    files = write_shop(shop, s.landing_dir)
    last = shop.events["event_ts"].max().date()
    typer.echo(f"[generate] {len(shop.events):,} events in {len(files)} daily batches -> {s.landing_dir}")
    history = ingest_stage.ingest_history(last - timedelta(days=1), s)
    typer.echo(f"[history] loaded {len(history)} earlier batches not in the warehouse yet")

    typer.echo(f"[airflow] running personaflow_nightly for {last} ...")
    run = run_once(s, last)
    typer.echo(f"[airflow] run {run['state']}: " + ", ".join(f"{t}={st}" for t, st in run["tasks"].items()))
    if run["state"] != "success":
        raise typer.Exit(1)

    export_tool_env(s)
    port = free_port(s.serve_host)
    base_url = f"http://{s.serve_host}:{port}"
    proc = start(s.serve_host, port)
    try:
        wait_ready(base_url, timeout=120)
        user_id = shop.events["user_id"].iloc[-1]
        answer = ask(base_url, user_id, k=10)
    finally:
        stop(proc)
    typer.echo(f'[serve] POST {base_url}/recommend {{"user_id": "{user_id}", "k": 10}} ->')
    typer.echo(f"  model_version={answer['model_version']} fallback={answer['fallback']}")
    for rank, item in enumerate(answer["items"], start=1):
        typer.echo(f"  {rank:2d}. {item['item_id']}  score={item['score']:.3f}")

    reports = sorted((s.reports_dir / "training").glob("training_*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text())
    summary = {
        "rows": table_counts(s),
        "model_version": answer.get("model_version"),
        "candidate": report["tag"],
        "candidate_promoted": report["tag"] == answer.get("model_version"),
        "metrics": report["metrics"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    typer.echo("[summary] " + json.dumps(summary, indent=2, default=str))
    return summary
