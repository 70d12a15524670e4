"""The review summary a /profile answer carries: tonight's `features_dir/customer_reviews.parquet`
(marts.customer_reviews, written by the reviews and audiences stages: personaflow/pipeline/reviews.py).

Re-read when the file changes (one stat per call), so a night's new summaries, or a customer erased by
`personaflow forget`, show at once. Memory: one small row per reviewer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

FILE = "customer_reviews.parquet"


class ReviewSummaries:
    def __init__(self, features_dir: Path) -> None:
        self.path = Path(features_dir) / FILE
        self._stamp: int | None = None
        self._rows: dict[str, dict[str, Any]] = {}

    def _refresh(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self._rows = None, {}
            return
        if stamp != self._stamp:
            frame = pd.read_parquet(self.path)
            self._rows = {str(r["user_id"]): summary(r) for r in frame.to_dict(orient="records")}
            self._stamp = stamp

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The customer's review summary, or None when they never reviewed (or the shop has no reviews)."""
        self._refresh()
        return self._rows.get(user_id)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return value.item() if hasattr(value, "item") else value


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
