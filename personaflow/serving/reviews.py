"""The review summary a /profile answer carries: tonight's `features_dir/customer_reviews.parquet`
(marts.customer_reviews, written by the reviews and audiences stages: personaflow/pipeline/reviews.py).

Re-read when the file changes (one stat per call), so a night's new summaries, or a customer erased by
`personaflow forget`, show at once. Memory: one small row per reviewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.serving.file_cache import FileCache
from personaflow.serving.file_cache import plain as _plain

FILE = "customer_reviews.parquet"


def _summaries(path: Path) -> dict[str, dict[str, Any]]:
    return {str(r["user_id"]): summary(r) for r in pd.read_parquet(path).to_dict(orient="records")}


class ReviewSummaries:
    def __init__(self, features_dir: Path) -> None:
        self._cache = FileCache(Path(features_dir) / FILE, _summaries, {})

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The customer's review summary, or None when they never reviewed (or the shop has no reviews)."""
        return self._cache.get().get(user_id)


def _keywords(value: Any) -> list[str]:
    value = _plain(value)
    return [k.strip() for k in str(value).split(",") if k.strip()] if value else []


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """One mart row as the Profile's `reviews` field."""
    last = _plain(row.get("last_review_ts"))
    return {
        "n_reviews": int(row["n_reviews"]),
        "mean_rating": _plain(row.get("mean_rating")),
        "mean_sentiment": _plain(row.get("mean_sentiment")),
        "share_negative": _plain(row.get("share_negative")),
        "last_review_sentiment": _plain(row.get("last_review_sentiment_label")),
        "last_review_ts": str(last)[:19] if last is not None else None,
        "top_complaint_aspects": _keywords(row.get("top_complaint_aspects")),
        "top_complaint_keywords": _keywords(row.get("top_complaint_keywords")),
    }
