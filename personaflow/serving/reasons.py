"""Why an item is recommended: one reason per item of /recommend, from the source it can come from.

Checked in this order, the first that holds is the reason (so a reason always names a fact that is
true of tonight's data, and the most concrete one wins):
1. history: the user bought it: "bought 5 times, last 12 days ago", "bought yesterday" (days with a
   purchase of the item, counted to the nightly run's as-of day; live purchases since are not in it);
2. co_purchase: a co-purchase rule (lift > 1, enough common orders) links it to an item the user
   bought: "often bought with WHITE HANGING HEART T-LIGHT HOLDER, which you bought";
3. text: its name is among the nearest names of an item the user bought: "similar name to X you bought";
4. neighbours: a TIFU-KNN model's score for it comes from customers with purchases like the user's;
5. segment: a best seller in the user's RFM segment: "popular with Champions";
6. popularity: one of the shop's best sellers;
7. model: none of the above; the model ranked it there.
The per-user history comes from the features stage's purchase_history.parquet (marts.interactions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import pandas as pd

Source = Literal["history", "co_purchase", "text", "neighbours", "segment", "popularity", "model"]
SOURCES: tuple[str, ...] = Source.__args__
# Ranks of the overall popularity list worth calling "a best seller".
BEST_SELLER_RANKS = 100


@dataclass(frozen=True)
class Reason:
    source: Source
    text: str
    item_id: str | None = None  # the bought item a co_purchase / text reason names


@dataclass(frozen=True)
class PurchaseHistory:
    """user_id -> {item_id: (days bought, last day bought)}, the user's RFM segment, the as-of day."""

    bought: Mapping[str, Mapping[str, tuple[int, date]]] = field(default_factory=dict)
    segment: Mapping[str, str] = field(default_factory=dict)
    as_of: date | None = None
    # user_id -> items they returned in full (marts.returned_items): never recommended back to them
    returned: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def of(self, user_id: str) -> Mapping[str, tuple[int, date]]:
        return self.bought.get(user_id, {})

    def returned_by(self, user_id: str) -> frozenset[str]:
        return self.returned.get(user_id, frozenset())


def load_history(features_dir: Path) -> PurchaseHistory:
    """The features stage's purchase_history.parquet, or an empty history before a run that wrote it."""
    path = Path(features_dir) / "purchase_history.parquet"
    if not path.exists():
        return PurchaseHistory()
    returned: dict[str, set[str]] = {}
    returned_path = Path(features_dir) / "returned_items.parquet"
    if returned_path.exists():
        pairs = pd.read_parquet(returned_path)
        for user, item in zip(pairs["user_id"], pairs["item_id"], strict=True):
            returned.setdefault(user, set()).add(item)
    frame = pd.read_parquet(path)
    last = pd.to_datetime(frame["last_ts"]).dt.date
    bought: dict[str, dict[str, tuple[int, date]]] = {}
    for user, item, n, day in zip(frame["user_id"], frame["item_id"], frame["n_days"], last, strict=True):
        bought.setdefault(user, {})[item] = (int(n), day)
    segments = frame.dropna(subset=["rfm_segment"]).drop_duplicates("user_id")
    as_of = pd.to_datetime(frame["as_of_date"]).max()
    return PurchaseHistory(
        bought,
        dict(zip(segments["user_id"], segments["rfm_segment"], strict=True)),
        None if pd.isna(as_of) else as_of.date(),
        {user: frozenset(items) for user, items in returned.items()},
    )


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _ago(day: date, as_of: date | None) -> str:
    if as_of is None:
        return f"on {day.isoformat()}"
    days = max((as_of - day).days, 0)
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"


@dataclass(frozen=True)
class Context:
    """What the reasons of one answer read: the user's purchases and the served model's side tables."""

    bought: Mapping[str, tuple[int, date]]
    as_of: date | None
    segment: str | None
    co_purchase: Mapping[str, list[tuple]]  # item -> [(other, score, n_orders_both, lift)], best first
    text: Mapping[str, list[tuple[str, float]]]  # item -> [(other, cosine)], nearest first
    segment_buyers: Mapping[str, Mapping[str, float]]  # segment -> {item: buyers in the segment}
    best_sellers: Mapping[str, int]  # item -> rank in the overall popularity list (1 = best)
    names: Mapping[str, str | None]
    from_neighbours: frozenset[str] = frozenset()  # items a TIFU-KNN row scored (not bought)


def explain(item: str, ctx: Context, min_orders: int = 3) -> Reason:
    """The first reason of the module docstring's list that holds for `item`."""
    if item in ctx.bought:
        n, last = ctx.bought[item]
        when = _ago(last, ctx.as_of)
        return Reason("history", f"bought {when}" if n == 1 else f"bought {_times(n)}, last {when}")
    for other, _, n_both, lift in ctx.co_purchase.get(item, ()):
        if other in ctx.bought and lift > 1.0 and n_both >= min_orders:
            return Reason("co_purchase", f"often bought with {_name(other, ctx)}, which you bought", other)
    for other, _ in ctx.text.get(item, ()):
        if other in ctx.bought:
            return Reason("text", f"similar name to {_name(other, ctx)} you bought", other)
    if item in ctx.from_neighbours:
        return Reason("neighbours", "bought by customers whose purchases are like yours")
    if ctx.segment and item in ctx.segment_buyers.get(ctx.segment, {}):
        return Reason("segment", f"popular with {ctx.segment}")
    rank = ctx.best_sellers.get(item)
    if rank is not None and rank <= BEST_SELLER_RANKS:
        return Reason("popularity", f"one of the shop's best sellers (#{rank})")
    return Reason("model", "ranked high by the model for your purchases")


def _name(item: str, ctx: Context) -> str:
    return ctx.names.get(item) or item
