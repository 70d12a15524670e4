"""Row-level faults of an imported export (our formats: csv, parquet), set aside row by row with a reason
instead of costing the whole day.

A day's batch check (personaflow/quality/suites.py) fails the whole day on one $0 price or on more than
5 % duplicate rows: right for a nightly file, where a broken upstream job breaks every row, and wrong for
a shop's history, where one mistyped line in a year of orders cost its day (issue 26: 71 of 546 days,
27 % of the rows, went to quarantine for single bad lines). So at import:

- a row breaking a row rule of the batch contract (customer, price, quantity, event type, an exact
  repeat of an earlier row) is set aside with its reason, and the rest of its day lands;
- a day where more than `Thresholds.row_fault_share` of the rows break a day-level rule (all but a
  missing customer) lands as it came: that is a day-level fault (a broken export of that day), and the
  day's batch check quarantines it whole.

Nothing is dropped: the import writes the set-aside rows to `landing/rejects/<export>.rows.csv` (every
column, the source row number and the reason; personaflow/ingest/landing.py), and its summary counts them
per reason.
Memory: one boolean mask per rule over the export's frame (O(rows)).
"""

from __future__ import annotations

import pandas as pd

from personaflow.quality import contract
from personaflow.quality.suites import DUPLICATE_KEY, Thresholds

REASONS = (
    "unknown_event_type", "missing_customer", "missing_price", "price_out_of_range",
    "quantity_out_of_range", "duplicate",
)  # fmt: skip
# What makes a *day* broken when most of its rows have it. Not a missing customer: guest checkouts are
# a shop's normal business (a quarter of the Online Retail log, more than 20 % on 157 of its 374 days),
# set aside row by row but never a sign that the day's export broke.
DAY_LEVEL_REASONS = tuple(r for r in REASONS if r != "missing_customer")


def fault_reasons(frame: pd.DataFrame, limits: Thresholds | None = None) -> pd.Series:
    """The first rule each row breaks (in REASONS order), None for a clean row."""
    limits = limits or Thresholds()
    kind, price, qty = frame["event_type"], frame["price"], frame["quantity"]
    buys = kind.isin(["purchase", "return"])
    returns = kind == "return"
    rules = {
        "unknown_event_type": ~kind.isin(contract.EVENT_TYPES),
        "missing_customer": frame["user_id"].isna(),
        "missing_price": buys & price.isna(),
        "price_out_of_range": price.notna() & ((price < limits.min_price) | (price > limits.max_price)),
        "quantity_out_of_range": (qty == 0)
        | (~returns & ((qty < 1) | (qty > limits.max_quantity)))
        | (returns & (qty.abs() > limits.max_quantity)),
        "duplicate": frame.duplicated(subset=[c for c in DUPLICATE_KEY if c in frame], keep="first"),
    }
    reasons = pd.Series(None, index=frame.index, dtype="object")
    for name in reversed(REASONS):  # the first rule in REASONS order wins
        reasons = reasons.mask(rules[name].fillna(False).to_numpy(bool), name)
    return reasons.astype(object).where(reasons.notna(), None)


def set_aside(
    frame: pd.DataFrame, limits: Thresholds | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """(rows to land, rows set aside with a `reason` column, summary) for an export's frame.

    Days over `row_fault_share` keep every row (their batch check quarantines them whole)."""
    limits = limits or Thresholds()
    if frame.empty:
        return frame, frame.assign(reason=pd.Series(dtype="object")), {"rows_set_aside": 0}
    reasons = fault_reasons(frame, limits)
    faulty = reasons.notna().to_numpy()
    broken = reasons.isin(DAY_LEVEL_REASONS).to_numpy()
    day = pd.to_datetime(frame["event_ts"]).dt.date
    share = pd.Series(broken, index=frame.index).groupby(day).transform("mean").to_numpy()
    whole_day = share > limits.row_fault_share
    aside = faulty & ~whole_day
    days_left = sorted({d.isoformat() for d in day[whole_day]})
    summary: dict[str, object] = {
        "rows_set_aside": int(aside.sum()),
        "set_aside_reasons": {r: int(n) for r, n in reasons[aside].value_counts().items()},
        "days_over_row_fault_share": days_left,
    }
    kept = frame.loc[~aside]
    return kept, frame.loc[aside].assign(reason=reasons[aside]), summary
