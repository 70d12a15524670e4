"""Bootstrap over test users: intervals of a mean metric, and the paired gain of one model over another."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of the mean over users resampled with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap(
    candidate: np.ndarray, baseline: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Mean per-user gain of candidate over baseline, its 95% interval, and P(gain <= 0) under resampling."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if diff.size == 0:
        return {"gain": 0.0, "gain_ci_low": 0.0, "gain_ci_high": 0.0, "p_not_better": 1.0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {
        "gain": float(diff.mean()),
        "gain_ci_low": float(lo),
        "gain_ci_high": float(hi),
        "p_not_better": float((means <= 0).mean()),
    }
