"""Recommendation-popularity drift: does the model recommend more (or less) popular items than before?

A model sliding towards the best sellers (a popularity collapse after a retrain) or away from what
sells now (a stale model while tastes move) shows it in what it recommends before NDCG on a week-old
hold-out says anything. Pure functions: `profile` places one night's recommendations on that night's
popularity ranks of the catalogue (1 = most bought, marts.item_features.popularity_rank) — the share
among the top 1 % and top 10 % most popular items, and the share per popularity-rank decile plus a
bin for items the catalogue no longer ranks; `compare` reads two nights with personaflow/quality/drift.py's
PSI thresholds over those bins, and with the move of the top-1 % share on its own (a shift inside the
first decile, which the deciles cannot see).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from personaflow.quality.drift import MODERATE, SIGNIFICANT, psi_of_shares

DECILES = 10
TOP_1PCT_MOVE = 0.10  # an absolute move of the top-1 % share that is a warning by itself
BINS = [f"decile_{d}" for d in range(1, DECILES + 1)] + ["unranked"]


def top_rank(n_items: int, fraction: float) -> int:
    """The last popularity rank inside the top `fraction` of a catalogue of `n_items` (at least 1)."""
    return max(1, math.ceil(n_items * fraction))


def profile(recommended: Sequence[str], ranks: pd.Series) -> dict[str, Any]:
    """Where `recommended` (item ids, one per recommendation) sit on `ranks` (item_id -> rank 1..n).

    Plain floats for JSON and Parquet: n_recommendations, n_items, top_1pct_share, top_10pct_share,
    median_rank_percentile, and one share per BINS entry (they sum to 1)."""
    if ranks.empty:
        raise ValueError("no popularity ranks: tonight's item snapshot is empty")
    n_items = len(ranks)
    rank = pd.Series(list(recommended), dtype=object).map(ranks).astype(float)
    n = max(len(rank), 1)
    decile = np.ceil(rank / n_items * DECILES).clip(1, DECILES)
    counts = np.bincount(decile.fillna(0).to_numpy(dtype=int), minlength=DECILES + 1)  # 0: unranked
    shares = np.append(counts[1:], counts[0]) / n
    out: dict[str, Any] = {
        "n_recommendations": int(len(rank)),
        "n_items": int(n_items),
        "top_1pct_share": float((rank <= top_rank(n_items, 0.01)).sum() / n),
        "top_10pct_share": float((rank <= top_rank(n_items, 0.10)).sum() / n),
        "median_rank_percentile": float((rank / n_items).median()) if rank.notna().any() else None,
    }
    out.update({name: round(float(s), 6) for name, s in zip(BINS, shares, strict=True)})
    return out


def compare(reference: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """PSI over BINS of `current` against `reference`, the top-share moves, a status and the reasons."""
    value = psi_of_shares([reference[b] for b in BINS], [current[b] for b in BINS])
    move = current["top_1pct_share"] - reference["top_1pct_share"]
    reasons = []
    if value >= SIGNIFICANT:
        reasons.append(f"PSI {value:.2f} over popularity deciles >= {SIGNIFICANT}")
    if abs(move) >= TOP_1PCT_MOVE:
        reasons.append(f"top-1 % share moved {move:+.0%} (>= {TOP_1PCT_MOVE:.0%})")
    status = "significant" if reasons else "moderate" if value >= MODERATE else "stable"
    return {
        "psi": round(value, 4),
        "top_1pct_share_before": reference["top_1pct_share"],
        "top_1pct_share": current["top_1pct_share"],
        "top_10pct_share_before": reference["top_10pct_share"],
        "top_10pct_share": current["top_10pct_share"],
        "status": status,
        "reasons": reasons,
    }


def warning(compared: dict[str, Any], model_change: str | None = None) -> str:
    """The line for the drift report's warnings, the alert email and the Airflow note."""
    c = compared
    top10 = f"{c['top_10pct_share_before']:.0%} -> {c['top_10pct_share']:.0%}"
    top1 = f"{c['top_1pct_share_before']:.0%} -> {c['top_1pct_share']:.0%}"
    text = f"recommendations.popularity (PSI {c['psi']:.2f}; top-10 % share {top10}, top-1 % {top1}"
    return text + (f"; {model_change})" if model_change else ")")
