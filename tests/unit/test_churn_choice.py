"""Churn a marketer can trust (issue 27): the model is chosen out of time between logistic regression
and monotone gradient boosting, and a customer silent for most of the horizon is not rated "low"
unless the held-out customers of that silence say so."""

import numpy as np
import pandas as pd
import pytest

from personaflow.profiles.churn import FEATURES, calibration_by_recency, score_users, train_churn
from personaflow.serving.online import CHURN_MEDIUM

HORIZON = 90


def _labels(seed: int = 0, per_cutoff: int = 700) -> pd.DataFrame:
    """Three monthly cut-offs. Frequent buyers churn less, and the longer a customer is silent the
    likelier they left, whatever they bought before (a shop where past loyalty does not protect)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, cutoff in enumerate(pd.to_datetime(["2011-06-01", "2011-07-01", "2011-08-01"])):
        n = per_cutoff
        recency = rng.integers(0, 240, n)
        frequency = rng.geometric(0.15, n)
        logit = 0.045 * (recency - 45) - 0.08 * frequency + rng.normal(0, 0.3, n)
        frames.append(pd.DataFrame({
            "user_id": [f"u{k}-{i}" for i in range(n)], "cutoff_date": cutoff.date(),
            "recency_days": recency, "frequency": frequency, "monetary": frequency * rng.uniform(10, 40, n),
            "days_since_first_purchase": recency + rng.integers(0, 300, n),
            "n_orders_90d": np.where(recency < 90, np.maximum(1, frequency // 4), 0),
            "churned": rng.random(n) < 1 / (1 + np.exp(-logit)), "horizon_days": HORIZON,
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_the_model_is_chosen_out_of_time_and_every_candidate_is_reported():
    result = train_churn(_labels(), seed=1)
    assert set(result.candidates) == {"logistic", "gbdt"}
    best = max(c["val_roc_auc"] for c in result.candidates.values())
    assert result.candidates[result.model_name]["val_roc_auc"] >= best - 0.002
    # validated on the cut-off before the test one (2011-08-01): out of time, and never on the test rows
    assert "(by cut-off date: train < 2011-07-01, test = it)" in result.choice
    assert result.split.startswith("by cut-off date") and result.metrics["roc_auc"] > 0.75
    assert [b["band"] for b in result.calibration_by_recency][:2] == ["0-29 days", "30-59 days"]
    assert sum(b["n"] for b in result.calibration_by_recency) == result.metrics["n_test"]


def test_no_long_silent_customer_is_rated_low_unless_the_calibration_says_so():
    result = train_churn(_labels(), seed=1)
    today = pd.DataFrame({
        "user_id": ["like-17850", "recent", "silent-once"],
        "recency_days": [372, 3, 100], "frequency": [34, 34, 1], "monetary": [5000.0, 5000.0, 20.0],
        "days_since_first_purchase": [740, 740, 100], "n_orders_90d": [0, 12, 0],
    })  # fmt: skip
    scores = score_users(result.model, today).set_index("user_id")["churn_score"]
    observed = {b["lo"]: b["observed_rate"] for b in result.calibration_by_recency if b["n"]}
    band_of = lambda days: max(lo for lo in observed if lo <= days)  # noqa: E731
    for user, days in (("like-17850", 372), ("silent-once", 100)):
        assert days > 0.8 * HORIZON
        low = scores[user] < CHURN_MEDIUM
        assert not low or observed[band_of(days)] < CHURN_MEDIUM, (user, scores[user], observed)
    assert scores["recent"] < scores["like-17850"]


def test_gradient_boosting_never_lowers_churn_with_more_silence():
    labels = _labels(seed=3)
    result = train_churn(labels, seed=3)
    grid = pd.DataFrame({f: [labels[f].median()] * 50 for f in FEATURES}).assign(
        user_id=[f"g{i}" for i in range(50)], recency_days=np.linspace(0, 600, 50))
    # gbdt by its constraint, logistic (log1p of recency) by the sign it learned: never down with silence
    churn = score_users(result.model, grid)["churn_score"].to_numpy()
    assert np.all(np.diff(churn) >= -1e-9), result.model_name


def test_calibration_by_recency_counts_every_held_out_customer_once():
    recency = np.array([0, 29, 30, 95, 400, 1000])
    rows = calibration_by_recency(recency, np.array([0, 0, 1, 1, 1, 1]), np.full(6, 0.5))
    assert [r["n"] for r in rows] == [2, 1, 0, 1, 0, 2]
    assert rows[-1]["band"] == "365+ days" and rows[-1]["observed_rate"] == 1.0
    with pytest.raises(ValueError):
        calibration_by_recency(recency, np.zeros(5), np.zeros(6))


def _customers(labels: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """A customer table, bands drawn at random, for half the labelled customers (the rest unknown),
    valid from before the first cut-off."""
    rng = np.random.default_rng(seed)
    known = labels["user_id"].drop_duplicates().sample(frac=0.5, random_state=seed)
    ages = rng.choice(["19-24", "25-34", "35-44", "45-54", "55-64", "65+"], len(known))
    sizes = rng.choice(["1", "2", "3", "4", "5+"], len(known))
    return pd.DataFrame({"user_id": known.to_numpy(), "age": ages, "income": "50-74K",
                         "household_size": sizes, "kids_count": "0",
                         "valid_from": pd.Timestamp("2011-01-01")})  # fmt: skip


def _with_household_effect(labels: pd.DataFrame, customers: pd.DataFrame, seed: int = 6) -> pd.DataFrame:
    """Churn redrawn so that larger households stay: an effect no R/F/M feature carries."""
    from personaflow.profiles.demographics import lower_bound

    rng = np.random.default_rng(seed)
    size = labels["user_id"].map(customers.set_index("user_id")["household_size"].map(lower_bound)).fillna(0)
    logit = 0.045 * (labels["recency_days"] - 45) - 1.2 * (size - 2.5) + rng.normal(0, 0.3, len(labels))
    return labels.assign(churned=rng.random(len(labels)) < 1 / (1 + np.exp(-logit)))


def test_demographics_are_kept_only_where_validation_says_they_pay():
    from personaflow.profiles.churn import DEMOGRAPHIC_FEATURES, with_demographics

    labels = _labels(seed=4)
    customers = _customers(labels)
    paying = train_churn(with_demographics(_with_household_effect(labels, customers), customers), seed=1)
    assert set(paying.candidates) == {"logistic", "gbdt", "logistic+demographics", "gbdt+demographics"}
    assert paying.model_name.endswith("+demographics") and paying.features[-len(DEMOGRAPHIC_FEATURES):] == \
        DEMOGRAPHIC_FEATURES  # fmt: skip
    noise = train_churn(with_demographics(labels, _customers(labels, seed=9)), seed=1)
    assert not noise.model_name.endswith("+demographics"), noise.choice
    assert train_churn(labels, seed=1).candidates.keys() == {"logistic", "gbdt"}  # no table: not tried
    today = with_demographics(labels[labels["cutoff_date"] == labels["cutoff_date"].max()].drop(
        columns=["churned"]), customers, when=pd.Timestamp("2011-09-01").date())  # fmt: skip
    assert len(score_users(paying.model, today, paying.features)) == len(today)


def test_demographics_join_as_of_each_cutoff_never_later():
    from personaflow.profiles.churn import with_demographics

    labels = _labels(per_cutoff=5)
    user = labels.loc[labels["cutoff_date"] == labels["cutoff_date"].max(), "user_id"].iloc[0]
    versions = pd.DataFrame({
        "user_id": [user, user], "age": ["25-34", "45-54"], "income": ["Under 15K", "125-149K"],
        "household_size": ["1", "3"], "kids_count": ["None/Unknown", "1"],
        "valid_from": pd.to_datetime(["2011-01-01", "2011-08-02"]),  # the second after every cut-off
    })  # fmt: skip
    joined = with_demographics(labels, versions).set_index("user_id")
    row = joined.loc[user]
    assert (row["age"], row["income_k"], row["household_size"], row["kids"]) == (25, 7.5, 1, 0)
    assert row["has_demographics"] == 1 and joined["has_demographics"].sum() == 1
    assert len(joined) == len(labels)
    later = with_demographics(labels[labels["user_id"] == user], versions, when=pd.Timestamp("2011-09-01"))
    assert later["age"].iloc[0] == 45 and later["income_k"].iloc[0] == 125
