"""The personas' warehouse SQL reads the same on PostgreSQL as on DuckDB: one month of the real Online
Retail lines loaded into both, every behaviour feature of every buyer equal (PostgreSQL's numeric averages
and extract() included)."""

from __future__ import annotations

import duckdb
import numpy as np
import psycopg

from personaflow.core import warehouse as wh
from personaflow.profiles.personas import behaviour_sql
from tests._retail_lines import retail_lines


def test_behaviour_features_are_the_same_on_postgres_and_duckdb(postgres_url):
    events, items = retail_lines("2011-03", 1)
    with duckdb.connect() as con:
        con.register("ev", events)
        con.register("it", items)
        want = con.execute(behaviour_sql("ev", "it")).df().set_index("user_id")

    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute("create schema intermediate")
        pg.execute(
            "create table intermediate.int_events_as_of (user_id text, order_key text, item_id text, "
            "event_ts timestamp, event_type text, quantity bigint, revenue double precision, "
            "return_value double precision, is_product boolean)"
        )
        pg.execute("create table intermediate.int_items (item_id text, category text)")
        with pg.cursor().copy("copy intermediate.int_events_as_of from stdin") as copy:
            for row in events.itertuples(index=False):
                copy.write_row(tuple(row))
        with pg.cursor().copy("copy intermediate.int_items from stdin") as copy:
            for row in items.itertuples(index=False):
                copy.write_row(tuple(row))
    with wh.connect(postgres_url, read_only=True) as con:
        got = con.execute(behaviour_sql(), []).df().set_index("user_id")

    assert len(want) > 500 and list(got.index) == list(want.index)
    assert list(got.columns) == list(want.columns)
    for column in want.columns:
        a, b = got[column].astype(float).to_numpy(), want[column].astype(float).to_numpy()
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), column
