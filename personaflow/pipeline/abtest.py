"""`personaflow abtest report`: the running (or last) A/B test's exposures against the shop's purchases.

Purchases come from raw.events (what the nightly runs loaded) plus today's live events the API
accepted and the night has not loaded yet, so a test can be read during the day. The analysis itself
is personaflow/experiments/analysis.py (pure).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.experiments.analysis import attribute, compare, guardrails, verdict
from personaflow.experiments.exposures import read_exposures
from personaflow.experiments.state import exposures_dir, read

PURCHASES_SQL = """
    select user_id, item_id, event_ts as ts, quantity, price
    from raw.events where event_type = 'purchase' and user_id is not null and event_ts >= $1
"""


def purchases_since(s: Settings, since: pd.Timestamp) -> pd.DataFrame:
    frames = []
    where = wh.location(s)
    if wh.exists(where):
        with wh.connect(where, read_only=True) as con:
            try:
                loaded = con.execute(PURCHASES_SQL, [since.to_pydatetime()]).df()
            except wh.MISSING_TABLE:  # nothing loaded yet: only today's live purchases count
                loaded = None
        if loaded is not None:
            # revenue rounded here, not in SQL: PostgreSQL has no round(double precision, digits)
            revenue = (loaded.pop("quantity").astype(float) * loaded.pop("price").astype(float)).round(2)
            frames.append(loaded.assign(revenue=revenue))
    from personaflow.ingest.live import read_live

    for path in sorted((s.landing_dir / "live").glob("events_*.jsonl")):
        live = pd.DataFrame(read_live(path))
        if live.empty:
            continue
        live = live[live["event_type"] == "purchase"]
        frames.append(pd.DataFrame({
            "user_id": live["user_id"], "item_id": live["item_id"], "ts": pd.to_datetime(live["event_ts"]),
            "revenue": (live["quantity"].astype(float) * live["price"].astype(float)).round(2),
        }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=["user_id", "item_id", "ts", "revenue"])
    out = pd.concat(frames, ignore_index=True).drop_duplicates()
    return out[out["ts"] >= since]


def report(s: Settings, experiment: str | None = None, window_days: float = 7) -> dict[str, Any]:
    current = read(s.home)
    name = experiment or (current.experiment if current else None)
    if name is None:
        raise ValueError(
            "no A/B test is running: name one with --experiment, or start one (abtest start TAG)"
        )
    exposures = read_exposures(exposures_dir(s.home, name))
    if exposures.empty:
        return {"experiment": name, "verdict": "no exposures yet", "arms": {}}
    users = attribute(exposures, purchases_since(s, exposures["ts"].min()), window_days)
    comparisons = compare(users)
    arms = users.groupby("arm").agg(users=("user_id", "count"), conversion_rate=("converted", "mean"),
                                    revenue_per_user=("revenue", "mean"),
                                    rec_items_per_user=("rec_items", "mean")).round(6)  # fmt: skip
    return {
        "experiment": name, "running": current is not None and current.experiment == name,
        "window_days": window_days, "arms": arms.to_dict("index"), "guardrails": guardrails(exposures),
        "comparisons": [c.to_dict() for c in comparisons], "verdict": verdict(comparisons),
        "stopping_rule": "mSPRT always-valid p <= 0.05 on the conversion difference; may be read daily",
    }  # fmt: skip
