"""Why /recommend recommends an item (personaflow/serving/reasons.py) and the side tables it reads, from
the features stage's real export over real DuckDB marts; no server (tests/integration/test_serving.py
checks the API's field)."""

from datetime import date

import duckdb

from personaflow.serving.co_purchase import load_rules
from personaflow.serving.reasons import Context, explain, load_history
from personaflow.serving.tables import export_serving_tables

AS_OF = date(2011, 12, 9)


def _marts(con) -> None:
    con.execute("create schema marts")
    con.execute(
        """create table marts.user_features as select * from (values
             ('a', 'Champions', date '2011-12-09'), ('b', 'At Risk', date '2011-12-09'))
           t(user_id, rfm_segment, as_of_date)"""
    )
    # a bought i1 on three days (twice on 11-20: one day), i2 once; b only viewed i3
    con.execute(
        """create table marts.interactions as select * from (values
             ('a', 'i1', timestamp '2011-11-01 10:00:00', 1), ('a', 'i1', timestamp '2011-11-20 09:00:00', 2),
             ('a', 'i1', timestamp '2011-11-27 12:00:00', 1), ('a', 'i2', timestamp '2011-12-08 15:00:00', 1),
             ('b', 'i3', timestamp '2011-12-01 10:00:00', 0))
           t(user_id, item_id, last_event_ts, n_purchases)"""
    )
    # i4 -> i1: a 302-order pair; i4 -> i9: a 3-order fluke with a huge lift; i5 -> i2 below chance
    con.execute(
        """create table marts.co_purchase as select * from (values
             ('i4', 'i9', 3, 0.01, 6177.0, 0.01), ('i4', 'i1', 302, 0.5, 3.1, 0.5),
             ('i5', 'i2', 40, 0.4, 0.9, 0.4))
           t(item_id, other_item_id, n_orders_both, confidence, lift, score)"""
    )


def test_history_export_counts_purchase_days_and_rules_rank_by_score(tmp_path):
    with duckdb.connect() as con:
        _marts(con)
        counts = export_serving_tables(con, tmp_path)
    assert counts["purchase_history_rows"] == 2 and counts["co_purchase_rows"] == 2  # lift <= 1 left out
    history = load_history(tmp_path)
    assert history.as_of == AS_OF and history.segment == {"a": "Champions"}
    assert history.of("a") == {"i1": (3, date(2011, 11, 27)), "i2": (1, date(2011, 12, 8))}
    assert history.of("b") == {}  # views are no purchase
    # the 302-order pair first, whatever the fluke's lift
    assert [r[0] for r in load_rules(tmp_path)["i4"]] == ["i1", "i9"] and "i5" not in load_rules(tmp_path)


def _context(**changes) -> Context:
    base = dict(
        bought={"i1": (3, date(2011, 11, 27)), "i2": (1, date(2011, 12, 8))},
        as_of=AS_OF,
        segment="Champions",
        co_purchase={"i4": [("i1", 0.5, 302, 3.1)], "i6": [("i2", 0.9, 2, 9.0)], "i7": [("i2", 0.5, 9, 0.9)]},
        text={"i8": [("i7", 0.9), ("i2", 0.6)]},
        segment_buyers={"Champions": {"i10": 35.0}},
        best_sellers={"i11": 4, "i12": 101},
        names={"i1": "WHITE HANGING HEART T-LIGHT HOLDER"},
    )
    return Context(**(base | changes))


def test_each_source_gives_its_reason_in_order():
    ctx = _context(from_neighbours=frozenset({"i13", "i10"}))
    said = {item: explain(item, ctx) for item in ("i1", "i2", "i4", "i8", "i13", "i10", "i11")}
    assert said["i1"].source == "history" and said["i1"].text == "bought 3 times, last 12 days ago"
    assert said["i2"].text == "bought yesterday"
    assert said["i4"].source == "co_purchase" and said["i4"].item_id == "i1"
    assert said["i4"].text == "often bought with WHITE HANGING HEART T-LIGHT HOLDER, which you bought"
    # the nearest name the user did not buy (i7) is passed over; an unnamed item is named by its id
    assert (said["i8"].source, said["i8"].item_id) == ("text", "i2")
    assert said["i8"].text == "similar name to i2 you bought"
    # neighbours come before the segment
    assert said["i13"].source == "neighbours" and said["i10"].source == "neighbours"
    assert said["i11"].text == "one of the shop's best sellers (#4)"
    assert explain("i10", _context()).text == "popular with Champions"


def test_weak_rules_and_far_best_sellers_are_no_reason():
    ctx = _context(segment=None)
    # i6's rule rests on 2 orders, i7's is below chance: neither explains; #101 is no best seller
    assert [explain(i, ctx).source for i in ("i6", "i7", "i12", "i10")] == ["model"] * 4
    assert explain("i1", _context(as_of=None)).text == "bought 3 times, last on 2011-11-27"


def test_a_tifu_knn_ranker_says_which_items_come_from_neighbours(store, tmp_path):
    import pandas as pd

    from personaflow.serving.ranking import Ranker
    from personaflow.serving.reasons import PurchaseHistory
    from personaflow.training.data.synthetic import make_interactions
    from personaflow.training.pipeline import train_candidate
    from personaflow.training.registry.loading import load_model

    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.register("synthetic", make_interactions(seed=8))
        con.execute("create schema marts; create table marts.interactions as select * from synthetic")
    loaded = load_model(train_candidate(warehouse, holdout_days=7, seed=4, model="tifu")["tag"])
    catalogue = pd.DataFrame({"category": "c"}, index=pd.Index(loaded.maps.item_ids, name="item_id"))
    user, row = loaded.maps.user_ids[0], loaded.history[0]
    own = {loaded.maps.item_ids[j] for j in row.indices}
    first = sorted(own)[0]
    history = PurchaseHistory({user: {first: (2, AS_OF)}}, {}, AS_OF)
    ranker = Ranker(loaded, catalogue, history=history)
    items = [i for i, _, _ in ranker.recommend(user, 20)[0]]
    said = dict(zip(items, ranker.reasons(user, items), strict=True))
    assert said[first].text == "bought twice, last today"
    # every other item the TIFU row scored is the neighbours' doing (the user's own purchases aside)
    assert {i for i, r in said.items() if r.source == "neighbours"} == (own & set(items)) - {first}
    assert all(r.source in ("popularity", "model") for i, r in said.items() if i not in own)
