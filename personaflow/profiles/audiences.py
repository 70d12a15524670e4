"""Audiences: the customers a marketer can act on, picked by their profile.

An `AudienceSpec` is a set of filters over the nightly profile (marts.user_features plus the K-means
segment, behaviour persona and churn score of the same night) and over what the customers bought: RFM
segment, K-means segment, persona (personaflow/profiles/personas.py), churn-score range, recency /
frequency / monetary ranges, country, and affinity — bought an item of a category, a given item, or an
item whose name contains a word. Every filter given must hold (AND); a list inside one filter is any-of
(OR). Pure functions: frames in, frames out; reading the warehouse and saving definitions are the stage's
business (personaflow/pipeline/audiences.py).

    "Champions who have not bought in 60 days":  rfm_segments=["Champions"], min_recency_days=60
    "Champions who buy in bulk":                   rfm_segments=["Champions"],
                                                   personas=["bulk narrow-range buyers"]
    "high churn risk who bought candles":          min_churn_score=0.6, bought_text=["CANDLE"]
    "customers whose last review was negative":    last_review_sentiment="negative"

Review filters read the profile's review columns (marts.customer_reviews: personaflow/pipeline/reviews.py);
a customer without reviews matches none of them.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pandas as pd

from personaflow.profiles.demographics import AGE_BANDS, HOUSEHOLDS, INCOME_BANDS, UNKNOWN

# What an audience list carries per customer: enough for a campaign tool and for a person to check it.
# The files the audiences stage writes beside the serving tables and the API reads back.
PROFILES_FILE, BOUGHT_FILE = "audience_profiles.parquet", "audience_bought.parquet"
COLUMNS = [
    "user_id", "rfm_segment", "segment_label", "persona", "churn_score", "recency_days", "frequency",
    "monetary", "country", "favourite_categories",
]  # fmt: skip
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# The RFM grid's names (dbt_project/macros/rfm_segment.sql; "Unscored" only for scores outside 1..5), and
# "No Purchase Yet" for a customer without an order (marts.user_features).
RFM_SEGMENTS = (
    "Champions", "Loyal Customers", "Potential Loyalists", "New Customers", "Promising", "Need Attention",
    "About To Sleep", "Cannot Lose Them", "At Risk", "Hibernating", "Lost", "No Purchase Yet",
)  # fmt: skip


REVIEW_SENTIMENTS = ("negative", "positive")


class AudienceError(ValueError):
    """A definition that cannot select anyone sensibly; the message names the field."""


@dataclass(frozen=True)
class AudienceSpec:
    name: str = "adhoc"
    description: str = ""
    rfm_segments: list[str] = field(default_factory=list)
    segment_labels: list[str] = field(default_factory=list)
    personas: list[str] = field(default_factory=list)  # tonight's persona names (they change with k)
    min_churn_score: float | None = None
    max_churn_score: float | None = None
    min_recency_days: int | None = None
    max_recency_days: int | None = None
    min_frequency: int | None = None
    max_frequency: int | None = None
    min_monetary: float | None = None
    max_monetary: float | None = None
    countries: list[str] = field(default_factory=list)
    bought_categories: list[str] = field(default_factory=list)
    bought_items: list[str] = field(default_factory=list)
    bought_text: list[str] = field(default_factory=list)
    last_review_sentiment: str | None = None  # "negative" or "positive": of the customer's newest review
    min_share_negative_reviews: float | None = None
    # demographics (personaflow/profiles/demographics.py bands; "unknown" selects customers without a record)
    age_bands: list[str] = field(default_factory=list)
    income_bands: list[str] = field(default_factory=list)
    households: list[str] = field(default_factory=list)
    demographic_labels: list[str] = field(default_factory=list)
    # campaigns (personaflow/profiles/campaigns.py): "likely to redeem, not yet reached" is
    # min_redeem_score=0.3, not_reached_by_running_campaign=True
    min_redeem_score: float | None = None
    not_reached_by_running_campaign: bool = False

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise AudienceError(f"name {self.name!r}: lower-case letters, digits, - and _ (1-64)")
        for low, high in (("min_churn_score", "max_churn_score"), ("min_recency_days", "max_recency_days"),
                          ("min_frequency", "max_frequency"), ("min_monetary", "max_monetary")):  # fmt: skip
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise AudienceError(f"{low}={a} is above {high}={b}: nobody can be in this audience")
        unknown_name("rfm_segments", self.rfm_segments, RFM_SEGMENTS)
        if self.last_review_sentiment not in (None, *REVIEW_SENTIMENTS):
            raise AudienceError(
                f"last_review_sentiment {self.last_review_sentiment!r}: one of {', '.join(REVIEW_SENTIMENTS)}"
            )
        share = self.min_share_negative_reviews
        if share is not None and not 0 <= share <= 1:
            raise AudienceError(f"min_share_negative_reviews={share}: a share in [0, 1]")
        for name, valid in (("age_bands", (*AGE_BANDS, UNKNOWN)), ("income_bands", (*INCOME_BANDS, UNKNOWN)),
                            ("households", (*HOUSEHOLDS, UNKNOWN))):  # fmt: skip
            unknown_name(name, getattr(self, name), valid)
        if self.min_redeem_score is not None and not 0 <= self.min_redeem_score <= 1:
            raise AudienceError(f"min_redeem_score={self.min_redeem_score}: a probability in [0, 1]")
        for name in ("min_churn_score", "max_churn_score"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise AudienceError(f"{name}={value}: a churn score is a probability in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "")}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> AudienceSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise AudienceError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**payload)

    def describe(self) -> str:
        return self.description or json.dumps(self.to_json(), sort_keys=True)


def unknown_name(field_name: str, given: list[str], valid: tuple[str, ...] | list[str]) -> None:
    """A name that matches no segment would silently select nobody: say so, with the valid names (and
    the near miss: a different case, a typo)."""
    for name in given:
        if name in valid:
            continue
        near = [v for v in valid if v.casefold() == str(name).casefold()]
        near = near or difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.75)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        kind = "persona" if field_name == "personas" else "segment"
        raise AudienceError(
            f"{field_name} {name!r} is not a {kind} name{hint}; valid: {', '.join(valid) or 'none yet'}"
        )


def check_labels(profile: pd.DataFrame, spec: AudienceSpec) -> None:
    """The K-means labels and persona names are tonight's (they change with k): an unknown one is an error
    listing them."""
    for name, column in (("segment_labels", "segment_label"), ("personas", "persona")):
        if getattr(spec, name):
            values = profile[column] if column in profile else pd.Series(dtype=object)
            unknown_name(name, getattr(spec, name), sorted(str(v) for v in values.dropna().unique()))


def _between(values: pd.Series, low: float | None, high: float | None) -> pd.Series:
    keep = pd.Series(True, index=values.index)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values <= high
    return keep.fillna(False).astype(bool)


def select(profile: pd.DataFrame, bought: pd.DataFrame, spec: AudienceSpec) -> pd.DataFrame:
    """The customers of `profile` (one row per user: COLUMNS) who match `spec`, best customers first
    (highest monetary). `bought`: one row per (user_id, item_id, category, name) the user purchased."""
    keep = pd.Series(True, index=profile.index)
    if spec.rfm_segments:
        keep &= profile["rfm_segment"].isin(spec.rfm_segments)
    if spec.segment_labels:
        keep &= profile["segment_label"].isin(spec.segment_labels)
    if spec.personas:
        keep &= profile["persona"].isin(spec.personas)
    if spec.countries:
        keep &= profile["country"].isin(spec.countries)
    if spec.min_churn_score is not None or spec.max_churn_score is not None:
        keep &= _between(profile["churn_score"], spec.min_churn_score, spec.max_churn_score)
    keep &= _between(profile["recency_days"], spec.min_recency_days, spec.max_recency_days)
    keep &= _between(profile["frequency"], spec.min_frequency, spec.max_frequency)
    keep &= _between(profile["monetary"], spec.min_monetary, spec.max_monetary)
    if spec.bought_categories or spec.bought_items or spec.bought_text:
        keep &= profile["user_id"].isin(_buyers(bought, spec))
    if spec.last_review_sentiment is not None:
        label = profile.get("last_review_sentiment_label", pd.Series(None, index=profile.index, dtype=object))
        keep &= (label == spec.last_review_sentiment).fillna(False).astype(bool)
    if spec.min_share_negative_reviews is not None:
        share = profile.get("review_share_negative", pd.Series(float("nan"), index=profile.index))
        keep &= _between(share, spec.min_share_negative_reviews, None)
    demographic = {"age_bands": "age_band", "income_bands": "income_band", "households": "household",
                   "demographic_labels": "demographic_label"}  # fmt: skip
    for name, column in demographic.items():
        if getattr(spec, name):
            # a profile built before any customer table: everyone is unknown
            values = profile[column] if column in profile else pd.Series(UNKNOWN, index=profile.index)
            keep &= values.fillna(UNKNOWN).isin(getattr(spec, name))
    if spec.min_redeem_score is not None:
        scores = (
            profile["redeem_score"] if "redeem_score" in profile else pd.Series(float("nan"), profile.index)
        )
        keep &= _between(scores, spec.min_redeem_score, None)
    if spec.not_reached_by_running_campaign and "reached_by_running_campaign" in profile:
        keep &= ~profile["reached_by_running_campaign"].fillna(False).astype(bool)
    # a profile written before personas existed has no persona column: null, like an unprofiled user
    out = profile.loc[keep].reindex(columns=COLUMNS)
    return out.sort_values(["monetary", "user_id"], ascending=[False, True]).reset_index(drop=True)


def _buyers(bought: pd.DataFrame, spec: AudienceSpec) -> set[str]:
    """Users who bought any item that matches any of the affinity filters."""
    match = pd.Series(False, index=bought.index)
    if spec.bought_categories:
        match |= bought["category"].isin(spec.bought_categories)
    if spec.bought_items:
        match |= bought["item_id"].isin(spec.bought_items)
    for word in spec.bought_text:
        match |= bought["name"].fillna("").str.contains(re.escape(word), case=False, regex=True)
    return set(bought.loc[match, "user_id"])


def summarise(members: pd.DataFrame, n_customers: int) -> dict[str, Any]:
    """Size, share and what the audience looks like (plain types, for the CLI, the API and the DAG)."""
    return {
        "size": len(members),
        "share": round(len(members) / n_customers, 4) if n_customers else 0.0,
        "customers": n_customers,
        "monetary_total": round(float(members["monetary"].sum()), 2) if len(members) else 0.0,
        "mean_recency_days": round(float(members["recency_days"].mean()), 1) if len(members) else None,
        "rfm_segments": members["rfm_segment"].value_counts().head(5).to_dict(),
        "personas": members["persona"].value_counts().head(5).to_dict() if "persona" in members else {},
    }
