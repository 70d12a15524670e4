"""The v2 marts on a hand-made log shaped like Online Retail: invoices, cancellations, faults, no users or
items files. Every expected value below was worked out by hand from ROWS.

As of 2011-01-31, churn horizon 10 days (cut-off 01-21), co-purchase minimum 2 orders:
  17850  orders 536365 (A x6 @2.55, B x6 @3.39; B's line twice) and 536366 (A x2) on 01-05,
         returns 1 B (C536401) on 01-20: frequency 2, monetary 15.30 + 20.34 + 5.10 = 40.74
  13047  536367 postage at price 0 (excluded), orders 536400 (A x4, B x2) on 01-20, 536450 (A x2) on 01-25
  12346  order 536500 (A, B) on 01-31 and a non-cancellation line with quantity -5 (excluded)
  -      two identical lines without a customer on 01-05 (missing_customer; the second also a duplicate)
  17850  buys again on 02-01, after the as-of date: in no mart
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from personaflow.pipeline.transform import run_dbt
from tests.integration.test_transform import PROJECT, RAW_EVENTS_DDL, fetch

AS_OF = date(2011, 1, 31)
VARS = {"churn_horizon_days": 10, "co_purchase_min_orders": 2}
HEART, LANTERN = "WHITE HANGING HEART", "WHITE METAL LANTERN"
ROWS = [
    # source_row, invoice, item, description, quantity, price, customer, country, ts
    (1, "536365", "A", HEART, 6, 2.55, "17850", "United Kingdom", "2011-01-05 08:26:00"),
    (2, "536365", "AB", LANTERN, 6, 3.39, "17850", "United Kingdom", "2011-01-05 08:26:00"),
    (3, "536365", "AB", LANTERN, 6, 3.39, "17850", "United Kingdom", "2011-01-05 08:26:00"),
    (4, "536366", "A", HEART + " T-LIGHT", 2, 2.55, "17850", "United Kingdom", "2011-01-05 08:28:00"),
    (5, "536367", "POST", "POSTAGE", 1, 0.0, "13047", "United Kingdom", "2011-01-05 08:34:00"),
    (6, "536368", "A", HEART, 3, 2.55, None, "United Kingdom", "2011-01-05 09:00:00"),
    (7, "536368", "A", HEART, 3, 2.55, None, "United Kingdom", "2011-01-05 09:00:00"),
    (1, "536400", "A", HEART, 4, 2.55, "13047", "France", "2011-01-20 10:00:00"),
    (2, "536400", "AB", LANTERN, 2, 3.39, "13047", "France", "2011-01-20 10:00:00"),
    (3, "C536401", "AB", LANTERN, -1, 3.39, "17850", "United Kingdom", "2011-01-20 11:00:00"),
    (1, "536450", "A", HEART, 2, 2.55, "13047", "France", "2011-01-25 10:00:00"),
    (1, "536500", "A", HEART, 1, 2.55, "12346", "United Kingdom", "2011-01-31 12:00:00"),
    (2, "536500", "AB", LANTERN, 1, 3.39, "12346", "United Kingdom", "2011-01-31 12:00:00"),
    (3, "536501", "DX", "ODD ITEM", -5, 1.0, "12346", "United Kingdom", "2011-01-31 12:30:00"),
    (1, "536600", "A", HEART, 1, 2.55, "17850", "United Kingdom", "2011-02-01 09:00:00"),
]


def make_online_retail_raw(warehouse: Path) -> Path:
    """raw.* as the Online Retail importer leaves it: empty users/items, invoice lines as they came."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw.users (user_id varchar, signup_date date, country varchar, age_band text)"
        )
        con.execute(
            "create table raw.items "
            "(item_id varchar, category varchar, brand varchar, price double, description varchar)"
        )
        con.execute(RAW_EVENTS_DDL)
        con.executemany(
            "insert into raw.events (event_id, user_id, item_id, event_type, event_ts, session_id, quantity,"
            " price, batch_date, source_file, loaded_at, order_id, description, country, source_format,"
            " source_row) values (?, ?, ?, ?, ?, ?, ?, ?, cast(? as timestamp)::date, ?, now()::timestamp,"
            " ?, ?, ?, 'online-retail', ?)",
            [
                (
                    [f"{invoice}-{row}", customer, item, "return" if invoice.startswith("C") else "purchase"]
                    + [ts, invoice, quantity, price, ts, f"events_{ts[:10]}.csv", invoice, text, country, row]
                )
                for row, invoice, item, text, quantity, price, customer, country, ts in ROWS
            ],
        )
    return warehouse


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("marts")
    warehouse = make_online_retail_raw(root / "warehouse.duckdb")
    summary = run_dbt(warehouse, AS_OF, PROJECT, root / "state", dbt_vars=VARS)
    return warehouse, summary


def test_staging_flags_every_fault_and_keeps_every_row(built):
    warehouse, summary = built
    assert summary["rows"]["staging.stg_events"] == len(ROWS)
    rows = fetch(
        warehouse,
        "select event_id, event_type, quantity, source_quantity, is_duplicate, exclusion_reason"
        " from staging.stg_events where exclusion_reason is not null or event_type = 'return' order by all",
    )
    assert rows == [
        ("536365-3", "purchase", 6, 6, True, "duplicate"),  # copy of line 2
        ("536367-5", "purchase", 1, 1, False, "non_positive_price"),
        ("536368-6", "purchase", 3, 3, False, "missing_customer"),
        ("536368-7", "purchase", 3, 3, True, "missing_customer"),  # first reason wins, flag stays
        ("536501-3", "purchase", -5, -5, False, "non_positive_quantity"),
        ("C536401-3", "return", 1, -1, False, None),  # a return, linked to 17850, not a purchase
    ]


def test_data_quality_counts_per_batch_and_reason(built):
    warehouse, _ = built
    rows = fetch(
        warehouse,
        "select strftime(batch_date, '%m-%d'), reason, n_rows, n_excluded, n_batch_rows, n_usable_rows"
        " from marts.data_quality where n_rows > 0 order by all",
    )
    assert rows == [
        ("01-05", "duplicate", 2, 1, 7, 3),
        ("01-05", "missing_customer", 2, 2, 7, 3),
        ("01-05", "non_positive_price", 1, 1, 7, 3),
        ("01-20", "return", 1, 0, 3, 3),
        ("01-31", "non_positive_quantity", 1, 1, 3, 2),
    ]
    # every batch up to the as-of day has all five reasons (zeros included); 02-01 is after it
    counts = fetch(warehouse, "select count(distinct batch_date), count(*) from marts.data_quality")
    assert counts == [(4, 20)]


def test_users_and_items_come_from_the_events_when_no_files_exist(built):
    warehouse, _ = built
    assert fetch(warehouse, "select * from intermediate.int_users order by user_id") == [
        ("12346", None, "United Kingdom", None, "events"),
        ("13047", None, "France", None, "events"),  # 2 lines in France (used) over 1 in the UK (postage)
        ("17850", None, "United Kingdom", None, "events"),
    ]
    items = fetch(
        warehouse,
        "select item_id, description, price, n_purchases, n_buyers, revenue, purchased_units, return_rate,"
        " price_band, n_purchases_7d, popularity_rank from marts.item_features order by item_id",
    )
    # categories come from the descriptions (home decor, candles and lights, other), one item each,
    # so each price is its category's lowest tercile; postage never had a positive price, and as a
    # non-product it ranks after every product
    assert items == [
        ("A", HEART, 2.55, 5, 3, 38.25, 15, 0.0, "low", 2, 1),
        ("AB", LANTERN, 3.39, 3, 3, 30.51, 9, 0.1111, "low", 1, 2),
        ("DX", "ODD ITEM", 1.0, 0, 0, 0.0, 0, None, "low", 0, 3),
        ("POST", "POSTAGE", None, 0, 0, 0.0, 0, None, None, 0, 4),
    ]
    assert fetch(
        warehouse,
        "select item_id, category, category_source, is_product, item_issue from marts.item_features"
        " order by 1",
    ) == [
        ("A", "home decor", "description", True, "missing_category"),
        ("AB", "candles and lights", "description", True, "missing_category"),
        ("DX", "other", "description", True, "missing_category"),
        ("POST", None, None, False, "non_product"),
    ]
    assert fetch(warehouse, "select reason, n_items from marts.data_quality_items order by reason") == [
        ("derived_category", 3), ("missing_category", 3), ("no_valid_price", 1), ("non_product", 1),
    ]  # fmt: skip


def test_user_features_for_invoices_with_returns(built):
    warehouse, _ = built
    rows = fetch(
        warehouse,
        "select user_id, frequency, monetary, recency_days, r_score, f_score, m_score, n_purchases,"
        " n_returns, purchased_units, returned_units, returned_value, return_rate, avg_basket_value,"
        " avg_basket_units, n_events_7d, n_orders_30d, revenue_7d, tenure_days, days_since_first_purchase,"
        " n_sessions, country"
        " from marts.user_features order by user_id",
    )
    uk = "United Kingdom"
    assert rows == [
        ("12346", 1, 5.94, 0, 3, 1, 1, 2, 0, 2, 0, 0.0, 0.0, 5.94, 2.0, 2, 1, 5.94, 0, 0, 1, uk),
        ("13047", 2, 22.08, 6, 2, 2, 2, 3, 0, 8, 0, 0.0, 0.0, 11.04, 4.0, 1, 2, 5.1, 11, 11, 2, "France"),
        # monetary is net: 40.74 bought less the 3.39 lantern cancelled on 01-20
        ("17850", 2, 37.35, 26, 1, 2, 3, 3, 1, 14, 1, 3.39, 0.0714, 20.37, 7.0, 0, 2, 0.0, 26, 26, 3, uk),
    ]


def test_co_purchase_rules(built):
    warehouse, _ = built
    # orders: {A, B} x3, {A} x2 - A is in every order, so B's presence tells nothing about A: lift 1
    assert fetch(warehouse, "select * from marts.co_purchase order by item_id") == [
        ("A", "AB", 3, 5, 3, 5, 0.6, 0.6, 1.0, 0.6),  # score: the confidence (what /similar_items ranks by)
        ("AB", "A", 3, 3, 5, 5, 0.6, 1.0, 1.0, 1.0),
    ]


def test_churn_labels_use_nothing_after_the_cutoff(built):
    warehouse, _ = built
    rows = fetch(
        warehouse,
        "select user_id, cutoff_date, horizon_days, recency_days, frequency, monetary, n_orders_in_horizon,"
        " churned from marts.churn_labels order by user_id",
    )
    cutoff = date(2011, 1, 21)
    assert rows == [
        # 13047's 01-25 order is the label, not a feature; 12346 had not bought by the cut-off
        ("13047", cutoff, 10, 1, 1, 16.98, 1, False),
        ("17850", cutoff, 10, 16, 2, 40.74, 0, True),  # the return on 01-20 is no purchase
    ]
