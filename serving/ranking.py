"""What one production model answers with: top-k with filters, cold-user fallbacks, similar items.

A `Ranker` is built once per model version (at start, on a swap, and when the nightly run rewrites the
catalogue or the side tables) and never mutated, so a request that picked one up keeps a consistent
model, catalogue and index even if a swap happens meanwhile.

Cold users (unknown to the model): a user the online store knows (an RFM segment from the nightly run)
gets the items most bought by users of the same segment (`fallback: "segment"`), topped up with the
overall popularity list; anybody else gets the popularity list (`fallback: "popularity"`).

Similar items: co-purchase rules first (marts.co_purchase: bought together in at least
MIN_CO_PURCHASE_ORDERS orders and with lift > 1, best lift first; `source: "co_purchase"`, score = lift),
then the nearest items by cosine of the model's item embeddings (`source: "embedding"`, score = cosine)
until k. An item with no rules (new, or rarely bought) is answered by embeddings alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.registry.loading import LoadedModel

# Co-purchase rules resting on fewer common orders than this are noise for a shop front; the mart's own
# floor (dbt var co_purchase_min_orders) may be lower for analysis.
MIN_CO_PURCHASE_ORDERS = 3
Scored = tuple[str, float, str | None]


@dataclass(frozen=True)
class Ranker:
    model: LoadedModel
    catalogue: pd.DataFrame  # item_id index; category, price
    # item_id -> [(other_item_id, lift, n_orders_both)], best lift first (serving/online.py loads it)
    co_purchase: Mapping[str, list[tuple[str, float, int]]] = field(default_factory=dict)
    # rfm_segment -> [(item_id, buyers in the segment)], most bought first
    segments: Mapping[str, list[tuple[str, float]]] = field(default_factory=dict)
    # item_id -> [(other_item_id, cosine of their names)], nearest first: for items behaviour cannot place
    text: Mapping[str, list[tuple[str, float]]] = field(default_factory=dict)
    categories: np.ndarray = field(init=False, repr=False)  # category per model item (None if unknown)
    unit_items: np.ndarray = field(init=False, repr=False)  # L2-normalised item embeddings
    # item_id -> category / name of every catalogue item, as plain dicts: a pandas lookup per answered
    # item cost ~10 us, more than the scoring of the whole request
    category_by_item: dict[str, str | None] = field(init=False, repr=False)
    name_by_item: dict[str, str | None] = field(init=False, repr=False)
    known_categories: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        known = self.catalogue["category"].to_dict()
        # a shop's missing category is None here (never NaN): answers carry it as null
        cats = np.array([_text(known.get(i)) for i in self.model.maps.item_ids], dtype=object)
        norms = np.linalg.norm(self.model.item_emb, axis=1, keepdims=True)
        object.__setattr__(self, "categories", cats)
        object.__setattr__(self, "unit_items", self.model.item_emb / np.maximum(norms, 1e-12))
        names = self.catalogue["name"].to_dict() if "name" in self.catalogue else {}
        object.__setattr__(self, "category_by_item", {i: _text(c) for i, c in known.items()})
        object.__setattr__(self, "name_by_item", {i: _text(n) for i, n in names.items()})
        known_categories = frozenset(c for c in self.category_by_item.values() if c is not None)
        object.__setattr__(self, "known_categories", known_categories)

    @property
    def tag(self) -> str:
        return self.model.tag

    def category_of(self, item_id: str) -> str | None:
        return self.category_by_item.get(item_id)

    def name_of(self, item_id: str) -> str | None:
        return self.name_by_item.get(item_id)

    def knows_category(self, category: str) -> bool:
        return category in self.known_categories

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.model.maps.user_index

    def recommend(
        self,
        user_id: str,
        k: int,
        exclude: set[str] | None = None,
        category: str | None = None,
        segment: str | None = None,
    ) -> tuple[list[Scored], str | None, int]:
        """(items as (id, score, category), fallback flag, number excluded as already bought).
        `segment` (the user's RFM segment) only matters for a user the model does not know."""
        model = self.model
        exclude = exclude or set()
        idx = model.maps.user_index.get(user_id)
        if idx is None:
            return self._fallback(k, exclude, category, segment)
        scores = model.scores(idx)
        excluded = 0
        candidates = None  # the common case (no filter) builds no mask: scores straight to top-k
        if exclude or category is not None:
            mask = np.ones(scores.shape[0], dtype=bool)
            if exclude:
                hits = [model.maps.item_index[i] for i in exclude if i in model.maps.item_index]
                mask[hits] = False
                excluded = len(hits)
            if category is not None:
                mask &= self.categories == category
            candidates = np.flatnonzero(mask) if not mask.all() else None
        pool = scores if candidates is None else scores[candidates]
        k = min(k, pool.shape[0])
        if k == 0:
            return [], None, excluded
        top = np.argpartition(-pool, k - 1)[:k]
        top = top[np.argsort(-pool[top], kind="stable")]
        chosen = top if candidates is None else candidates[top]
        items = [(model.maps.item_ids[i], float(scores[i]), self.categories[i]) for i in chosen]
        return items, None, excluded

    def _fallback(
        self, k: int, exclude: set[str], category: str | None, segment: str | None
    ) -> tuple[list[Scored], str, int]:
        out: list[Scored] = []
        seen: set[str] = set()
        excluded = 0
        from_segment = 0
        lists = [self.segments.get(segment, []) if segment else [], self.model.popularity]
        for n, ranked in enumerate(lists):
            for item, score in ranked:
                if len(out) == k:
                    break
                if item in seen:
                    continue
                seen.add(item)
                if item in exclude:
                    excluded += 1
                    continue
                cat = self.category_of(item)
                if category is not None and cat != category:
                    continue
                out.append((item, float(score), cat))
                from_segment += n == 0
        return out, "segment" if from_segment else "popularity", excluded

    def similar(self, item_id: str, k: int) -> list[tuple[str, float, str | None, str]] | None:
        """Top-k (id, score, category, source): co-purchase rules, then embedding neighbours (see the
        module docstring), or for an item the model does not know, the items with the nearest names
        (source "text"); the item itself left out; None for an item no source knows."""
        rules = [
            (other, float(lift), self.category_of(other), "co_purchase")
            for other, lift, n_both in self.co_purchase.get(item_id, ())
            if lift > 1.0 and n_both >= MIN_CO_PURCHASE_ORDERS
        ][:k]
        idx = self.model.maps.item_index.get(item_id)
        if idx is None:  # an item the model never saw (new, or never bought): its nearest names fill in
            taken = {item_id, *(r[0] for r in rules)}
            near = self.text.get(item_id, ())
            named = [(o, c, self.category_of(o), "text") for o, c in near if o not in taken]
            if rules or named or item_id in self.co_purchase or item_id in self.catalogue.index:
                return (rules + named)[:k]
            return None
        taken = {item_id, *(r[0] for r in rules)}
        want = min(k - len(rules), len(self.model.maps.item_ids) - len(taken))
        if want <= 0:
            return rules
        sims = self.unit_items @ self.unit_items[idx]
        sims[[self.model.maps.item_index[i] for i in taken if i in self.model.maps.item_index]] = -np.inf
        top = np.argpartition(-sims, want - 1)[:want]
        top = top[np.argsort(-sims[top], kind="stable")]
        ids = self.model.maps.item_ids
        return rules + [(ids[i], float(sims[i]), self.categories[i], "embedding") for i in top]


def _text(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)
