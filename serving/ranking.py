"""What one production model answers with: top-k with filters, popularity fallback, similar items.

A `Ranker` is built once per model version (at start and on a swap) and never mutated, so a request
that picked one up keeps a consistent model, catalogue and index even if a swap happens meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.registry import LoadedModel


@dataclass(frozen=True)
class Ranker:
    model: LoadedModel
    catalogue: pd.DataFrame  # item_id index; category, price
    categories: np.ndarray = field(init=False, repr=False)  # category per model item (None if unknown)
    unit_items: np.ndarray = field(init=False, repr=False)  # L2-normalised item embeddings

    def __post_init__(self) -> None:
        known = self.catalogue["category"].to_dict()
        cats = np.array([known.get(i) for i in self.model.maps.item_ids], dtype=object)
        norms = np.linalg.norm(self.model.item_emb, axis=1, keepdims=True)
        object.__setattr__(self, "categories", cats)
        object.__setattr__(self, "unit_items", self.model.item_emb / np.maximum(norms, 1e-12))

    @property
    def tag(self) -> str:
        return self.model.tag

    def category_of(self, item_id: str) -> str | None:
        value = self.catalogue["category"].get(item_id)
        return None if value is None or pd.isna(value) else str(value)

    def knows_category(self, category: str) -> bool:
        return bool((self.catalogue["category"] == category).any())

    def recommend(
        self, user_id: str, k: int, exclude: set[str] | None = None, category: str | None = None
    ) -> tuple[list[tuple[str, float, str | None]], str | None, int]:
        """(items as (id, score, category), fallback flag, number excluded as already bought)."""
        model = self.model
        exclude = exclude or set()
        idx = model.maps.user_index.get(user_id)
        if idx is None:
            return self._popular(k, exclude, category)
        scores = model.item_emb @ model.user_emb[idx] + model.item_bias
        mask = np.ones(scores.shape[0], dtype=bool)
        excluded = 0
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

    def _popular(
        self, k: int, exclude: set[str], category: str | None
    ) -> tuple[list[tuple[str, float, str | None]], str, int]:
        out, excluded = [], 0
        for item, score in self.model.popularity:
            if item in exclude:
                excluded += 1
                continue
            cat = self.category_of(item)
            if category is not None and cat != category:
                continue
            out.append((item, score, cat))
            if len(out) == k:
                break
        return out, "popularity", excluded

    def similar(self, item_id: str, k: int) -> list[tuple[str, float, str | None]] | None:
        """Top-k items by cosine of embeddings (the item itself left out); None for an unknown item."""
        idx = self.model.maps.item_index.get(item_id)
        if idx is None:
            return None
        sims = self.unit_items @ self.unit_items[idx]
        sims[idx] = -np.inf
        k = min(k, sims.shape[0] - 1)
        if k <= 0:
            return []
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self.model.maps.item_ids[i], float(sims[i]), self.categories[i]) for i in top]
