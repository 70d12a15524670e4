"""The co-purchase rules /similar_items and /recommend's explanations read: the features stage's export
of marts.co_purchase (co_purchase.parquet), ranked by the mart's `score`.

The score is the rule's confidence over pairs with at least co_purchase_min_orders common orders, not
the lift: on Online Retail, 3-order pairs of rare items reach lifts in the thousands and outranked
pairs bought together in hundreds of orders; by "bought together later" (orders in a window after the
rules were counted: benchmarks/similar_items.py) confidence ranks twice as well as lift.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# item_id -> [(other_item_id, score, n_orders_both, lift)], best score first
Rules = dict[str, list[tuple[str, float, int, float]]]


def load_rules(features_dir: Path) -> Rules:
    """Rules with lift > 1 (bought together more often than by chance), best score first (ties: more
    common orders, then id); empty before a run that had the mart. A file written before the mart had
    `score` is ranked by its confidence, which is what `score` is."""
    path = Path(features_dir) / "co_purchase.parquet"
    if not path.exists():
        return {}
    frame = pd.read_parquet(path)
    score = frame["score"].fillna(frame["confidence"]) if "score" in frame else frame["confidence"]
    frame = frame.assign(score=score.astype(float)).loc[lambda f: f["lift"] > 1.0]
    frame = frame.sort_values(
        ["item_id", "score", "n_orders_both", "other_item_id"], ascending=[True, False, False, True]
    )
    out: Rules = {}
    columns = ["item_id", "other_item_id", "score", "n_orders_both", "lift"]
    for item, other, value, n_both, lift in frame[columns].itertuples(index=False, name=None):
        out.setdefault(item, []).append((other, float(value), int(n_both), float(lift)))
    return out
