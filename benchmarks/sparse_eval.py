"""One evaluation pass of a sparse model (what the gate runs several times a night), ranked from its sparse
rows (evaluation/sparse_top.py) against the dense path it replaced (every test user x the catalogue), on
synthetic shops of the scale benchmark's shape (a tenth as many items as customers, 60 days, about 10
events a customer). Issue 21: the 1M night stopped in the gate's dense evaluation.

    make bench-sparse-eval                       # 100k customers
    .venv/bin/python benchmarks/sparse_eval.py --users 20000 100000

Writes benchmarks/results/sparse_eval.json: per size the test users, items, CPU seconds of one
per_user_metrics pass each way (this process's), whether the top-10 lists are identical, and how many
users the sparse path ranked from their dense row (a tie at its boundary).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import merge_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sparse_eval.json"
SESSIONS_PER_DAY = 0.033  # benchmarks/scale_night.py's shop: about 10 events per customer over 60 days


def measure(users: int) -> dict[str, object]:
    from personaflow.ingest.generate import generate_shop
    from personaflow.training.data.purchases import purchases_from_events, split_purchases
    from personaflow.training.evaluation.baselines import popularity_ranking
    from personaflow.training.evaluation.metrics import per_user_metrics
    from personaflow.training.recipe import Recipe, build
    from personaflow.training.registry.loading import LoadedModel

    shop = generate_shop(users=users, items=users // 10, days=60, seed=11, sessions_per_day=SESSIONS_PER_DAY)
    split = split_purchases(purchases_from_events(shop.events), test_days=7)
    built = build(Recipe(model="repeat_buy", val_days=7), split)
    scores = LoadedModel.of(built.exported, split.maps, popularity_ranking(split)).scores
    started = time.process_time()
    sparse = per_user_metrics(scores, split)
    sparse_s = time.process_time() - started
    started = time.process_time()
    dense = per_user_metrics(lambda u: scores(u), split)  # no `top`: the whole catalogue per user
    dense_s = time.process_time() - started
    p = f"n{users}"
    return {
        f"{p}_test_users": len(split.test_truth),
        f"{p}_items": split.maps.n_items,
        f"{p}_train_rows": len(split.train),
        f"{p}_repeat_buy_eval_sparse_cpu_s": round(sparse_s, 3),
        f"{p}_repeat_buy_eval_dense_cpu_s": round(dense_s, 3),
        f"{p}_repeat_buy_identical_top10": bool(np.array_equal(sparse["top"], dense["top"])),
        f"{p}_repeat_buy_fallback_users": int(scores.top.fallback_users),
        f"{p}_repeat_buy_ndcg_at_10": float(sparse["ndcg_at_10"].mean()),
    }


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--users", type=int, nargs="+", default=[100_000])
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "machine_idle": load < 0.5 * (os.cpu_count() or 1),
        "load_avg_1min_at_start": round(load, 2),
        "model": "repeat_buy as exported (export.ModelScores), one per_user_metrics pass, k 10",
        "data": "synthetic shops: generate_shop(users=N, items=N/10, days=60, seed=11, sessions_per_day="
        f"{SESSIONS_PER_DAY}), purchases, test window the last 7 days; N = "
        + ", ".join(str(n) for n in args.users),
    }
    for users in args.users:
        result.update(measure(users))
        print({k: v for k, v in result.items() if k.startswith(f"n{users}_")})
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    merge_results(RESULTS, result)


if __name__ == "__main__":
    main()
