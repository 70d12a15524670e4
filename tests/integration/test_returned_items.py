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
from personaflow.training.data.interactions import time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.models.bpr import fit_bpr
from personaflow.training.registry.pointer import promote
from personaflow.training.registry.store import save_candidate
from tests._serving_setup import write_marts


def test_a_fully_returned_item_comes_back_from_no_path(tmp_path, monkeypatch, one_torch_thread):
    features_dir, pointer = tmp_path / "features", tmp_path / "production.json"
    warehouse = tmp_path / "warehouse.duckdb"
    for key, value in {"BENTOML_HOME": tmp_path / "bentoml", "PERSONAFLOW_PRODUCTION_POINTER": pointer,
                       "PERSONAFLOW_FEATURES_DIR": features_dir, "PERSONAFLOW_WAREHOUSE": warehouse}.items():
        monkeypatch.setenv(key, str(value))  # fmt: skip
    monkeypatch.delenv("PERSONAFLOW_REDIS_URL", raising=False)
    split = time_split(make_interactions(n_users=40, n_items=60, n_rows=3000, seed=5), holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=1, batch_size=512, seed=2, device="cpu")
    metrics = {"ndcg_at_10": 0.3, "baseline_ndcg_at_10": 0.1}
    tag = save_candidate(model, split.maps, popularity_ranking(split), metrics, {"seed": 2})
    assert promote(tag, pointer)["promoted"]
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
