"""Demographics in the profile: readable bands and one label a marketer reads ("young families, mid
income"), read point in time from the as-of customer table (raw.customers: personaflow/ingest/customers.py).

Pure functions over frames. The bands read any shop's text: the first number in a value is its lower
bound ("45-54" -> 45, "50-74K" -> 50, "65+" -> 65, "Under 15K" -> below 15), so numeric ages and incomes
in thousands read the same way. A customer without a record, or a value that is missing, is "unknown":
never dropped (1,668 of The Complete Journey's 2,469 households have no demographics).

Memory: O(customers × versions); the as-of read sorts once and takes the last version per customer.
"""

from __future__ import annotations

import re

import pandas as pd

UNKNOWN = "unknown"
AGE_BANDS = ("young", "middle-aged", "older")  # < 35, 35-54, 55+
INCOME_BANDS = ("low income", "mid income", "high income")  # < 35K, 35K-99K, 100K+
HOUSEHOLDS = ("singles", "couples", "families")
FIELDS = ("age_band", "income_band", "household", "demographic_label")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def lower_bound(value: object) -> float | None:
    """The number a band's text starts from ('45-54' -> 45, '5+' -> 5, 'Under 15K' -> 7.5); None if none."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().lower()
    found = _NUMBER.search(text.replace(",", ""))
    if not found:
        return None
    number = float(found.group())
    # "Under 15K": anything below the number; half of it places it in the band below
    return number / 2 if text.startswith(("under", "<", "less")) else number


def age_band(value: object) -> str:
    age = lower_bound(value)
    if age is None:
        return UNKNOWN
    return AGE_BANDS[0] if age < 35 else AGE_BANDS[1] if age < 55 else AGE_BANDS[2]


def income_band(value: object) -> str:
    """Income in thousands a year (a value above 1,000 is read as units and divided)."""
    income = lower_bound(value)
    if income is None:
        return UNKNOWN
    income = income / 1000 if income >= 1000 else income
    return INCOME_BANDS[0] if income < 35 else INCOME_BANDS[1] if income < 100 else INCOME_BANDS[2]


def household(comp: object, kids: object, size: object) -> str:
    """families (any kids), singles (one adult, no kids), couples (two or more adults, no kids)."""
    comp_text = "" if comp is None or (isinstance(comp, float) and pd.isna(comp)) else str(comp).lower()
    n_kids, n_size = lower_bound(kids), lower_bound(size)
    if (n_kids or 0) > 0 or ("kids" in comp_text and "no kids" not in comp_text):
        return "families"
    if comp_text.startswith("1 adult") or (not comp_text and n_size == 1 and n_kids is not None):
        return "singles"
    if comp_text or (n_size is not None and n_size >= 2 and n_kids == 0):
        return "couples"
    return UNKNOWN


def label(age: str, income: str, home: str) -> str:
    """'young families, mid income'; parts that are unknown are left out; all unknown -> 'unknown'."""
    who = " ".join(p for p in (age, home) if p != UNKNOWN)
    if who and home == UNKNOWN:
        who = f"{who} customers"
    parts = [p for p in (who, income if income != UNKNOWN else "") if p]
    return ", ".join(parts) if parts else UNKNOWN


def bands(customers: pd.DataFrame) -> pd.DataFrame:
    """user_id + the bands and label of each row of a customer table (our columns: age, income,
    household_comp, kids_count, household_size; any may be absent)."""
    col = lambda name: customers[name] if name in customers else pd.Series(None, index=customers.index)  # noqa: E731
    age = col("age").map(age_band)
    income = col("income").map(income_band)
    home = [
        household(c, k, s)
        for c, k, s in zip(col("household_comp"), col("kids_count"), col("household_size"), strict=True)
    ]
    out = pd.DataFrame(
        {
            "user_id": customers["user_id"].astype(str),
            "age_band": age,
            "income_band": income,
            "household": home,
        },
        index=customers.index,
    )
    out["demographic_label"] = [
        label(a, i, h) for a, i, h in zip(out["age_band"], out["income_band"], out["household"], strict=True)
    ]
    return out.reset_index(drop=True)


def as_of(history: pd.DataFrame, when: pd.Timestamp | str) -> pd.DataFrame:
    """Each customer's record as it stood at `when`: the newest version with valid_from <= when. A
    version dated later is never seen; a customer whose first version is later is absent (unknown)."""
    when = pd.Timestamp(when)
    seen = history[pd.to_datetime(history["valid_from"]) <= when]
    return (
        seen.sort_values(["user_id", "valid_from"])
        .drop_duplicates("user_id", keep="last")
        .reset_index(drop=True)
    )


def for_customers(
    user_ids: pd.Series | list[str], customers: pd.DataFrame | None, when: pd.Timestamp | str | None = None
) -> pd.DataFrame:
    """The bands of every customer in `user_ids` (as of `when` when given), 'unknown' where there is no
    record: one row per customer, none dropped."""
    users = pd.DataFrame({"user_id": pd.Series(list(user_ids), dtype=str).drop_duplicates().to_numpy()})
    if customers is None or customers.empty:
        known = pd.DataFrame(columns=["user_id", *FIELDS])
    else:
        known = bands(as_of(customers, when) if when is not None else customers)
    out = users.merge(known, on="user_id", how="left")
    return out.fillna({f: UNKNOWN for f in FIELDS})
