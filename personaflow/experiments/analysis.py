"""The A/B report: attribute purchases to exposures, compare the arms, decide when it is safe to stop.

Attribution: a user's conversion is any purchase within `window_days` after their first exposure;
their revenue is what those purchases brought; "items from recommendations" counts purchased items
that one of their exposures had recommended. Per arm: users, conversion rate, revenue per user, items
from recommendations per user, and the guardrails (error rate and p99 latency of the answers).

Stopping rule: a mixture sequential probability ratio test (mSPRT, Johari et al. 2017) on each
metric's difference of means. Its p-value is *always valid*: the report may be read every day and
the test stopped the first day p <= alpha without inflating false positives (a plain t-test read daily
would). Until then the verdict is "keep running". The confidence interval shown beside it is the
usual fixed-horizon one, for reading the size of the effect, not for stopping.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

METRICS = ("converted", "revenue", "rec_items")


@dataclass(frozen=True)
class Comparison:
    metric: str
    control: float
    challenger: float
    difference: float
    ci_low: float
    ci_high: float
    always_valid_p: float
    significant: bool

    def to_dict(self) -> dict:
        return asdict(self)


def attribute(exposures: pd.DataFrame, purchases: pd.DataFrame, window_days: float = 7) -> pd.DataFrame:
    """One row per exposed user: arm, converted (0/1), revenue, rec_items.

    exposures: user_id, arm, ts, items (list of recommended item ids); purchases: user_id, item_id, ts,
    revenue. A user seen in both arms (a changed share) keeps the arm of their first exposure."""
    first = exposures.sort_values("ts").groupby("user_id").agg(arm=("arm", "first"), first_ts=("ts", "first"))
    shown = exposures.explode("items").dropna(subset=["items"])
    shown = shown.groupby("user_id")["items"].agg(set)
    joined = purchases.merge(first.reset_index(), on="user_id")
    inside = joined[(joined["ts"] >= joined["first_ts"]) &
                    (joined["ts"] <= joined["first_ts"] + pd.Timedelta(days=window_days))]  # fmt: skip
    recommended = [i in shown.get(u, ()) for u, i in zip(inside["user_id"], inside["item_id"], strict=True)]
    from_recs = inside.loc[np.asarray(recommended, dtype=bool)]  # (a bare empty list would pick columns)
    out = first[["arm"]].copy()
    out["converted"] = out.index.isin(inside["user_id"]).astype(float)
    out["revenue"] = inside.groupby("user_id")["revenue"].sum().reindex(out.index, fill_value=0.0)
    out["rec_items"] = from_recs.groupby("user_id").size().reindex(out.index, fill_value=0).astype(float)
    return out.reset_index()


def msprt_p(control: np.ndarray, challenger: np.ndarray, tau2: float | None = None) -> float:
    """Always-valid p-value of the mSPRT for a difference of means (normal mixture, variance tau2)."""
    if len(control) < 2 or len(challenger) < 2:
        return 1.0
    diff = challenger.mean() - control.mean()
    var = challenger.var(ddof=1) / len(challenger) + control.var(ddof=1) / len(control)
    if var <= 0:
        return 1.0
    tau2 = tau2 if tau2 is not None else max(control.var(ddof=1), 1e-12) * 0.01  # a 10%-of-sd effect prior
    log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * diff**2 / (2 * var * (var + tau2))
    return float(min(1.0, math.exp(-log_lr)))


def compare(users: pd.DataFrame, alpha: float = 0.05) -> list[Comparison]:
    """Challenger against control on every metric (users: the frame `attribute` returns)."""
    out = []
    for metric in METRICS:
        a = users.loc[users["arm"] == "control", metric].to_numpy(float)
        b = users.loc[users["arm"] == "challenger", metric].to_numpy(float)
        if len(a) < 2 or len(b) < 2:
            continue
        diff = b.mean() - a.mean()
        se = math.sqrt(b.var(ddof=1) / len(b) + a.var(ddof=1) / len(a))
        p = msprt_p(a, b)
        low, high = diff - 1.96 * se, diff + 1.96 * se
        values = (float(round(v, 6)) for v in (a.mean(), b.mean(), diff, low, high, p))  # plain floats: JSON
        out.append(Comparison(metric, *values, bool(p <= alpha)))
    return out


def guardrails(exposures: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Error rate and p99 latency (ms) of the answers per arm (exposures: arm, status, latency_ms)."""
    out = {}
    for name, rows in exposures.groupby("arm"):
        out[str(name)] = {
            "answers": len(rows),
            "error_rate": round(float((rows["status"] >= 500).mean()), 6),
            "p99_latency_ms": round(float(np.percentile(rows["latency_ms"], 99)), 3),
        }
    return out


def verdict(comparisons: list[Comparison], primary: str = "converted") -> str:
    main = next((c for c in comparisons if c.metric == primary), None)
    if main is None:
        return "not enough users in both arms yet"
    if not main.significant:
        return f"keep running: no difference in {primary} yet (always-valid p {main.always_valid_p:.3f})"
    better = "challenger" if main.difference > 0 else "control"
    effect = f"{main.difference:+.4f}, always-valid p {main.always_valid_p:.4f}"
    return f"stop: {better} is better on {primary} ({effect})"
