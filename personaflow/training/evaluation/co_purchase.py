"""Which co-purchase measure ranks "bought together" items best, judged on orders placed later.

Rules are counted on the orders before a cut, exactly as the mart marts.co_purchase counts them (an
order holds an item or not; pairs in fewer than `min_orders` common orders are dropped). Each measure
ranks an item's rules; the held-out check is "bought together later": for every order after the cut
and every item in it that has rules (the anchor), the anchor's top-k rules are compared with the
other items of that same order (hit rate: at least one of them in the top k; precision and NDCG@k).

The measures (formulas as in dbt_project/models/marts/co_purchase.sql, which computes the chosen one):
- lift = n_ab * n / (n_a * n_b): 3-order pairs of rare items reach lifts in the thousands;
- confidence = n_ab / n_a: favours best sellers, whatever the anchor;
- cosine = n_ab / sqrt(n_a * n_b);
- shrunk lift = (n_ab + m) / (n_a * n_b / n + m): lift with m pseudo-orders of "as by chance" added to
  both sides, so a pair needs many common orders to move far from 1;
- confidence with a support floor: confidence, pairs under `floor` common orders left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

SHRINK_ORDERS = 10.0  # m of the shrunk lift (the mart's var co_purchase_shrink_orders)


@dataclass(frozen=True)
class Rules:
    """Directed rules a -> b (both directions of each pair) with their counts; n = orders counted."""

    a: np.ndarray
    b: np.ndarray
    n_ab: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray
    n: int
    items: np.ndarray  # item id per index


def count_rules(orders: pd.DataFrame, min_orders: int = 3) -> Rules:
    """`orders` has columns order_key, item_id (one row per line; repeats count once)."""
    pairs = orders[["order_key", "item_id"]].drop_duplicates()
    items, item_codes = np.unique(pairs["item_id"].to_numpy(), return_inverse=True)
    _, order_codes = np.unique(pairs["order_key"].to_numpy(), return_inverse=True)
    basket = sp.csr_matrix(
        (np.ones(item_codes.size), (order_codes, item_codes)), shape=(order_codes.max() + 1, items.size)
    )
    co = (basket.T @ basket).tocoo()
    per_item = np.asarray(basket.sum(axis=0)).ravel()
    keep = (co.row != co.col) & (co.data >= min_orders)
    a, b, n_ab = co.row[keep], co.col[keep], co.data[keep]
    return Rules(a, b, n_ab, per_item[a], per_item[b], int(basket.shape[0]), items)


def measures(
    r: Rules, shrinks: tuple[float, ...] = (SHRINK_ORDERS, 100.0), floors: tuple[int, ...] = (5, 10, 20)
) -> dict[str, np.ndarray]:
    """Score per rule for each measure (higher = shown first); -inf = not shown."""
    expected = r.n_a * r.n_b / r.n
    confidence = r.n_ab / r.n_a
    out = {
        "lift": r.n_ab / expected,
        "confidence": confidence,  # with the mart's own floor (min_orders) only
        "cosine": r.n_ab / np.sqrt(r.n_a * r.n_b),
    }
    out.update({f"shrunk_lift_m{m:g}": (r.n_ab + m) / (expected + m) for m in shrinks})
    out.update({f"confidence_floor{f}": np.where(r.n_ab >= f, confidence, -np.inf) for f in floors})
    return out


def top_lists(r: Rules, score: np.ndarray, k: int) -> dict[str, list[str]]:
    """item -> its k best other items by `score` (ties: more common orders, then id), lift > 1 only,
    as /similar_items shows them."""
    lift = r.n_ab * r.n / (r.n_a * r.n_b)
    ok = (lift > 1.0) & np.isfinite(score)
    frame = pd.DataFrame(
        {"a": r.a[ok], "b": r.items[r.b[ok]], "s": score[ok], "n_ab": r.n_ab[ok]}
    ).sort_values(["a", "s", "n_ab", "b"], ascending=[True, False, False, True], kind="stable")
    frame = frame.groupby("a", sort=False).head(k)
    return {r.items[a]: list(group["b"]) for a, group in frame.groupby("a", sort=False)}


def bought_together_later(lists: dict[str, list[str]], later: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Hit rate, precision and NDCG@k of `lists` against the later orders (see the module docstring);
    `anchors` = (order, item with rules) pairs judged, `coverage` = their share of all (order, item)
    pairs of later orders with 2+ items."""
    baskets = later[["order_key", "item_id"]].drop_duplicates().groupby("order_key")["item_id"].agg(set)
    baskets = baskets[baskets.map(len) >= 2]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits = precision = ndcg = 0.0
    anchors = total = 0
    for basket in baskets:
        for item in basket:
            total += 1
            ranked = lists.get(item)
            if not ranked:
                continue
            anchors += 1
            others = basket - {item}
            gains = np.array([other in others for other in ranked[:k]], dtype=np.float64)
            found = gains.sum()
            hits += found > 0
            precision += found / k
            ideal = discounts[: min(len(others), k)].sum()
            ndcg += float(gains @ discounts[: gains.size]) / ideal
    n = max(anchors, 1)
    return {
        f"hit_rate_at_{k}": hits / n,
        f"precision_at_{k}": precision / n,
        f"ndcg_at_{k}": ndcg / n,
        "anchors": anchors,
        "coverage": anchors / max(total, 1),
    }
