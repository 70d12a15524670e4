"""dbt project + run_dbt on a hand-made raw layer whose marts were worked out by hand.

As of 2024-01-10 (events with event_ts < 2024-01-11 00:00 count):
  u1  bought in s1 (01-09, 2 x 10.0) and s2 (01-10 23:59:59, 1 x 20.0): recency 0, frequency 2, monetary 40
      (its purchase at 2024-01-11 00:00:00 is exactly on the cut and excluded)
  u2  view + cart + purchase of i1 in s3 on 01-05: recency 5, frequency 1, monetary 10
  u3  only a view on 01-08: recency 2 (from the view), frequency 0, monetary 0
  u4  bought in s5 (01-01, 3 x 5.0) and s6 (01-02, 1 x 5.0): recency 8, frequency 2, monetary 20
  u5  two purchases in one session s7 on 01-07: recency 3, frequency 1, monetary 30
  u6  only acts on 01-12: not in the marts at all
Quintiles of 5 users (5 = best, equal values share the lowest tile of their group):
  r: u1 5, u3 4, u5 3, u2 2, u4 1    f: u3 1, u2 2, u5 2, u1 4, u4 4    m: u3 1, u2 2, u4 3, u5 4, u1 5
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from personaflow.pipeline.transform import TransformError, _record_rows, built_rows, run_dbt

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
AS_OF = date(2024, 1, 10)
MARTS = (
    "interactions", "user_features", "item_features", "sessions",
    "co_purchase", "churn_labels", "data_quality",
)  # fmt: skip

# raw.events as personaflow/ingest/load.py creates it (raw contract v2: the last five columns are new)
RAW_EVENTS_DDL = """
create table raw.events (
    event_id varchar, user_id varchar, item_id varchar, event_type varchar, event_ts timestamp,
    session_id varchar, quantity integer, price double, batch_date date, source_file varchar,
    loaded_at timestamp, order_id varchar, description varchar, country varchar, source_format varchar,
    source_row bigint
)
"""

EVENTS = [
    # event_id, user, item, type, ts, session, quantity, price
    ("e01", "u1", "i1", "view", "2024-01-09 09:00:00", "s1", 1, 10.0),
    ("e02", "u1", "i1", "purchase", "2024-01-09 09:05:00", "s1", 2, 10.0),
    ("e03", "u1", "i2", "cart", "2024-01-10 18:00:00", "s2", 1, 20.0),
    ("e04", "u1", "i2", "purchase", "2024-01-10 23:59:59", "s2", 1, 20.0),
    ("e05", "u2", "i1", "view", "2024-01-05 12:00:00", "s3", 1, 10.0),
    ("e06", "u2", "i1", "cart", "2024-01-05 12:01:00", "s3", 1, 10.0),
    ("e07", "u2", "i1", "purchase", "2024-01-05 12:02:00", "s3", 1, 10.0),
    ("e08", "u3", "i3", "view", "2024-01-08 20:00:00", "s4", 1, 5.0),
    ("e09", "u4", "i3", "purchase", "2024-01-01 10:00:00", "s5", 3, 5.0),
    ("e10", "u4", "i3", "purchase", "2024-01-02 10:00:00", "s6", 1, 5.0),
    ("e11", "u5", "i2", "purchase", "2024-01-07 11:00:00", "s7", 1, 20.0),
    ("e12", "u5", "i1", "purchase", "2024-01-07 11:10:00", "s7", 1, 10.0),
    ("e13", "u1", "i3", "purchase", "2024-01-11 00:00:00", "s8", 1, 5.0),
    ("e14", "u6", "i1", "view", "2024-01-12 08:00:00", "s9", 1, 10.0),
]


def make_raw(warehouse: Path, extra_events: list[tuple] = ()) -> Path:
    """The raw layer as personaflow/ingest/load.py leaves it, written with plain SQL."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema raw")
        con.execute(
            "create table raw.users (user_id varchar, signup_date date, country varchar, age_band varchar)"
        )
        con.execute(
            "create table raw.items "
            "(item_id varchar, category varchar, brand varchar, price double, description varchar)"
        )
        con.execute(RAW_EVENTS_DDL)
        con.executemany(
            "insert into raw.users values (?, '2023-12-01', 'DE', '25-34')", [[f"u{i}"] for i in range(1, 7)]
        )
        con.executemany(
            "insert into raw.items (item_id, category, brand, price) values (?, ?, ?, ?)",
            [
                ["i1", "books", "acme", 10.0],
                ["i2", "toys", "zed", 20.0],
                ["i3", "food", "yum", 5.0],
                ["i4", "toys", "zed", 7.0],
            ],
        )
        con.executemany(
            "insert into raw.events (event_id, user_id, item_id, event_type, event_ts, session_id, quantity,"
            " price, batch_date, source_file, loaded_at, source_format, source_row)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, cast(? as timestamp)::date, 'events.csv',"
            " timestamp '2024-01-13 01:00:00', 'synthetic', ?)",
            [[*e, e[4], n] for n, e in enumerate([*EVENTS, *extra_events], start=1)],
        )
    finally:
        con.close()
    return warehouse


def fetch(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    return {m: fetch(warehouse, f"select * from marts.{m} order by all") for m in MARTS}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("transform")
    warehouse = make_raw(root / "warehouse.duckdb")
    summary = run_dbt(warehouse, AS_OF, PROJECT, root / "state")
    return warehouse, root, summary


def test_summary_counts_models_tests_and_rows(built):
    warehouse, root, summary = built
    assert json.loads(json.dumps(summary)) == summary  # plain types only
    assert summary["models"] == 22 and summary["unit_tests"] == 7 and summary["tests"] >= 80
    assert summary["full_refresh"] is False
    assert summary["rows"] == {
        "staging.stg_events": 14,
        "staging.stg_users": 6,
        "staging.stg_items": 4,
        "intermediate.int_events_flagged": 12,  # e13 and e14 are after the as-of day
        "intermediate.int_events_as_of": 12,
        "intermediate.int_users": 6,
        "intermediate.int_items": 4,
        "marts.interactions": 8,
        "marts.user_features": 5,
        "marts.item_features": 4,
        "marts.sessions": 8,
        "marts.co_purchase": 0,  # no pair reaches the default minimum of 3 orders
        "marts.churn_labels": 0,  # 10 days of log: no 90-day horizon fits yet
        "marts.data_quality": 35,  # 7 batches up to the as-of day x 5 reasons
        "marts.data_quality_items": 1,  # the catalogue has no descriptions: missing_description
        "marts.returned_items": 0,
        "marts.data_quality_days": 7,  # one row per batch day up to the as-of day
        # a shop without reviews builds the review models empty (macros/reviews_present.sql)
        "staging.stg_reviews": 0,
        "staging.stg_review_complaints": 0,
        "marts.customer_reviews": 0,
        "marts.product_reviews": 0,
        "marts.customer_demographics": 0,  # no customer table: built empty (macros/raw_table_present.sql)
    }
    assert summary["seconds"] > 0
    # the same counts recorded for later stages, which need not open the warehouse to see a mart is empty
    assert {rel: built_rows(root / "state", rel, AS_OF) for rel in summary["rows"]} == summary["rows"]
    # dbt's artefacts land in state_dir, not in the repository's dbt_project/
    assert (root / "state" / "target" / "run_results.json").is_file()
    assert (root / "state" / "logs" / "dbt.log").is_file()


def test_user_features_rfm_by_hand(built):
    warehouse, _, _ = built
    rows = fetch(
        warehouse,
        "select user_id, as_of_date, recency_days, frequency, monetary, r_score, f_score, m_score,"
        " rfm_segment, n_views, n_carts, n_purchases, n_sessions, last_purchase_ts is null"
        " from marts.user_features order by user_id",
    )
    d = AS_OF
    assert rows == [
        ("u1", d, 0, 2, 40.0, 5, 4, 5, "Champions", 1, 1, 2, 2, False),
        ("u2", d, 5, 1, 10.0, 2, 2, 2, "Hibernating", 1, 1, 1, 1, False),
        ("u3", d, 2, 0, 0.0, 4, 1, 1, "No Purchase Yet", 1, 0, 0, 1, True),  # viewed, never bought
        ("u4", d, 8, 2, 20.0, 1, 4, 3, "At Risk", 0, 0, 2, 2, False),
        ("u5", d, 3, 1, 30.0, 3, 2, 4, "About To Sleep", 0, 0, 2, 1, False),
    ]


def test_interactions_weights_and_as_of_cut(built):
    warehouse, _, _ = built
    rows = fetch(
        warehouse,
        "select user_id, item_id, strftime(event_date, '%m-%d'), n_views, n_carts, n_purchases, quantity,"
        " revenue, weight from marts.interactions order by all",
    )
    assert rows == [
        ("u1", "i1", "01-09", 1, 0, 1, 2, 20.0, 6.0),
        ("u1", "i2", "01-10", 0, 1, 1, 1, 20.0, 8.0),  # 23:59:59 on the as-of day counts
        ("u2", "i1", "01-05", 1, 1, 1, 1, 10.0, 9.0),
        ("u3", "i3", "01-08", 1, 0, 0, 0, 0.0, 1.0),
        ("u4", "i3", "01-01", 0, 0, 1, 3, 15.0, 5.0),
        ("u4", "i3", "01-02", 0, 0, 1, 1, 5.0, 5.0),
        ("u5", "i1", "01-07", 0, 0, 1, 1, 10.0, 5.0),
        ("u5", "i2", "01-07", 0, 0, 1, 1, 20.0, 5.0),
    ]


def test_item_features_and_sessions(built):
    warehouse, _, _ = built
    items = fetch(
        warehouse,
        "select item_id, n_views, n_carts, n_purchases, n_buyers, revenue, popularity_rank"
        " from marts.item_features order by popularity_rank",
    )
    # i3 ties i2 on purchases (its 01-11 purchase is cut) but has one buyer to i2's two; i4: untouched
    assert items == [
        ("i1", 2, 1, 3, 3, 40.0, 1),
        ("i2", 0, 1, 2, 2, 40.0, 2),
        ("i3", 1, 0, 2, 1, 20.0, 3),
        ("i4", 0, 0, 0, 0, 0.0, 4),
    ]
    sessions = fetch(
        warehouse,
        "select session_id, source_session_id, user_id, n_events, n_views, n_carts, n_purchases, revenue,"
        " duration_seconds from marts.sessions order by session_id",
    )
    # 30-minute rule: u1's source session s2 (cart 18:00, purchase 23:59:59) is two sessions
    assert sessions == [
        ("u1-20240109T090000", "s1", "u1", 2, 1, 0, 1, 20.0, 300),
        ("u1-20240110T180000", "s2", "u1", 1, 0, 1, 0, 0.0, 0),
        ("u1-20240110T235959", "s2", "u1", 1, 0, 0, 1, 20.0, 0),
        ("u2-20240105T120000", "s3", "u2", 3, 1, 1, 1, 10.0, 120),
        ("u3-20240108T200000", "s4", "u3", 1, 1, 0, 0, 0.0, 0),
        ("u4-20240101T100000", "s5", "u4", 1, 0, 0, 1, 15.0, 0),
        ("u4-20240102T100000", "s6", "u4", 1, 0, 0, 1, 5.0, 0),
        ("u5-20240107T110000", "s7", "u5", 2, 0, 0, 2, 30.0, 600),
    ]


def test_user_profile_windows_tenure_and_favourite_categories(built):
    warehouse, _, _ = built
    rows = fetch(
        warehouse,
        "select user_id, favourite_categories, n_events_7d, n_events_30d, n_orders_7d, revenue_7d,"
        " tenure_days, days_since_first_purchase, avg_basket_value, return_rate, country"
        " from marts.user_features order by user_id",
    )
    # weights view 1, cart 3, purchase 5 per category; 7 days = 01-04..01-10; signed up 2023-12-01
    assert rows == [
        ("u1", "toys,books", 4, 4, 2, 40.0, 40, 1, 20.0, 0.0, "DE"),  # toys 3 + 5 > books 1 + 5
        ("u2", "books", 3, 3, 1, 10.0, 40, 5, 10.0, 0.0, "DE"),
        ("u3", "food", 1, 1, 0, 0.0, 40, None, None, None, "DE"),
        ("u4", "food", 0, 2, 0, 0.0, 40, 9, 10.0, 0.0, "DE"),  # 01-01 and 01-02 fall out of 7 days
        ("u5", "books,toys", 2, 2, 1, 30.0, 40, 3, 30.0, 0.0, "DE"),  # a tie goes by name
    ]


def test_rerun_gives_identical_marts_and_releases_the_file(built):
    warehouse, root, first = built
    before = snapshot(warehouse)
    again = run_dbt(warehouse, AS_OF, PROJECT, root / "state")
    assert again["rows"] == first["rows"]
    assert snapshot(warehouse) == before
    # another process can take the write lock right after run_dbt returns
    probe = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('create table t(x int)'); c.close()"
    )
    subprocess.run([sys.executable, "-c", probe, str(warehouse)], check=True, capture_output=True)


def test_as_of_defaults_to_newest_event_day(tmp_path):
    warehouse = make_raw(tmp_path / "warehouse.duckdb")
    summary = run_dbt(warehouse, None, PROJECT, tmp_path / "state", select="+user_features")
    assert summary["as_of"] is None
    assert summary["rows"] == {
        "staging.stg_events": 14,
        "staging.stg_users": 6,
        "staging.stg_items": 4,
        "intermediate.int_events_flagged": 14,
        "intermediate.int_events_as_of": 14,
        "intermediate.int_users": 6,
        "intermediate.int_items": 4,
        "marts.user_features": 6,
    }
    u1, u6 = fetch(
        warehouse,
        "select as_of_date, recency_days, frequency, monetary from marts.user_features"
        " where user_id in ('u1', 'u6') order by user_id",
    )
    assert u1 == (date(2024, 1, 12), 1, 3, 45.0)  # the 01-11 purchase now counts
    assert u6 == (date(2024, 1, 12), 0, 0, 0.0)


def test_failing_data_test_raises_naming_it(tmp_path):
    bad = ("e99", "u2", "i2", "Refund", "2024-01-06 10:00:00", "s10", 1, 20.0)
    warehouse = make_raw(tmp_path / "warehouse.duckdb", extra_events=[bad])
    (tmp_path / "state").mkdir()
    _record_rows(tmp_path / "state", AS_OF, {"marts.churn_labels": 0})  # an earlier build's record
    with pytest.raises(TransformError) as failure:
        run_dbt(warehouse, AS_OF, PROJECT, tmp_path / "state")
    # a failed build leaves no record: what its models hold is unknown
    assert built_rows(tmp_path / "state", "marts.churn_labels", AS_OF) is None
    message = str(failure.value)
    assert "test.personaflow.accepted_values_stg_events_event_type__view__cart__purchase__return" in message
    assert "[fail, 1 failing rows]" in message
    # the marts downstream of the failed test were not built, and the message says so
    assert "model.personaflow.user_features" in message.split("skipped because of them:")[1]
    # no mart built from the events (the review and demographics marts read no events: built, empty)
    assert fetch(
        warehouse, "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
    ) == [("customer_demographics",), ("customer_reviews",), ("product_reviews",)]


def test_unknown_command_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'docs'"):
        run_dbt(tmp_path / "w.duckdb", AS_OF, PROJECT, tmp_path / "state", command="docs")
