"""Customers who never bought get an honest segment (profiles/segments.py): a reviews-only shop (the
amazon-all-beauty-shop manifest: each review one view, no purchase) used to label its reviewers with
purchase words ("recent browsers" at best, RFM's "New Customers" in the mart); they are now named for
what they did, and customers with neither purchases nor reviews stay "browsers"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personaflow.profiles.segments import describe_segments, fit_segments


def _reviewers(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A reviews-only shop's marts.user_features rows: no order, no spend, recency of the last review."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"r{i:04d}" for i in range(n)],
            "recency_days": rng.integers(0, 2000, n),
            "frequency": 0,
            "monetary": 0.0,
            "rfm_segment": "No Purchase Yet",
            "n_reviews": rng.integers(4, 13, n),
        }
    )


def test_a_reviews_only_shop_s_segments_say_no_purchase_yet() -> None:
    profile = _reviewers()
    result = fit_segments(profile, k_range=range(2, 5), seed=42)
    labels = set(result.assignments["segment_label"])
    assert labels and all("reviewers, no purchase yet" in label for label in labels), labels
    purchase_words = ("buyers", "spenders", "regulars", "one-timers")
    assert not any(word in label for label in labels for word in purchase_words)
    # the recent and the lapsed reviewers are still told apart, by their last review
    assert any(label.startswith("recent ") for label in labels)
    assert any(label.startswith("lapsed ") for label in labels)
    assert all(row["share_reviewers"] == 1.0 for row in result.segments)


def test_buyers_reviewers_and_browsers_each_keep_their_own_words() -> None:
    reviewers = _reviewers(40)
    browsers = reviewers.assign(user_id=[f"b{i:04d}" for i in range(40)], n_reviews=np.nan)  # never reviewed
    buyers = reviewers.assign(
        user_id=[f"c{i:04d}" for i in range(40)], frequency=6, monetary=500.0, rfm_segment="Champions",
        n_reviews=np.nan,
    )  # fmt: skip
    profile = pd.concat([buyers, reviewers, browsers], ignore_index=True)
    rows = describe_segments(profile, np.repeat([0, 1, 2], 40))
    by_id = {row["segment_id"]: row for row in rows}
    assert by_id[1]["label"].endswith("reviewers, no purchase yet") and by_id[1]["share_reviewers"] == 1.0
    assert by_id[2]["label"].endswith("browsers") and by_id[2]["share_reviewers"] == 0.0
    assert "no purchase" not in by_id[0]["label"] and by_id[0]["share_reviewers"] == 0.0
    # a shop without reviews: no review column, no review share, non-buyers are browsers as before
    plain = describe_segments(profile.drop(columns="n_reviews"), np.repeat([0, 1, 2], 40))
    assert all("share_reviewers" not in row for row in plain)
    assert all("browsers" in row["label"] and "review" not in row["label"] for row in plain[1:])
