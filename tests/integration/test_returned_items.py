"""A fully returned item is never recommended back and never cited as bought (issue 27: customer 12454
bought and cancelled 22423, REGENCY CAKESTAND, and was offered it through the segment fallback "bought
56 days ago").

The real path of /recommend without the HTTP server: marts in DuckDB with a marts.returned_items table
as dbt builds it, the features stage's export, and the production Ranker built as the service builds it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from personaflow.core.settings import REPO_ROOT
from personaflow.pipeline.features import build_features
from personaflow.serving.hotswap import ModelWatcher
from tests._serving_setup import promoted_bpr, write_marts


def test_a_fully_returned_item_comes_back_from_no_path(tmp_path, monkeypatch, one_torch_thread):
    split, features_dir, pointer, warehouse = promoted_bpr(tmp_path, monkeypatch, 40, 60, 3000)
    users, items = list(split.maps.user_ids[:12]), list(split.maps.item_ids)
    known, cold = users[1], "cold-customer"
    as_of = datetime.now(UTC).date() - timedelta(days=1)
    # both bought items[1..4]; the cold customer (unknown to the model, a Champion) is users[0]'s segment
    bought = [(u, i) for u in (known, cold, users[2]) for i in items[1:5]]
    write_marts(warehouse, [*users, cold], items, as_of, bought)
    with duckdb.connect(str(warehouse)) as con:
        segment_of_cold = con.execute("select rfm_segment from marts.user_features where user_id = ?",
                                      [cold]).fetchall()[0][0]  # fmt: skip
    build_features(warehouse, features_dir, REPO_ROOT / "feature_repo", as_of)
    ranker, _ = ModelWatcher(pointer, features_dir).build()
    before_known = [i for i, _, _ in ranker.recommend(known, k=len(items))[0]]
    before_cold = [i for i, _, _ in ranker.recommend(cold, k=len(items), segment=segment_of_cold)[0]]
    assert ranker.reasons(known, [items[1]])[0].source == "history"  # bought, and said so

    # each sends back every unit of items[1] and items[2] (dbt's marts.returned_items)
    returned = {items[1], items[2]}
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create or replace table marts.returned_items (user_id varchar, item_id varchar)")
        con.executemany("insert into marts.returned_items values (?, ?)",
                        [(u, i) for u in (known, cold) for i in sorted(returned)])  # fmt: skip
    build_features(warehouse, features_dir, REPO_ROOT / "feature_repo", as_of)
    ranker, _ = ModelWatcher(pointer, features_dir).build()

    model_answer, fallback, _ = ranker.recommend(known, k=len(items))
    assert fallback is None and returned <= set(before_known)  # the model would have offered them
    assert not {i for i, _, _ in model_answer} & returned
    cold_answer, fallback, _ = ranker.recommend(cold, k=len(items), segment=segment_of_cold)
    assert fallback in ("segment", "popularity") and returned <= set(before_cold)
    assert not {i for i, _, _ in cold_answer} & returned
    # never cited as bought: items[3] still is; a returned one is explained by something else
    reasons = ranker.reasons(known, [items[1], items[2], items[3]])
    assert [r.source for r in reasons][2] == "history"
    assert all(r.source != "history" and "which you bought" not in r.text for r in reasons[:2]), reasons
    assert items[1] not in ranker.history.of(known) and items[3] in ranker.history.of(known)
    # another customer who kept items[1] is still offered it and told they bought it
    assert ranker.reasons(users[2], [items[1]])[0].source == "history"
