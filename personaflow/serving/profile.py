"""A /profile answer's fields from one online-store read: the nightly profile plus live activity since.

Pure (a row in, fields out), so the HTTP handler in personaflow/serving/service.py stays a read and an answer.
Live counts add to the nightly ones; monetary adds live revenue; the churn risk says what it is based on
(the model's score, or recency when the model has none) and rises with no live activity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personaflow.serving.online import churn_risk, favourite_categories


def profile_fields(user_id: str, row: Mapping[str, Any], categories: Mapping[str, str | None]) -> dict | None:
    """The Profile fields for `user_id`, or None when neither the nightly features nor live events know it."""
    live = row["live"]
    if row.get("rfm_segment") is None and live["n_events"] == 0:
        return None
    nightly_last, live_last = row.get("last_event_ts"), row.get("live_last_event_ts")
    last = max((t for t in (nightly_last, live_last) if t), default=None)
    r_score = row.get("r_score")
    churn, basis = churn_risk(row.get("churn_score"), r_score, live["n_events"])
    purchased = list(row.get("purchased_items") or []) + live["purchased"]
    monetary = row.get("monetary")
    if monetary is not None or live["revenue"]:
        monetary = (monetary or 0.0) + live["revenue"]
    return {
        "user_id": user_id,
        "segment": row.get("rfm_segment"),
        "segment_id": row.get("segment_id"),
        "segment_label": row.get("segment_label"),
        "persona_id": row.get("persona_id"),
        "persona": row.get("persona"),
        "churn_score": row.get("churn_score"),
        "churn_risk": churn,
        "churn_basis": basis,
        "r_score": r_score,
        "f_score": row.get("f_score"),
        "m_score": row.get("m_score"),
        "recency_days": row.get("recency_days"),
        "frequency": row.get("frequency"),
        "monetary": monetary,
        "n_views": (row.get("n_views") or 0) + live["n_views"],
        "n_carts": (row.get("n_carts") or 0) + live["n_carts"],
        "n_purchases": (row.get("n_purchases") or 0) + live["n_purchases"],
        "n_returns": live["n_returns"],
        "n_sessions": row.get("n_sessions"),
        "favourite_categories": favourite_categories(purchased, categories),
        "last_event_ts": str(last)[:19] if last else None,
        "live_events": live["n_events"],
        "features_as_of": row["as_of"].isoformat() if row["as_of"] else None,
    }
