"""Benchmark: the recommenders per customer segment on the real Online Retail log (retail-30d split).

The mean NDCG@10 hides who a model serves well. Each test customer is placed in an RFM segment from
their training purchases only (recency and frequency quintiles at the cut, the grid of
dbt_project/macros/rfm_segment.sql), plus "first-time buyers" (one order before the cut), and every
model is scored per segment with one shared metric code. Models: the baselines the gate compares
with (popularity, repeat-buy, TIFU-KNN) and the nightly default (DeepFM over TIFU-KNN + history +
co-purchase candidates). Writes benchmarks/results/segments.json.

    make bench-segments
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "segments.json"
DATA = ROOT.parent / "shared" / "data" / "online-retail"
SHOWN = ("Champions", "Loyal Customers", "At Risk", "Hibernating", "Lost", "first-time buyers")


def rfm_segment(r: int, f: int) -> str:
    """The grid of dbt_project/macros/rfm_segment.sql (scores 1..5, 5 = best)."""
    if r == 5 and f >= 4:
        return "Champions"
    if 3 <= r <= 4 and f >= 4:
        return "Loyal Customers"
    if r >= 4 and 2 <= f <= 3:
        return "Potential Loyalists"
    if r >= 4 and f == 1:
        return "New Customers" if r == 5 else "Promising"
    if r == 3:
        return "Need Attention" if f == 3 else "About To Sleep"
    if f == 5:
        return "Cannot Lose Them"
    if f >= 3:
        return "At Risk"
    return "Lost" if r == 1 and f == 1 else "Hibernating"


def segments(train: pd.DataFrame, cut: pd.Timestamp) -> pd.Series:
    """user_id -> RFM segment at the cut, from training purchases (orders = distinct timestamps)."""
    per_user = train.groupby("user_id").agg(last=("ts", "max"), orders=("ts", "nunique"))
    recency = (cut - per_user["last"]).dt.days
    # quintiles, 5 = best, ties by user id (as marts.user_features does)
    r = pd.qcut((-recency).rank(method="first"), 5, labels=False) + 1
    f = pd.qcut(per_user["orders"].rank(method="first"), 5, labels=False) + 1
    out = pd.Series([rfm_segment(int(a), int(b)) for a, b in zip(r, f, strict=True)], index=per_user.index)
    return out.where(per_user["orders"] > 1, "first-time buyers")


def main() -> None:
    from training.data.features import purchases_source
    from training.data.purchases import load_online_retail, split_purchases
    from training.evaluation.metrics import per_user_metrics
    from training.export import score_users
    from training.recipe import Recipe, build

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
        frame = pd.DataFrame({"user": per_user["users"], "ndcg": per_user["ndcg_at_10"]})
        frame["segment"] = frame["user"].map(segment_of).fillna("unknown")  # users are ids
        result[f"{name}_ndcg_at_10"] = round(float(frame["ndcg"].mean()), 4)
        result[f"{name}_fit_s"] = round(time.perf_counter() - started, 1)
        for seg, rows in frame.groupby("segment"):
            key = seg.lower().replace(" ", "_").replace("-", "_")
            result[f"{name}_{key}_ndcg_at_10"] = round(float(rows["ndcg"].mean()), 4)
            result[f"{key}_test_users"] = int(len(rows))
        print(name, {s: result.get(f"{name}_{s.lower().replace(' ', '_').replace('-', '_')}_ndcg_at_10")
                     for s in SHOWN})  # fmt: skip
    merge_results(RESULTS, result)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
