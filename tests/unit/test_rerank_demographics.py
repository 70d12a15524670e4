"""Demographics as re-ranker features (training/data/features.py `with_demographics`, training/choice.py):
the bands as of each split's cut, "unknown" for a household without a record, and the choice's rule
(kept only when the paired validation gain interval is above 0) applied as stated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personaflow.training.data.features import (
    DEMOGRAPHIC_USER_CATEGORICAL,
    FeatureTables,
    encode,
    purchases_source,
    with_demographics,
)
from personaflow.training.data.purchases import split_purchases

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CUSTOMERS = pd.DataFrame(
    {
        "user_id": ["u0", "u1", "u1"],
        "age": ["25-34", "65+", "65+"],
        "income": ["50-74K", "Under 15K", "150-174K"],
        "household_comp": ["2 Adults Kids", "1 Adult No Kids", "1 Adult No Kids"],
        "kids_count": ["1", "0", "0"],
        "household_size": ["3", "1", "1"],
        "valid_from": pd.to_datetime(["2017-01-01", "2017-01-01", "2017-03-15"]),
    }
)


def _purchases(users: int = 40, days: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{rng.integers(0, 12)}", pd.Timestamp("2017-01-01") + pd.Timedelta(days=int(d)))
        for u in range(users)
        for d in rng.integers(0, days, 6)
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_the_bands_are_read_as_of_each_cut_and_unknown_without_a_record() -> None:
    split = split_purchases(_purchases(), test_days=30)  # cut near 2017-03-01: u1's raise comes later
    tables = with_demographics(purchases_source(None), CUSTOMERS)(split)
    assert isinstance(tables, FeatureTables)
    assert tables.user_categorical[-3:] == DEMOGRAPHIC_USER_CATEGORICAL
    assert tables.users.loc["u0", ["age_band", "income_band", "household"]].tolist() == [
        "young", "mid income", "families",
    ]  # fmt: skip
    assert tables.users.loc["u1", "income_band"] == "low income"  # the later high income is not seen
    assert tables.users.loc["u5", "age_band"] == "unknown"
    # the plain columns are untouched, and the bands encode as categoricals (unknown has its own code)
    plain = purchases_source(None)(split)
    pd.testing.assert_frame_equal(tables.users[list(plain.users.columns)], plain.users)
    coded = encode(tables, split.maps)
    at = {u: i for i, u in enumerate(split.maps.user_ids)}
    age = list(tables.user_categorical).index("age_band")
    unknown, young = coded.user_cat[at["u5"], age], coded.user_cat[at["u0"], age]
    assert unknown > 0 and unknown != young


def test_the_choice_tries_the_reranker_with_demographics_and_keeps_them_only_when_they_pay() -> None:
    from personaflow.ingest.generate import generate_shop
    from personaflow.training.choice import RERANK, RERANK_DEMOGRAPHICS, TIE_EPS, choose
    from personaflow.training.data.purchases import purchases_from_events
    from personaflow.training.recipe import Recipe

    shop = generate_shop(users=300, items=60, days=60, seed=3, rebuy=True)
    split = split_purchases(purchases_from_events(shop.events), test_days=14)
    users = sorted(split.maps.user_ids)
    customers = pd.DataFrame(
        {"user_id": users, "age": ["25-34", "45-54", "65+"] * (len(users) // 3) + ["65+"] * (len(users) % 3),
         "valid_from": pd.Timestamp("2000-01-01")}
    )  # fmt: skip
    base = Recipe(epochs=3, dim=16, seed=0, val_days=14, exclude_bought=False)
    choice = choose(split, base, purchases_source(None), options=("popularity", "repeat_buy"),
                    customers=customers)  # fmt: skip
    rows, comparisons = choice.report["options"], choice.report["comparisons"]
    assert rows[RERANK_DEMOGRAPHICS]["status"] == "scored", rows
    verdict = comparisons[RERANK_DEMOGRAPHICS]
    assert verdict["pays"] == (verdict["vs_rerank_gain_ci_low"] > 0 and verdict["vs_rerank_gain"] >= TIE_EPS)
    assert rows[RERANK]["status"] == "scored"
    assert choice.report["chosen"].endswith("+demographics") == (
        verdict["pays"] and rows[RERANK_DEMOGRAPHICS]["note"] == "kept"
    )
    # what the report says is what the recipe records (and the gate re-fits: test_recipe_demographics.py)
    assert choice.recipe.demographics == choice.report["chosen"].endswith("+demographics")
    if not verdict["pays"]:
        assert "demographics do not pay" in rows[RERANK_DEMOGRAPHICS]["note"]


def test_the_lambdaranks_read_the_bands_as_categorical_columns() -> None:
    """The default re-ranker's members are LambdaRanks, which read numerics: the bands reach them as
    user-code columns after the numerics (without, a re-ranker 'with demographics' was the same model)."""
    from personaflow.training.rerank.candidates import Candidates
    from personaflow.training.rerank.reranker import _Fields

    split = split_purchases(_purchases(), test_days=30)
    users = np.array([split.maps.user_index[u] for u in ("u0", "u1", "u5")])
    cands = Candidates(users, np.tile(np.arange(4), (3, 1)), {})
    numeric = np.zeros((3, 4, 2))
    plain = purchases_source(None)(split)
    assert _Fields(plain, 4).ranked(cands, numeric, plain, split.maps) is numeric
    tables = with_demographics(purchases_source(None), CUSTOMERS)(split)
    fields = _Fields(tables, 4)
    ranked = fields.ranked(cands, numeric, tables, split.maps)
    assert ranked.shape == (3, 4, 2 + len(DEMOGRAPHIC_USER_CATEGORICAL))
    codes = ranked[:, 0, 2:]
    assert (codes > 0).all() and (ranked[:, :, 2:] == codes[:, None, :]).all()  # one code per user
    assert len({tuple(row) for row in codes}) == 3  # young / old / unknown differ
