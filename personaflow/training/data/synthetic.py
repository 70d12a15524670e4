"""Interaction frames with a known taste structure, for tests and benchmarks (no warehouse needed).

Each user belongs to one of `n_groups`; 85% of their interactions go to their group's items, so a
model that learns anything beats random ranking, and the popularity baseline is beatable.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd


def make_interactions(
    n_users: int = 200,
    n_items: int = 60,
    n_rows: int = 4000,
    days: int = 40,
    n_groups: int = 4,
    seed: int = 0,
    start: date = date(2025, 1, 1),
) -> pd.DataFrame:
    """Rows shaped like marts.interactions (one per user, item, day), with weight = v + 3c + 5p."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, size=n_rows)
    group_of_user = np.arange(n_users) % n_groups
    own = rng.random(n_rows) < 0.85
    per_group = max(n_items // n_groups, 1)
    # Zipf-ish within the group so some items are more popular than others.
    rank = np.minimum(rng.zipf(1.6, size=n_rows) - 1, per_group - 1)
    items = np.where(
        own, (rank * n_groups + group_of_user[users]) % n_items, rng.integers(0, n_items, size=n_rows)
    )
    day = rng.integers(0, days, size=n_rows)
    views = rng.integers(1, 4, size=n_rows)
    carts = (rng.random(n_rows) < np.where(own, 0.4, 0.1)).astype(int)
    purchases = ((rng.random(n_rows) < np.where(own, 0.5, 0.1)) & (carts > 0)).astype(int)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in users],
            "item_id": [f"i{i:05d}" for i in items],
            "event_date": [start + timedelta(days=int(d)) for d in day],
            "n_views": views,
            "n_carts": carts,
            "n_purchases": purchases,
        }
    )
    frame = frame.groupby(["user_id", "item_id", "event_date"], as_index=False).sum()
    frame["weight"] = (frame["n_views"] + 3 * frame["n_carts"] + 5 * frame["n_purchases"]).astype(float)
    return frame.sort_values(["event_date", "user_id", "item_id"]).reset_index(drop=True)
