"""Benchmark: the nightly training task's own code path (training.pipeline.train_candidate) per model,
on a synthetic shop of a given size: wall time, fit time, peak memory and NDCG@10 against the baselines.

A warehouse is built the way the nightly run builds it (ingest.generate -> ingest.load -> dbt), or an
existing one is reused (`--warehouse`, e.g. one kept by `benchmarks/transform.py --keep`). Each model
then trains in its own child process, so the peak RSS (os.wait4) is that model's alone. The device
is whatever the task would pick (`cuda` when present), so the same command on a GPU machine gives
the GPU figures. Writes benchmarks/results/nightly_training.json with flat keys `<size>_<model>_<what>`.

    make bench-training                              # 10m events: bpr (+history), two_tower, sasrec, gru
    python benchmarks/nightly_training.py --size small --models bpr
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from _common import merge_results, run_measured
from transform import SIZES, START, timed

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "nightly_training.json"
SHOPS = {"small": {"users": 4_000, "items": 1_000, "days": 60}, **SIZES}


def step_train(warehouse: str, bentoml_home: str, model: str, hybrid: bool, epochs: int, out: str) -> None:
    """The child: one nightly training run, its result written to `out`."""
    os.environ["BENTOML_HOME"] = bentoml_home
    import duckdb
    import torch

    from personaflow.training.data.features import purchases_source
    from personaflow.training.pipeline import train_candidate

    torch.set_num_threads(os.cpu_count() or 1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # features from the training rows + the catalogue mart (no Feast store is built here)
    with duckdb.connect(warehouse, read_only=True) as con:
        catalogue = con.execute("select item_id, category, brand, price from marts.item_features").df()
    result = train_candidate(
        Path(warehouse), holdout_days=7, seed=42, epochs=epochs, model=model, hybrid=hybrid,
        features=purchases_source(catalogue.set_index("item_id")),
    )  # fmt: skip
    Path(out).write_text(json.dumps(result, default=str))


def build_warehouse(work: Path, shop: dict) -> tuple[Path, dict]:
    landing, warehouse, state = work / "landing", work / "warehouse.duckdb", work / "dbt"
    last = START + timedelta(days=shop["days"] - 1)
    _, _, gen = timed("generate", landing=str(landing), **shop)
    timed("load", warehouse=str(warehouse), landing=str(landing), through=last.isoformat())
    timed("transform", warehouse=str(warehouse), state=str(state), as_of=last.isoformat(), full_refresh=False)
    return warehouse, {"events": gen["events"]}


def warehouse_sizes(warehouse: Path) -> dict:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(distinct user_id), count(distinct item_id), sum((n_purchases > 0)::int), "
            "(select count(*) from raw.events) from marts.interactions"
        ).fetchall()[0]
    names = ("interaction_rows", "users", "items", "purchase_rows", "raw_events")
    return dict(zip(names, map(int, rows), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10m", choices=list(SHOPS))
    parser.add_argument("--warehouse", help="reuse this warehouse instead of building one")
    parser.add_argument("--models", nargs="+", default=["bpr", "two_tower", "sasrec", "gru"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--hybrid-for", nargs="*", default=["bpr"], help="models also run blended with repeat-buy (+history)"
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.step:
        step_train(**json.loads(rest[0]))
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix=f"personaflow-bench-training-{args.size}-"))
    size = args.size
    out: dict[str, object] = {
        "cores": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    try:
        if args.warehouse:
            warehouse, built = Path(args.warehouse), {}
        else:
            warehouse, built = build_warehouse(work, SHOPS[size])
        out.update({f"{size}_{k}": v for k, v in {**built, **warehouse_sizes(warehouse)}.items()})
        for model in args.models:
            for hybrid in (False, True) if model in args.hybrid_for else (False,):
                name = f"{model}_history" if hybrid else model
                result_path = work / f"{name}.json"
                payload = {
                    "warehouse": str(warehouse), "bentoml_home": str(work / "bentoml"), "model": model,
                    "hybrid": hybrid, "epochs": args.epochs, "out": str(result_path),
                }  # fmt: skip
                seconds, peak = run_measured(
                    [sys.executable, __file__, "--step", "train", json.dumps(payload)],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                result = json.loads(result_path.read_text())
                m, p = result["metrics"], result["params"]
                row = {
                    "task_s": seconds, "fit_s": result["fit_seconds"], "peak_rss_mb": peak,
                    "best_epoch": p["best_epoch"], "ndcg_at_10": m["ndcg_at_10"],
                    "recall_at_10": m["recall_at_10"],
                    "popularity_ndcg_at_10": m["baseline_ndcg_at_10"],
                    "repeat_buy_ndcg_at_10": m["repeat_buy_ndcg_at_10"], "test_users": m["n_test_users"],
                }  # fmt: skip
                out.update({f"{size}_{name}_{k}": v for k, v in row.items()})
                merge_results(RESULTS, out)  # after every model: a long run keeps what it finished
                print(
                    f"{name:<16} task {seconds:7.1f}s fit {result['fit_seconds']:7.1f}s peak {peak:7.0f} MB "
                    f"ndcg@10 {m['ndcg_at_10']:.4f} (popularity {m['baseline_ndcg_at_10']:.4f}, "
                    f"repeat-buy {m['repeat_buy_ndcg_at_10']:.4f}) on {p['device']}",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
