"""Who a model serves well: test users placed in an RFM segment at the cut, and metrics per segment.

The mean NDCG@10 hides who a model serves well (Champions are easy, first-time buyers are not). Each
test user is placed from their *training* rows only (nothing after the cut leaks in): recency and
frequency quintiles at the cut over the users with a purchase, on the grid of
dbt_project/macros/rfm_segment.sql, plus "first-time buyers" (one order before the cut) and
"no purchase yet" (browsed, never bought). An order is a distinct purchase time: the exact timestamp
of a purchases split (Online Retail's invoices), the day of a nightly interactions split.
`segment_metrics` is what the gate records (personaflow/training/gate.py) and the nightly report shows;
benchmarks/segments.py uses the same code on the real log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from personaflow.training.data.interactions import Split, cut_time, event_times

FIRST_TIME, NO_PURCHASE = "first-time buyers", "no purchase yet"


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
    """user_id -> segment at the cut, from training rows (module docstring)."""
    times = event_times(train)
    bought = train["n_purchases"].to_numpy() > 0 if "n_purchases" in train else np.ones(len(train), bool)
    rows = pd.DataFrame({"user_id": train["user_id"].to_numpy(), "ts": times.to_numpy()})[bought]
    per_user = rows.groupby("user_id").agg(last=("ts", "max"), orders=("ts", "nunique"))
    out = pd.Series(NO_PURCHASE, index=pd.Index(train["user_id"].unique(), name="user_id"), dtype=object)
    if per_user.empty:
        return out
    recency = (pd.Timestamp(cut) - per_user["last"]).dt.days
    n_tiles = min(5, len(per_user))  # a handful of buyers still get scores (fewer tiles, 5 = best)
    # quintiles, 5 = best, ties broken by order (as marts.user_features does by user id)
    r = pd.qcut((-recency).rank(method="first"), n_tiles, labels=False) + 1 + (5 - n_tiles)
    f = pd.qcut(per_user["orders"].rank(method="first"), n_tiles, labels=False) + 1 + (5 - n_tiles)
    graded = pd.Series([rfm_segment(int(a), int(b)) for a, b in zip(r, f, strict=True)], index=per_user.index)
    out.loc[graded.index] = graded.where(per_user["orders"] > 1, FIRST_TIME)
    return out


def split_segments(split: Split) -> pd.Series:
    """Segments of a split's users at its cut."""
    return segments(split.train, cut_time(split))


def segment_metrics(
    segment_of: pd.Series, models: dict[str, dict[str, np.ndarray]], k: int = 10
) -> dict[str, dict[str, Any]]:
    """segment -> {"n_users", model -> {"ndcg@k", "recall@k"}}, biggest segment first.

    `models`: name -> per-user metrics (training.evaluation.metrics.per_user_metrics) over the same
    sorted test users. Plain floats and ints (they go into the model's metadata and JSON reports)."""
    if not models:
        return {}
    users = next(iter(models.values()))["users"]
    labels = pd.Series(users).map(segment_of).fillna(NO_PURCHASE).to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for label in pd.Series(labels).value_counts().index:  # biggest first, ties by first seen
        mask = labels == label
        row: dict[str, Any] = {"n_users": int(mask.sum())}
        for name, per_user in models.items():
            row[name] = {
                f"ndcg@{k}": round(float(per_user[f"ndcg_at_{k}"][mask].mean()), 4),
                f"recall@{k}": round(float(per_user[f"recall_at_{k}"][mask].mean()), 4),
            }
        out[str(label)] = row
    return out
