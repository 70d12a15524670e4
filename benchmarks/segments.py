"""Benchmark: the recommenders per customer segment on the real Online Retail log (retail-30d split).

The mean NDCG@10 hides who a model serves well. Each test customer is placed in an RFM segment from
their training purchases only (personaflow/training/evaluation/segments.py, the code the nightly gate records
its per-segment metrics with), plus "first-time buyers" (one order before the cut), and every model is
scored per segment with one shared metric code. Models: the baselines the gate compares
with (popularity, repeat-buy, TIFU-KNN) and the nightly default (DeepFM over TIFU-KNN + history +
co-purchase candidates). NDCG@10 and Recall@10 per segment -> benchmarks/results/segments.json.

    make bench-segments
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "segments.json"
DATA = ROOT.parent / "shared" / "data" / "online-retail"
SHOWN = ("Champions", "Loyal Customers", "At Risk", "Hibernating", "Lost", "first-time buyers")


def main() -> None:
    from personaflow.training.data.features import purchases_source
    from personaflow.training.data.purchases import load_online_retail, split_purchases
    from personaflow.training.evaluation.metrics import per_user_metrics
    from personaflow.training.evaluation.segments import segment_metrics, segments
    from personaflow.training.export import score_users
    from personaflow.training.recipe import Recipe, build

    split = split_purchases(load_online_retail(DATA), test_days=30)
    segment_of = segments(split.train, split.cut_ts)
    # validation windows as long as the test window, as benchmarks/recommenders.py has them
    recipes = {
        "popularity": Recipe(model="popularity", val_days=30),
        "repeat_buy": Recipe(model="repeat_buy", val_days=30),
        "tifu": Recipe(model="tifu", val_days=30),
        "nightly_default_tifu_deepfm": Recipe(model="tifu", rerank=True, val_days=30),
    }
    result: dict[str, object] = {"cores": os.cpu_count(), "data": "online-retail retail-30d",
                                 "test_users": len(split.test_truth)}  # fmt: skip
    for name, recipe in recipes.items():
        started = time.perf_counter()
        built = build(recipe, split, features=purchases_source(None) if recipe.rerank else None)
        per_user = per_user_metrics(lambda users, e=built.exported: score_users(e, users), split)
        result[f"{name}_ndcg_at_10"] = round(float(per_user["ndcg_at_10"].mean()), 4)
        result[f"{name}_recall_at_10"] = round(float(per_user["recall_at_10"].mean()), 4)
        result[f"{name}_fit_s"] = round(time.perf_counter() - started, 1)
        for seg, row in segment_metrics(segment_of, {name: per_user}).items():
            key = seg.lower().replace(" ", "_").replace("-", "_")
            result[f"{name}_{key}_ndcg_at_10"] = row[name]["ndcg@10"]
            result[f"{name}_{key}_recall_at_10"] = row[name]["recall@10"]
            result[f"{key}_test_users"] = row["n_users"]
        print(name, {s: result.get(f"{name}_{s.lower().replace(' ', '_').replace('-', '_')}_ndcg_at_10")
                     for s in SHOWN})  # fmt: skip
    merge_results(RESULTS, result)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
