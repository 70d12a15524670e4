"""What one production model answers with: top-k with filters, cold-user fallbacks, similar items.

A `Ranker` is built once per model version (at start, on a swap, and when the nightly run rewrites the
catalogue or the side tables) and never mutated, so a request that picked one up keeps a consistent
model, catalogue and index even if a swap happens meanwhile.

Cold users (unknown to the model): a user the online store knows (an RFM segment from the nightly run)
gets the items most bought by users of the same segment (`fallback: "segment"`), topped up with the
overall popularity list; anybody else gets the popularity list (`fallback: "popularity"`).

Similar items: co-purchase rules first (marts.co_purchase: bought together in at least
MIN_CO_PURCHASE_ORDERS orders and with lift > 1, best score (confidence) first:
personaflow/serving/co_purchase.py;
`source: "co_purchase"`),
then the nearest items by cosine of the model's item embeddings (`source: "embedding"`, score = cosine)
until k. An item with no rules (new, or rarely bought) is answered by embeddings alone.

Every recommended item has a reason (personaflow/serving/reasons.py): its history, a co-purchase or name link
to something the user bought, neighbours, the segment's or the shop's best sellers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from personaflow.serving.reasons import Context, PurchaseHistory, Reason, explain
from personaflow.training.registry.loading import LoadedModel

# Co-purchase rules resting on fewer common orders than this are noise for a shop front; the mart's own
# floor (dbt var co_purchase_min_orders) may be lower for analysis.
MIN_CO_PURCHASE_ORDERS = 3
Scored = tuple[str, float, str | None]


@dataclass(frozen=True)
class Ranker:
    model: LoadedModel
    catalogue: pd.DataFrame  # item_id index; category, price
    # item_id -> [(other_item_id, score, n_orders_both, lift)], best score first
    # (personaflow/serving/co_purchase.py)
    co_purchase: Mapping[str, list[tuple[str, float, int, float]]] = field(default_factory=dict)
    # rfm_segment -> [(item_id, buyers in the segment)], most bought first
    segments: Mapping[str, list[tuple[str, float]]] = field(default_factory=dict)
    # item_id -> [(other_item_id, cosine of their names)], nearest first: for items behaviour cannot place
    text: Mapping[str, list[tuple[str, float]]] = field(default_factory=dict)
    # what each user bought (personaflow/serving/reasons.py): the facts /recommend's reasons state
    history: PurchaseHistory = field(default_factory=PurchaseHistory)
    categories: np.ndarray = field(init=False, repr=False)  # category per model item (None if unknown)
    unit_items: np.ndarray = field(init=False, repr=False)  # L2-normalised item embeddings
    _segment_buyers: dict = field(init=False, repr=False)  # segment -> {item: buyers}
    _best_sellers: dict = field(init=False, repr=False)  # item -> rank in the popularity list (1 = best)
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
        buyers = {seg: dict(ranked) for seg, ranked in self.segments.items()}
        object.__setattr__(self, "_segment_buyers", buyers)
        ranks = {item: n + 1 for n, (item, _) in enumerate(self.model.popularity)}
        object.__setattr__(self, "_best_sellers", ranks)
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
        returned = self.history.returned_by(user_id)  # sent back in full: never offered again
        idx = model.maps.user_index.get(user_id)
        if idx is None:
            return self._fallback(k, exclude, category, segment, returned)
        scores = model.scores(idx)
        excluded = 0
        candidates = None  # the common case (no filter) builds no mask: scores straight to top-k
        if exclude or returned or category is not None:
            mask = np.ones(scores.shape[0], dtype=bool)
            if exclude:
                hits = [model.maps.item_index[i] for i in exclude if i in model.maps.item_index]
                mask[hits] = False
                excluded = len(hits)
            if returned:
                mask[[model.maps.item_index[i] for i in returned if i in model.maps.item_index]] = False
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

    def reasons(self, user_id: str, items: list[str], segment: str | None = None) -> list[Reason]:
        """One reason per item (personaflow/serving/reasons.py); `segment` for a user the nightly run did not
        see."""
        bought = self.history.of(user_id)
        ctx = Context(
            bought=bought,
            as_of=self.history.as_of,
            segment=self.history.segment.get(user_id, segment),
            co_purchase=self.co_purchase,
            text=self.text,
            segment_buyers=self._segment_buyers,
            best_sellers=self._best_sellers,
            names=self.catalogue["name"] if "name" in self.catalogue else {},
            from_neighbours=self._neighbour_items(user_id, items, bought),
        )
        return [explain(item, ctx, MIN_CO_PURCHASE_ORDERS) for item in items]

    def _neighbour_items(self, user_id: str, items: list[str], bought) -> frozenset[str]:
        """Items of `items` a TIFU-KNN model scored for the user without the user having bought them:
        that score comes from the user's nearest customers (personaflow/training/evaluation/tifu.py)."""
        model, idx = self.model, self.model.maps.user_index.get(user_id)
        if idx is None or model.history is None or not model.kind.startswith("tifu"):
            return frozenset()
        index = model.maps.item_index
        known = [(i, index[i]) for i in items if i in index and i not in bought]
        if not known:
            return frozenset()
        row = model.history[idx]  # sparse: a catalogue-wide dense row would cost every request
        scored = set(row.indices[row.data > 0].tolist())
        return frozenset(i for i, j in known if j in scored)

    def _fallback(
        self, k: int, exclude: set[str], category: str | None, segment: str | None,
        returned: frozenset[str] = frozenset(),
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
                if item in returned:
                    continue
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
            (other, float(score), self.category_of(other), "co_purchase")
            for other, score, n_both, lift in self.co_purchase.get(item_id, ())
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
