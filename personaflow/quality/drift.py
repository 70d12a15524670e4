"""Drift: does tonight's population look like the nights before? PSI per feature, KS for scores.

Pure functions over two frames (the previous snapshot and tonight's). Population Stability Index over
quantile bins of the reference (deciles; categorical features by value), with the usual reading:
< 0.1 stable, 0.1-0.25 moderate shift (notice), >= 0.25 significant shift (warning). For scores
(churn) the two-sample Kolmogorov-Smirnov statistic is reported too. Thresholds are arguments, the
defaults are what the nightly run uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

EPS = 1e-4  # share floor of an empty bin: PSI stays finite, an emptied bin still counts heavily
MODERATE, SIGNIFICANT = 0.1, 0.25


@dataclass(frozen=True)
class Drift:
    feature: str
    psi: float
    ks: float | None
    n_reference: int
    n_current: int
    reference_mean: float | None
    current_mean: float | None
    status: str  # stable | moderate | significant

    def to_dict(self) -> dict:
        return asdict(self)


def psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """Population Stability Index of `current` against `reference` (nulls are a bin of their own)."""
    if reference.dtype == object or isinstance(reference.dtype, pd.CategoricalDtype):
        ref = reference.fillna("<null>").astype(str).value_counts(normalize=True)
        cur = current.fillna("<null>").astype(str).value_counts(normalize=True)
        keys = ref.index.union(cur.index)
        p, q = ref.reindex(keys, fill_value=0).to_numpy(), cur.reindex(keys, fill_value=0).to_numpy()
    else:
        ref, cur = reference.astype(float), current.astype(float)
        edges = (
            np.unique(np.nanquantile(ref.dropna(), np.linspace(0, 1, bins + 1))) if ref.notna().any() else []
        )
        inner = edges[1:-1] if len(edges) > 2 else np.array([])

        def shares(values: pd.Series) -> np.ndarray:
            counts = np.bincount(
                np.searchsorted(inner, values.dropna(), side="right"), minlength=len(inner) + 1
            )
            return np.append(counts, values.isna().sum()) / max(len(values), 1)

        p, q = shares(ref), shares(cur)
    return psi_of_shares(p, q)


def psi_of_shares(p: np.ndarray, q: np.ndarray) -> float:
    """PSI of bin shares `q` (tonight) against `p` (the reference), the same bins in the same order."""
    p, q = np.maximum(np.asarray(p, dtype=float), EPS), np.maximum(np.asarray(q, dtype=float), EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], scores: tuple[str, ...] = ()
) -> list[Drift]:
    """One row per column present in both frames, worst first."""
    rows = []
    for col in columns:
        if col not in reference or col not in current:
            continue
        value = psi(reference[col], current[col])
        numeric = pd.api.types.is_numeric_dtype(reference[col])
        ks = None
        if col in scores and reference[col].notna().any() and current[col].notna().any():
            ks = float(ks_2samp(reference[col].dropna(), current[col].dropna()).statistic)
        status = "significant" if value >= SIGNIFICANT else "moderate" if value >= MODERATE else "stable"
        rows.append(
            Drift(
                col,
                round(value, 4),
                round(ks, 4) if ks is not None else None,
                len(reference),
                len(current),
                round(float(reference[col].mean()), 4) if numeric else None,
                round(float(current[col].mean()), 4) if numeric else None,
                status,
            )  # fmt: skip
        )
    return sorted(rows, key=lambda d: -d.psi)
