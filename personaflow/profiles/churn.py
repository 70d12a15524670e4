"""Churn: logistic regression or gradient-boosted trees on marts.churn_labels, chosen out of time and
held out by cut-off date, with calibration (overall and by recency band).

Pure functions; the stage in personaflow/pipeline/stages.py reads the mart and writes the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ("recency_days", "frequency", "monetary", "days_since_first_purchase", "n_orders_90d")
N_BINS = 10
# Gradient boosting may only raise churn with silence and lower it with orders: a customer silent
# longer than any in training (the trees cannot extrapolate) is never scored below one silent less.
MONOTONE = {"recency_days": 1, "frequency": -1, "monetary": 0, "days_since_first_purchase": 0,
            "n_orders_90d": -1}  # fmt: skip
RECENCY_BANDS = (0, 30, 60, 90, 180, 365)  # days; the last band is open-ended


class CannotTrain(ValueError):
    """The labels cannot train a classifier (none, or one class): a reason to skip, not a bug."""


@dataclass
class ChurnResult:
    split: str
    metrics: dict[str, float]
    calibration: list[dict[str, Any]]
    scores: pd.DataFrame  # user_id, cutoff_date, churn_score (latest cut-off)
    model: Any
    model_name: str = "logistic"
    # each candidate's out-of-time validation score and fit time, and why the chosen one won
    candidates: dict[str, dict[str, float]] | None = None
    choice: str = ""
    calibration_by_recency: list[dict[str, Any]] | None = None


def _candidates(seed: int) -> dict[str, Any]:
    """The models churn chooses among, cheapest first (a tie goes to the earlier one)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)
        ),
        "gbdt": lambda: HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
            monotonic_cst=[MONOTONE[f] for f in FEATURES], random_state=seed,
        ),
    }  # fmt: skip


def calibration_by_recency(recency: np.ndarray, y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Held-out customers per band of days since their last order: rows, mean prediction, observed
    churn rate. Where the model scores long-silent customers low, this says whether they stayed."""
    if not len(recency) == len(y) == len(p):
        raise ValueError(f"{len(recency)} recencies, {len(y)} labels, {len(p)} scores: not one per customer")
    rows = []
    edges = [*RECENCY_BANDS, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (recency >= lo) & (recency < hi)
        n = int(mask.sum())
        label = f"{lo}-{int(hi) - 1} days" if np.isfinite(hi) else f"{lo}+ days"
        rows.append({"band": label, "lo": lo, "n": n,
                     "mean_predicted": float(p[mask].mean()) if n else None,
                     "observed_rate": float(y[mask].mean()) if n else None})  # fmt: skip
    return rows


def choose_model(x: np.ndarray, y: np.ndarray, frame: pd.DataFrame, train: np.ndarray, seed: int
                 ) -> tuple[str, dict[str, dict[str, float]], str]:
    """Pick the candidate with the best ROC AUC on a validation cut inside the training rows (their
    latest cut-off: out of time), never on the test rows; the cheaper one wins a tie (within 0.002)."""
    import time

    from sklearn.metrics import roc_auc_score

    sub = frame.loc[train].reset_index(drop=True)
    fit, val, how = split_rows(sub, seed)
    xs, ys = x[train], y[train]
    if len(np.unique(ys[fit])) < 2 or len(np.unique(ys[val])) < 2:
        return "logistic", {}, "too few labelled rows for a validation cut: the simplest model"
    scores: dict[str, dict[str, float]] = {}
    for name, make in _candidates(seed).items():
        started = time.perf_counter()
        model = make().fit(xs[fit], ys[fit])
        auc = roc_auc_score(ys[val], model.predict_proba(xs[val])[:, 1])
        scores[name] = {"val_roc_auc": round(float(auc), 4), "fit_s": round(time.perf_counter() - started, 2)}
    best = max(s["val_roc_auc"] for s in scores.values())
    chosen = next(name for name, s in scores.items() if s["val_roc_auc"] >= best - 0.002)
    others = ", ".join(f"{n} {s['val_roc_auc']:.3f}" for n, s in scores.items() if n != chosen)
    why = f"{chosen}: validation ROC AUC {scores[chosen]['val_roc_auc']:.3f} ({how}) vs {others}"
    return chosen, scores, why


def _x(frame: pd.DataFrame) -> np.ndarray:
    # log1p: counts and spend are heavy-tailed; keeps the linear model from chasing a few whales
    return np.log1p(frame[list(FEATURES)].astype(float).fillna(0.0).clip(lower=0.0).to_numpy())


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Equal-width bins of the predicted probability: rows, mean prediction, observed churn rate."""
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        rows.append(
            {
                "bin": b, "lo": b / n_bins, "hi": (b + 1) / n_bins, "n": n,
                "mean_predicted": float(p[mask].mean()) if n else None,
                "observed_rate": float(y[mask].mean()) if n else None,
            }
        )  # fmt: skip
    return rows


def merge_sparse_bins(rows: list[dict[str, Any]], min_n: int = 20) -> list[dict[str, Any]]:
    """The calibration table with neighbouring bins merged until each holds at least `min_n`
    customers (a bin of one customer draws the curve to 0 or 1 and says nothing). Empty bins go; the
    last bin joins the one before it when it is still short."""
    merged: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    for row in rows:
        if not row.get("n"):
            continue
        if pending is None:
            pending = {**row}
        else:
            n = pending["n"] + row["n"]
            for key in ("mean_predicted", "observed_rate"):
                pending[key] = (pending[key] * pending["n"] + row[key] * row["n"]) / n
            pending.update(n=n, hi=row["hi"])
        if pending["n"] >= min_n:
            merged.append(pending)
            pending = None
    if pending is not None:
        if merged:
            last = merged[-1]
            n = last["n"] + pending["n"]
            for key in ("mean_predicted", "observed_rate"):
                last[key] = (last[key] * last["n"] + pending[key] * pending["n"]) / n
            last.update(n=n, hi=pending["hi"])
        else:
            merged.append(pending)
    return merged


def split_rows(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Test = the latest cut-off when there are two or more (train on earlier ones: no future rows in
    training); with a single cut-off, 25% of USERS held out (a user is never on both sides)."""
    cutoffs = np.sort(frame["cutoff_date"].unique())
    if len(cutoffs) >= 2:
        test = (frame["cutoff_date"] == cutoffs[-1]).to_numpy()
        return ~test, test, f"by cut-off date: train < {pd.Timestamp(cutoffs[-1]).date()}, test = it"
    users = frame["user_id"].unique()
    held = set(np.random.default_rng(seed).choice(users, size=max(1, len(users) // 4), replace=False))
    test = frame["user_id"].isin(held).to_numpy()
    return ~test, test, "by user: 25% of users held out (single cut-off)"


def train_churn(labels_with_features: pd.DataFrame, seed: int = 42) -> ChurnResult:
    """Fit on the training rows, report ROC AUC / PR AUC / Brier / calibration on the held-out rows,
    and score every user at the latest cut-off (churn_score = P(no order within the horizon))."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    frame = labels_with_features.reset_index(drop=True)
    missing = [c for c in ("user_id", "cutoff_date", "churned", *FEATURES) if c not in frame.columns]
    if missing:
        raise ValueError(f"churn labels lack column(s) {missing}")
    if frame.empty:
        raise CannotTrain("churn_labels is empty: the event log is shorter than the churn horizon")
    y = frame["churned"].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise CannotTrain(
            f"churn labels have a single class (churned={bool(y[0])} for all {len(y)} rows): "
            "a classifier cannot be trained; the log is likely shorter than the horizon or too small"
        )
    train, test, how = split_rows(frame, seed)
    for name, mask in (("training", train), ("test", test)):
        if len(np.unique(y[mask])) < 2:
            raise CannotTrain(f"churn {name} split ({how}) has a single class over {int(mask.sum())} rows")
    x = _x(frame)
    name, candidates, choice = choose_model(x, y, frame, train, seed)
    model = _candidates(seed)[name]()
    model.fit(x[train], y[train])
    p = model.predict_proba(x[test])[:, 1]
    metrics = {
        "roc_auc": float(roc_auc_score(y[test], p)),
        "pr_auc": float(average_precision_score(y[test], p)),
        "brier": float(brier_score_loss(y[test], p)),
        "base_rate": float(y[test].mean()),
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
    }
    latest = frame["cutoff_date"] == frame["cutoff_date"].max()
    scores = frame.loc[latest, ["user_id", "cutoff_date"]].reset_index(drop=True)
    scores["churn_score"] = model.predict_proba(x[latest.to_numpy()])[:, 1]
    by_recency = calibration_by_recency(frame.loc[test, "recency_days"].to_numpy(float), y[test], p)
    return ChurnResult(how, metrics, calibration_table(y[test], p), scores, model, name, candidates, choice,
                       by_recency)  # fmt: skip


def score_users(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """P(churn) for users described by FEATURES as of a day (e.g. today's marts.user_features), with
    the model train_churn fitted on past cut-offs: user_id, churn_score."""
    missing = [c for c in ("user_id", *FEATURES) if c not in features.columns]
    if missing:
        raise ValueError(f"frame to score lacks column(s) {missing}")
    out = features[["user_id"]].reset_index(drop=True)
    out["churn_score"] = model.predict_proba(_x(features))[:, 1] if len(features) else np.array([], float)
    return out
