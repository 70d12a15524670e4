"""Churn: logistic regression or gradient-boosted trees on marts.churn_labels, chosen out of time and
held out by cut-off date, with calibration (overall and by recency band).

Where the shop has a customer table, each model is also tried with the customers' demographics as of
each cut-off (age, income, household size, kids, whether known): they are kept only where the
out-of-time validation says they pay (a paired bootstrap interval of the ROC AUC gain above 0).

Pure functions; the stage in personaflow/pipeline/stages.py reads the mart and writes the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
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
# Numbers read from the demographic bands (profiles/demographics.lower_bound); 0 with has_demographics
# 0 where a customer has no record (most households of a shop may have none).
DEMOGRAPHIC_FEATURES = ("age", "income_k", "household_size", "kids", "has_demographics")
WITH_DEMOGRAPHICS = "+demographics"


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
    features: tuple[str, ...] = FEATURES  # what the chosen model reads (score_users needs the same)


def demographic_features(customers: pd.DataFrame | None, when: pd.Timestamp | str) -> pd.DataFrame:
    """user_id + DEMOGRAPHIC_FEATURES of each customer with a record as of `when` (point in time: a
    version dated later is not seen). `customers` holds the versions (raw.customers: user_id, age,
    income, household_size, kids_count, valid_from). O(customers)."""
    from personaflow.profiles.demographics import as_of, lower_bound

    if customers is None or customers.empty:
        return pd.DataFrame(columns=["user_id", *DEMOGRAPHIC_FEATURES])
    known = as_of(customers, when)
    number = lambda col: known[col].map(lower_bound).astype(float) if col in known else np.nan  # noqa: E731
    income = number("income")
    return pd.DataFrame({
        "user_id": known["user_id"].astype(str), "age": number("age"),
        "income_k": np.where(income >= 1000, income / 1000, income),  # units read as thousands
        "household_size": number("household_size"), "kids": number("kids_count"), "has_demographics": 1.0,
    }).fillna(0.0)  # fmt: skip


def with_demographics(frame: pd.DataFrame, customers: pd.DataFrame | None, date_column: str = "cutoff_date",
                      when: date | None = None) -> pd.DataFrame:  # fmt: skip
    """`frame` (labels at cut-offs, or today's features) with DEMOGRAPHIC_FEATURES joined as of each
    row's cut-off (or `when`); zeros where unknown. None or an empty table: the frame unchanged."""
    if customers is None or customers.empty:
        return frame
    days = [when] if when is not None else sorted(pd.to_datetime(frame[date_column]).unique())
    parts = []
    for day in days:
        rows = frame if when is not None else frame[pd.to_datetime(frame[date_column]) == day]
        known = demographic_features(customers, pd.Timestamp(day) + pd.Timedelta(days=1) - pd.Timedelta(1))
        parts.append(rows.assign(user_id=rows["user_id"].astype(str)).merge(known, on="user_id", how="left"))
    out = pd.concat(parts, ignore_index=True)
    out[list(DEMOGRAPHIC_FEATURES)] = out[list(DEMOGRAPHIC_FEATURES)].astype(float).fillna(0.0)
    return out


def _candidates(seed: int, features: tuple[str, ...] = FEATURES) -> dict[str, Any]:
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
            monotonic_cst=[MONOTONE.get(f, 0) for f in features], random_state=seed,
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


def feature_sets(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The feature sets to try: the behaviour alone, and with demographics where the frame has them
    and some customer is known (else they cannot pay)."""
    sets = {"": FEATURES}
    if all(c in frame for c in DEMOGRAPHIC_FEATURES) and frame["has_demographics"].astype(float).sum() > 0:
        sets[WITH_DEMOGRAPHICS] = FEATURES + DEMOGRAPHIC_FEATURES
    return sets


def _model_features(name: str) -> tuple[str, ...]:
    return FEATURES + DEMOGRAPHIC_FEATURES if name.endswith(WITH_DEMOGRAPHICS) else FEATURES


def choose_model(
    x: np.ndarray, y: np.ndarray, frame: pd.DataFrame, train: np.ndarray, seed: int
) -> tuple[str, dict[str, dict[str, float]], str]:
    """Pick the candidate with the best ROC AUC on a validation cut inside the training rows (their
    latest cut-off: out of time), never on the test rows; the cheaper one wins a tie (within 0.002).
    Demographics are kept only when the best model with them beats the chosen one without them with a
    paired bootstrap 95 % interval of the validation ROC AUC gain above 0. `x` is `_x(frame)` over every
    column of the richest feature set (behaviour first)."""
    import time

    from sklearn.metrics import roc_auc_score

    sub = frame.loc[train].reset_index(drop=True)
    fit, val, how = split_rows(sub, seed)
    xs, ys = x[train], y[train]
    if len(np.unique(ys[fit])) < 2 or len(np.unique(ys[val])) < 2:
        return "logistic", {}, "too few labelled rows for a validation cut: the simplest model"
    scores: dict[str, dict[str, float]] = {}
    predicted: dict[str, np.ndarray] = {}
    for suffix, columns in feature_sets(frame).items():
        for base, make in _candidates(seed, columns).items():
            name = base + suffix
            cols = slice(0, len(columns))
            started = time.perf_counter()
            model = make().fit(xs[fit][:, cols], ys[fit])
            predicted[name] = model.predict_proba(xs[val][:, cols])[:, 1]
            scores[name] = {"val_roc_auc": round(float(roc_auc_score(ys[val], predicted[name])), 4),
                            "fit_s": round(time.perf_counter() - started, 2)}  # fmt: skip
    plain = {n: sc for n, sc in scores.items() if not n.endswith(WITH_DEMOGRAPHICS)}
    best = max(sc["val_roc_auc"] for sc in plain.values())
    chosen = next(name for name, sc in plain.items() if sc["val_roc_auc"] >= best - 0.002)
    extra = ""
    richer = {n: sc for n, sc in scores.items() if n not in plain}
    if richer:  # demographics must beat the chosen model without them beyond resampling noise
        rich = max(richer, key=lambda n: richer[n]["val_roc_auc"])
        lo, hi = auc_gain_interval(ys[val], predicted[rich], predicted[chosen], seed)
        scores[rich] |= {"gain_low": round(lo, 4), "gain_high": round(hi, 4)}
        if lo > 0:
            chosen, extra = rich, f"; demographics pay: gain interval [{lo:+.4f}, {hi:+.4f}]"
        else:
            extra = f"; demographics ({rich}) do not pay: gain interval [{lo:+.4f}, {hi:+.4f}] includes 0"
    others = ", ".join(f"{n} {sc['val_roc_auc']:.3f}" for n, sc in scores.items() if n != chosen)
    why = f"{chosen}: validation ROC AUC {scores[chosen]['val_roc_auc']:.3f} ({how}) vs {others}{extra}"
    return chosen, scores, why


def auc_gain_interval(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, seed: int,
                      resamples: int = 300, max_rows: int = 50_000) -> tuple[float, float]:  # fmt: skip
    """Paired bootstrap 95 % interval of ROC AUC(p_new) - ROC AUC(p_old) over the same rows (at most
    `max_rows`, sampled: the cost stays bounded on a large shop)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    if len(y) > max_rows:
        keep = rng.choice(len(y), max_rows, replace=False)
        y, p_new, p_old = y[keep], p_new[keep], p_old[keep]
    gains = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        gains.append(roc_auc_score(y[idx], p_new[idx]) - roc_auc_score(y[idx], p_old[idx]))
    if not gains:
        return 0.0, 0.0
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return float(lo), float(hi)


def _x(frame: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    # log1p: counts and spend are heavy-tailed; keeps the linear model from chasing a few whales
    return np.log1p(frame[list(features)].astype(float).fillna(0.0).clip(lower=0.0).to_numpy())


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
    richest = max(feature_sets(frame).values(), key=len)
    name, candidates, choice = choose_model(_x(frame, richest), y, frame, train, seed)
    features = _model_features(name)
    x = _x(frame, features)
    model = _candidates(seed, features)[name.removesuffix(WITH_DEMOGRAPHICS)]()
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
                       by_recency, features)  # fmt: skip


def score_users(model: Any, features: pd.DataFrame, columns: tuple[str, ...] = FEATURES) -> pd.DataFrame:
    """P(churn) for users described by `columns` (the ChurnResult's `features`) as of a day (e.g.
    today's marts.user_features, with demographics joined when the model reads them), with the model
    train_churn fitted on past cut-offs: user_id, churn_score."""
    missing = [c for c in ("user_id", *columns) if c not in features.columns]
    if missing:
        raise ValueError(f"frame to score lacks column(s) {missing}")
    out = features[["user_id"]].reset_index(drop=True)
    out["churn_score"] = (
        model.predict_proba(_x(features, columns))[:, 1] if len(features) else np.array([], float)
    )
    return out
