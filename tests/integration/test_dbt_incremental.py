"""Incremental marts: a nightly run rewrites the new day only, re-running a day changes nothing, and
days built one by one equal a full refresh.

The raw layer is a small synthetic shop (4 days) plus a few faults (duplicates, a return, a line
without a customer), so every incremental model has rows on every day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from personaflow.ingest.generate import generate_shop
from personaflow.pipeline.transform import run_dbt
from tests.integration.test_transform import PROJECT, RAW_EVENTS_DDL

START = date(2026, 9, 1)
DAYS = [START + timedelta(days=n) for n in range(4)]
# every table an incremental run writes, and the marts rebuilt from them
TABLES = (
    "intermediate.int_events_flagged", "marts.interactions", "marts.sessions", "marts.data_quality",
    "marts.user_features", "marts.item_features", "marts.co_purchase", "marts.churn_labels",
)  # fmt: skip
VARS = {"co_purchase_min_orders": 1, "churn_horizon_days": 1}


def make_shop_raw(warehouse: Path) -> Path:
    shop = generate_shop(users=60, items=15, days=len(DAYS), seed=7, start=START, sessions_per_day=0.5)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw")
        con.register("users_df", shop.users)
        con.register("items_df", shop.items)
        con.register("events_df", shop.events)
        con.execute("create table raw.users as select * from users_df")
        con.execute("create table raw.items as select *, null::varchar as description from items_df")
        con.execute(RAW_EVENTS_DDL)
        con.execute(
            "insert into raw.events (event_id, user_id, item_id, event_type, event_ts, session_id, quantity,"
            " price, batch_date, source_file, loaded_at, source_format, source_row)"
            " select event_id, user_id, item_id, event_type, event_ts, session_id, quantity, price,"
            " cast(event_ts as date), 'events_' || cast(event_ts as date) || '.csv', now()::timestamp,"
            " 'synthetic', row_number() over (partition by cast(event_ts as date) order by event_id)"
            " from events_df"
        )
        faults = [
            # copies of day 2's first three purchases (new ids and lines, same business columns)
            "insert into raw.events select * replace ('dup-' || event_id as event_id, source_row + 1000"
            " as source_row) from raw.events where batch_date = ?2 and event_type = 'purchase'"
            " order by event_id limit 3",
            # day 3: a return of a purchase and a line without a customer
            "insert into raw.events select * replace ('ret-' || event_id as event_id, 'return' as event_type,"
            " -quantity as quantity, event_ts + interval 5 minute as event_ts, 2000 as source_row)"
            " from raw.events where batch_date = ?3 and event_type = 'purchase' order by event_id limit 1",
            "insert into raw.events select * replace ('anon-' || event_id as event_id, null as user_id,"
            " 3000 as source_row) from raw.events where batch_date = ?3 order by event_id limit 1",
        ]
        for sql in faults:
            con.execute(sql.replace("?2", f"date '{DAYS[1]}'").replace("?3", f"date '{DAYS[2]}'"))
        per_day = con.execute("select batch_date, count(*) from raw.events group by 1 order by 1").fetchall()
    assert [d for d, _ in per_day] == DAYS and all(n > 20 for _, n in per_day), per_day
    return warehouse


def fetch(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    return {table: fetch(warehouse, f"select * from {table} order by all") for table in TABLES}


def build(warehouse: Path, state: Path, as_of: date, full_refresh: bool = False) -> dict:
    # `run` (no tests): test_transform.py and test_dbt_marts.py test the models; here only the
    # contents matter, and every run costs seconds
    return run_dbt(warehouse, as_of, PROJECT, state, command="run", full_refresh=full_refresh, dbt_vars=VARS)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """Days 1, 2, 3 built one night at a time."""
    root = tmp_path_factory.mktemp("incremental")
    warehouse = make_shop_raw(root / "warehouse.duckdb")
    for day in DAYS[:3]:
        build(warehouse, root / "state", day)
    return warehouse, root / "state"


def test_days_built_one_by_one_equal_a_full_refresh_and_a_rerun_changes_nothing(nightly):
    warehouse, state = nightly
    incremental = snapshot(warehouse)
    assert all(incremental[t] for t in TABLES if t != "marts.churn_labels"), "a table is empty"
    assert {r[0] for r in fetch(warehouse, "select distinct event_date from marts.interactions")} == set(
        DAYS[:3]
    )
    # duplicates, the return and the anonymous line reached data_quality through the incremental runs
    assert fetch(
        warehouse,
        "select reason, sum(n_rows) from marts.data_quality where reason in ('duplicate', 'return',"
        " 'missing_customer') group by 1 order by 1",
    ) == [("duplicate", 3), ("missing_customer", 1), ("return", 1)]

    build(warehouse, state, DAYS[2])  # day 3 again
    assert snapshot(warehouse) == incremental

    build(warehouse, state, DAYS[2], full_refresh=True)
    assert snapshot(warehouse) == incremental


def test_a_nightly_run_rewrites_only_the_new_day(nightly):
    # runs after the test above (same warehouse, file order): days 1-3 are built
    warehouse, state = nightly
    # change history behind dbt's back: an incremental run must not look at day 1 again...
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from raw.events where batch_date = ?", [DAYS[0]])
    before = fetch(warehouse, "select * from marts.interactions where event_date < ? order by all", [DAYS[3]])
    summary = build(warehouse, state, DAYS[3])
    assert summary["full_refresh"] is False
    after = fetch(warehouse, "select * from marts.interactions where event_date < ? order by all", [DAYS[3]])
    assert after == before  # days 1-3 untouched, day 1 included
    assert fetch(warehouse, "select count(*) > 0 from marts.sessions where session_date = ?", [DAYS[3]]) == [
        (True,)
    ]
    # ...while a full refresh rebuilds from raw.events as it is now
    build(warehouse, state, DAYS[3], full_refresh=True)
    for table, day_column in (("marts.interactions", "event_date"), ("marts.data_quality", "batch_date")):
        assert fetch(warehouse, f"select count(*) from {table} where {day_column} = ?", [DAYS[0]]) == [(0,)]

    # an older as-of date rewinds the incremental tables: later days go, earlier ones stay
    kept = fetch(warehouse, "select * from marts.interactions where event_date <= ? order by all", [DAYS[1]])
    build(warehouse, state, DAYS[1])
    assert fetch(warehouse, "select * from marts.interactions order by all") == kept
    assert fetch(warehouse, "select max(session_date) from marts.sessions") == [(DAYS[1],)]
