"""User segments: K-means over log-scaled, standardised RFM features, k chosen by silhouette.

Pure functions (frame in, frames out); the stage in personaflow/pipeline/stages.py does the I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ("recency_days", "frequency", "monetary")
CRITERION = "highest mean silhouette (euclidean, standardised log1p features) over k_range; ties -> smaller k"
SILHOUETTE_SAMPLE = 5000  # silhouette is O(n^2): score a fixed-seed sample on big shops
# Below this many users there is nothing worth naming as segments (a new shop, a test night).
MIN_USERS = 10


class TooFewUsers(ValueError):
    """Not enough users (or distinct profiles) to cluster: a reason to skip the stage, not a bug."""


@dataclass
class SegmentResult:
    k: int
    criterion: str
    silhouettes: dict[int, float]
    assignments: pd.DataFrame  # user_id, segment_id, segment_label
    segments: list[dict[str, Any]] = field(default_factory=list)


def _matrix(profile: pd.DataFrame) -> np.ndarray:
    missing = [c for c in ("user_id", *FEATURES) if c not in profile.columns]
    if missing:
        raise ValueError(f"profile frame lacks column(s) {missing}")
    x = profile[list(FEATURES)].astype(float).fillna(0.0).clip(lower=0.0).to_numpy()
    # log1p: spend and order counts are heavy-tailed; without it one whale is a segment of its own
    x = np.log1p(x)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def fit_segments(profile: pd.DataFrame, k_range: range = range(2, 9), seed: int = 42) -> SegmentResult:
    """Cluster users on (recency_days, frequency, monetary) of marts.user_features.

    Criterion for k: the k in `k_range` with the highest mean silhouette coefficient (computed on at
    most 5,000 users sampled with `seed`, kept to 6 decimals: the digits the criterion compares);
    ties go to the smaller k. K-means uses 10 restarts.

    The same users give the same result whatever order they come in (a warehouse returns rows in no
    set order, and K-means' seeded starts pick rows by position): rows are fitted, and assignments
    returned, in user_id order. So a re-run night writes the same segments and report (issue 26).
    Memory: O(users) (one sorted copy of the profile).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    if "user_id" in profile.columns:
        profile = profile.sort_values("user_id", kind="stable", ignore_index=True)
    x = _matrix(profile)
    if len(x) < MIN_USERS:
        raise TooFewUsers(f"segments need at least {MIN_USERS} users; got {len(x)}")
    n_distinct = len(np.unique(x.round(9), axis=0))
    ks = [k for k in k_range if 2 <= k < n_distinct]
    if not ks:
        raise TooFewUsers(
            f"segments need at least 3 distinct user profiles; got {n_distinct} in {len(x)} rows"
        )
    silhouettes: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    sample = min(len(x), SILHOUETTE_SAMPLE)
    # One thread: K-means adds its threads' partial sums in the order they finish, so on a machine
    # with 3 or more cores the centres, and which of the 10 starts wins, can change between two runs
    # on the same rows. One thread is as fast here (3 features; 9.6 s vs 14.4 s for 200k users on
    # 2 cores).
    with threadpool_limits(limits=1):
        for k in ks:
            labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
            score = silhouette_score(x, labels, sample_size=sample, random_state=seed)
            silhouettes[k] = round(float(score), 6)  # the digits the criterion compares
            fits[k] = labels
    best = max(ks, key=lambda k: (round(silhouettes[k], 6), -k))
    segments = describe_segments(profile, fits[best])
    names = {d["segment_id"]: d["label"] for d in segments}
    assignments = pd.DataFrame(
        {"user_id": profile["user_id"].to_numpy(), "segment_id": fits[best].astype(int)}
    )
    assignments["segment_label"] = assignments["segment_id"].map(names)
    return SegmentResult(best, CRITERION, silhouettes, assignments, segments)


def _label(
    rank_recent: float,
    rank_monetary: float,
    rank_frequency: float,
    mean_frequency: float,
    reviewer_share: float = 0.0,
) -> str:
    """Rule on the segment's rank among segments (0 = lowest, 1 = highest); recency rank 1 = most recent.
    `reviewer_share`: the share of the segment's users with a review (0 where the shop has none)."""
    when = "recent" if rank_recent >= 0.5 else "lapsed"
    if mean_frequency < 0.5 and reviewer_share >= 0.5:
        # mostly users who never bought but wrote reviews (a reviews-only shop is all of them): what they
        # did is review, and their recency is their last review's, not a purchase's
        what = "reviewers, no purchase yet"
    elif mean_frequency < 0.5:
        what = "browsers"  # mostly users who never bought
    elif mean_frequency < 1.5:
        what = "one-timers"
    elif rank_monetary >= 0.75:
        what = "big spenders"
    elif rank_frequency >= 0.5:
        what = "regulars"
    else:
        what = "occasional buyers"
    return f"{when} {what}"


def describe_segments(profile: pd.DataFrame, segment_ids: np.ndarray) -> list[dict[str, Any]]:
    """One readable row per segment: size, share, mean RFM, dominant rfm_segment, top categories, label.
    With an `n_reviews` column (the shop has reviews), also the share of its users who reviewed, which
    names a segment of reviewers who never bought as such."""
    frame = profile.assign(segment_id=np.asarray(segment_ids).astype(int))
    means = frame.groupby("segment_id")[list(FEATURES)].mean()
    # ranks among segments scaled to [0, 1] (0 = lowest, 1 = highest, so with k = 2 one is 0 and one 1);
    # recency inverted so that 1 = most recent
    span = max(len(means) - 1, 1)
    ranks = (means.rank(method="average") - 1) / span
    ranks["recency_days"] = ((-means["recency_days"]).rank(method="average") - 1) / span
    out: list[dict[str, Any]] = []
    for seg, rows in frame.groupby("segment_id"):
        cats: Counter[str] = Counter()
        if "favourite_categories" in rows:
            for value in rows["favourite_categories"].dropna():
                cats.update(c.strip() for c in str(value).split(",") if c.strip())
        rfm = rows["rfm_segment"].mode() if "rfm_segment" in rows else pd.Series(dtype=str)
        m = means.loc[seg]
        reviewed = None
        if "n_reviews" in rows:
            reviewed = round(float((rows["n_reviews"].fillna(0).astype(float) > 0).mean()), 4)
        out.append(
            {
                "segment_id": int(seg),
                "size": len(rows),
                "share": round(len(rows) / len(frame), 4),
                "mean_recency_days": round(float(m["recency_days"]), 2),
                "mean_frequency": round(float(m["frequency"]), 2),
                "mean_monetary": round(float(m["monetary"]), 2),
                "dominant_rfm_segment": str(rfm.iloc[0]) if len(rfm) else None,
                # ties by name, not by which row came first
                "top_categories": [c for c, _ in sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))[:3]],
                "label": _label(
                    ranks.loc[seg, "recency_days"],
                    ranks.loc[seg, "monetary"],
                    ranks.loc[seg, "frequency"],
                    float(m["frequency"]),
                    reviewed or 0.0,
                ),
                **({"share_reviewers": reviewed} if reviewed is not None else {}),
            }
        )
    # the rule can give two segments the same words; keep labels unique so they work as a feature value
    seen: Counter[str] = Counter(d["label"] for d in out)
    for d in out:
        if seen[d["label"]] > 1:
            d["label"] = f"{d['label']} ({d['segment_id']})"
    return out
