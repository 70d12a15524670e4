"""The review filters of audiences (personaflow/profiles/audiences.py): "customers whose last review was
negative" picks exactly them, a customer without reviews matches no review filter, a profile built
before reviews existed selects nobody instead of failing, and bad values name the field."""

import pandas as pd
import pytest

from personaflow.profiles.audiences import COLUMNS, AudienceError, AudienceSpec, select

BASE = pd.DataFrame(
    [
        ("a", "Champions", "big spenders", 0.05, 3, 20, 900.0, "United Kingdom", "home decor"),
        ("b", "Champions", "big spenders", 0.10, 70, 12, 400.0, "France", None),
        ("c", "At Risk", "lapsed", 0.80, 120, 4, 300.0, "United Kingdom", None),
        ("d", "Lost", "lapsed", 0.95, 300, 1, 20.0, "Germany", None),  # never reviewed
    ],
    columns=[c for c in COLUMNS if c != "persona"],  # a profile from before personas: selects all the same
)
REVIEWS = pd.DataFrame(
    {
        "user_id": ["a", "b", "c"],
        "last_review_sentiment_label": ["negative", "positive", "negative"],
        "review_share_negative": [0.5, 0.75, 1.0],
    }  # fmt: skip
)
PROFILE = BASE.merge(REVIEWS, "left", "user_id")
BOUGHT = pd.DataFrame(columns=["user_id", "item_id", "category", "name"])


def _ids(profile: pd.DataFrame, **kwargs) -> list[str]:
    return select(profile, BOUGHT, AudienceSpec(**kwargs))["user_id"].tolist()


def test_last_review_negative_picks_exactly_those_customers():
    assert _ids(PROFILE, last_review_sentiment="negative") == ["a", "c"]
    assert _ids(PROFILE, last_review_sentiment="positive") == ["b"]
    assert _ids(PROFILE, min_share_negative_reviews=0.75) == ["b", "c"]
    assert _ids(PROFILE, last_review_sentiment="negative", min_churn_score=0.5) == ["c"]
    assert _ids(PROFILE) == ["a", "b", "c", "d"]  # no review filter: the reviewless stay in


def test_a_profile_without_review_columns_selects_nobody_by_review():
    assert _ids(BASE, last_review_sentiment="negative") == []
    assert _ids(BASE, min_share_negative_reviews=0.0) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"last_review_sentiment": "angry"}, "last_review_sentiment"),
        ({"min_share_negative_reviews": 2}, "share"),
    ],
)
def test_bad_review_filters_name_the_field(kwargs, field):
    with pytest.raises(AudienceError, match=field):
        AudienceSpec(**kwargs)
