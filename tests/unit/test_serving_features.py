"""The features stage's side tables for serving (co-purchase rules, segment best sellers), how the
serving side reads them back, and how /profile turns a churn score into a risk; real DuckDB, no server."""

import duckdb
import pandas as pd

from personaflow.serving import tables as serving_tables
from personaflow.serving.co_purchase import load_rules
from personaflow.serving.online import load_segment_popularity
from personaflow.serving.tables import export_serving_tables


def _marts(con, with_co_purchase: bool) -> None:
    con.execute("create schema marts")
    con.execute(
        """create table marts.user_features as select * from (values
             ('a', 'Champions', date '2011-12-09'), ('b', 'Champions', date '2011-12-09'),
             ('c', 'Hibernating', date '2011-12-09'), ('d', null, date '2011-12-09'))
           t(user_id, rfm_segment, as_of_date)"""
    )
    con.execute(
        """create table marts.interactions as select *, timestamp '2011-12-01 10:00:00' as last_event_ts
           from (values
             ('a', 'i1', 1), ('b', 'i1', 1), ('a', 'i2', 3), ('c', 'i2', 1), ('c', 'i3', 0), ('d', 'i9', 1))
           t(user_id, item_id, n_purchases)"""
    )
    if with_co_purchase:
        con.execute(
            """create table marts.co_purchase as select * from (values
                 ('i1', 'i2', 4, 0.5, 1.2, 0.5), ('i1', 'i3', 3, 0.3, 2.0, 0.3),
                 ('i1', 'i4', 3, 0.2, 1.5, 0.2), ('i2', 'i1', 4, 0.4, 1.2, 0.4))
               t(item_id, other_item_id, n_orders_both, confidence, lift, score)"""
        )


def test_exports_rules_capped_per_item_and_segment_best_sellers(tmp_path, monkeypatch):
    monkeypatch.setattr(serving_tables, "MAX_CO_PURCHASE_PER_ITEM", 2)
    with duckdb.connect() as con:
        _marts(con, with_co_purchase=True)
        counts = export_serving_tables(con, tmp_path)
    # no item names in this warehouse: no text neighbours
    assert counts == {
        "co_purchase_rows": 3, "segment_popularity_rows": 3, "text_neighbour_rows": 0,
        "purchase_history_rows": 5, "returned_item_rows": 0,  # marts built before returned_items
    }  # fmt: skip
    # Best score (confidence) first, not best lift; the weakest rule of i1 cut by the cap.
    assert load_rules(tmp_path) == {
        "i1": [("i2", 0.5, 4, 1.2), ("i3", 0.3, 3, 2.0)],
        "i2": [("i1", 0.4, 4, 1.2)],
    }
    # Champions: i1 has 2 buyers, i2 one; views-only rows (n_purchases 0) and users without a segment
    # are not counted.
    assert load_segment_popularity(tmp_path) == {
        "Champions": [("i1", 2.0), ("i2", 1.0)],
        "Hibernating": [("i2", 1.0)],
    }


def test_a_warehouse_without_the_co_purchase_mart_gives_an_empty_file(tmp_path):
    with duckdb.connect() as con:
        _marts(con, with_co_purchase=False)
        counts = export_serving_tables(con, tmp_path)
    assert counts["co_purchase_rows"] == 0
    columns = pd.read_parquet(tmp_path / "co_purchase.parquet").columns
    assert list(columns) == serving_tables.CO_PURCHASE_COLUMNS
    assert load_rules(tmp_path) == {} and load_rules(tmp_path / "nowhere") == {}


def test_churn_risk_from_the_model_score_else_the_recency_rule_and_live_wins():
    from personaflow.serving.online import churn_risk

    assert churn_risk(0.6, 5, 0) == ("high", "model")  # the score wins over a contrary rule
    assert churn_risk(0.5999, 1, 0) == ("medium", "model") and churn_risk(0.3, 1, 0) == ("medium", "model")
    assert churn_risk(0.2999, 1, 0) == ("low", "model")
    assert [churn_risk(None, r, 0) for r in (1, 2, 3, 4, 5)] == [
        ("high", "rule"), ("high", "rule"), ("medium", "rule"), ("low", "rule"), ("low", "rule"),
    ]  # fmt: skip
    assert churn_risk(0.9, 1, live_events=2) == ("low", "live")
    assert churn_risk(None, None, 0) == (None, None)
