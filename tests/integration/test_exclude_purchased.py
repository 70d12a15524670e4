"""`exclude_purchased` excludes everything a customer bought, whatever the count (issue 27: it stopped at
500 items, and the shop's biggest customers got already-bought items back).

The real path of /recommend without the HTTP server: marts in DuckDB, the features stage
(build_features: Parquet snapshots, Feast apply and materialize into the SQLite online store), the
online read the service does (`OnlineFeatures.user` -> `purchased_in`) and the production Ranker built
the way the service builds it (`ModelWatcher.build`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from personaflow.core.settings import REPO_ROOT
from personaflow.pipeline.features import build_features
from personaflow.serving.hotswap import ModelWatcher
from personaflow.serving.online import OnlineFeatures, purchased_in
from tests._serving_setup import promoted_bpr, write_marts

BOUGHT = 600


def test_a_customer_with_600_distinct_items_gets_none_of_them_back(tmp_path, monkeypatch, one_torch_thread):
    split, features_dir, pointer, warehouse = promoted_bpr(tmp_path, monkeypatch, 60, 720, 12000)
    users, items = list(split.maps.user_ids[:20]), list(split.maps.item_ids)
    assert len(items) > BOUGHT + 50, len(items)
    big = users[1]  # users[0] bought items[0] in write_marts; this one bought 600 other items
    bought = set(items[1 : 1 + BOUGHT])
    as_of = datetime.now(UTC).date() - timedelta(days=1)
    write_marts(warehouse, users, items, as_of, [(big, i) for i in sorted(bought)])
    build_features(warehouse, features_dir, REPO_ROOT / "feature_repo", as_of)

    exclude = purchased_in(OnlineFeatures(REPO_ROOT / "feature_repo", features_dir).user(big))
    assert exclude == bought, f"{len(exclude)} of {BOUGHT} purchases reach the online store"

    ranker, _ = ModelWatcher(pointer, features_dir).build()
    assert ranker.knows_user(big)
    everything, _, _ = ranker.recommend(big, k=len(items))
    assert bought <= {i for i, _, _ in everything}  # without the filter the model would return them
    answer, fallback, excluded = ranker.recommend(big, k=len(items), exclude=exclude)
    got = {i for i, _, _ in answer}
    assert fallback is None and excluded == BOUGHT
    assert not got & bought, f"{len(got & bought)} already-bought items came back"
    assert got == set(items) - bought
