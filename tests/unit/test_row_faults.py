"""Row rules of an imported export: which rows are set aside, with which reason, when a day lands whole."""

from __future__ import annotations

import pandas as pd

from personaflow.quality.row_faults import fault_reasons, set_aside
from personaflow.quality.suites import Thresholds


def rows(**overrides) -> dict:
    return {"user_id": "u1", "item_id": "i1", "event_type": "purchase", "event_ts": "2024-05-01 10:00:00",
            "quantity": 1, "price": 2.5, "session_id": None, "order_id": None, "description": None,
            "country": None, **overrides}  # fmt: skip


def test_each_rule_names_its_reason_and_clean_rows_have_none():
    frame = pd.DataFrame([
        rows(), rows(event_type="click"), rows(user_id=None), rows(price=None), rows(price=0.0),
        rows(quantity=0), rows(event_type="return", quantity=-2, item_id="i2"), rows(quantity=5000),
        rows(), rows(event_type="view", price=None, item_id="i3"),
    ])  # fmt: skip
    assert fault_reasons(frame).tolist() == [
        None, "unknown_event_type", "missing_customer", "missing_price", "price_out_of_range",
        "quantity_out_of_range", None, "quantity_out_of_range", "duplicate", None,
    ]  # fmt: skip


def test_a_mostly_faulty_day_lands_whole_and_a_few_faulty_rows_are_set_aside():
    good = [rows(item_id=f"i{n}", event_ts=f"2024-05-01 10:{n:02d}:00") for n in range(9)]
    bad_day = [rows(item_id=f"j{n}", event_ts=f"2024-05-02 10:{n:02d}:00", price=0.0) for n in range(3)]
    frame = pd.DataFrame([*good, rows(price=0.0, event_ts="2024-05-01 11:00:00"), *bad_day,
                          rows(item_id="k", event_ts="2024-05-02 12:00:00")])  # fmt: skip
    kept, aside, summary = set_aside(frame, Thresholds(row_fault_share=0.2))
    assert len(aside) == 1 and aside["reason"].tolist() == ["price_out_of_range"]  # 1 of 10 on day 1
    assert len(kept) == len(frame) - 1  # day 2 (3 of 4 faulty) lands as it came
    assert summary == {"rows_set_aside": 1, "set_aside_reasons": {"price_out_of_range": 1},
                       "days_over_row_fault_share": ["2024-05-02"]}  # fmt: skip


def test_guest_rows_are_set_aside_but_never_break_a_day():
    frame = pd.DataFrame([rows(item_id=f"i{n}", user_id=None if n % 2 else "u1",
                               event_ts=f"2024-05-01 10:{n:02d}:00") for n in range(10)])  # fmt: skip
    kept, aside, summary = set_aside(frame, Thresholds(row_fault_share=0.2))
    assert len(aside) == 5 and set(aside["reason"]) == {"missing_customer"} and len(kept) == 5
    assert summary["days_over_row_fault_share"] == []
