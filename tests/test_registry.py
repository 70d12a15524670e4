"""The promotion gate, rollback and loading, on a real BentoML model store in a temp BENTOML_HOME."""

import json

import duckdb
import numpy as np
import pytest

from training import registry
from training.data import time_split
from training.evaluate import popularity_ranking
from training.pipeline import promote_candidate, train_candidate
from training.synthetic import make_interactions
from training.train import fit_bpr


@pytest.fixture(scope="module")
def trained():
    split = time_split(make_interactions(seed=21), holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=3, batch_size=256, seed=1, device="cpu")
    return model, split


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    return tmp_path / "registry" / "production.json"


def save(trained, ndcg: float, baseline: float = 0.1) -> str:
    model, split = trained
    metrics = {"ndcg_at_10": ndcg, "recall_at_10": ndcg, "n_test_users": 10, "baseline_ndcg_at_10": baseline}
    return registry.save_candidate(model, split.maps, popularity_ranking(split), metrics, {"seed": 1})


def test_promote_accepts_better_refuses_worse_and_rollback_restores(trained, store, tmp_path):
    first = save(trained, 0.30)
    decision = registry.promote(first, store)
    assert decision["promoted"] is True and decision["previous"] is None
    assert json.loads(store.read_text())["tag"] == first

    better = save(trained, 0.40)
    decision = registry.promote(better, store)
    assert decision["promoted"] is True and decision["previous"] == first
    pointer = json.loads(store.read_text())
    assert pointer["tag"] == better and pointer["history"] == [first]

    worse = save(trained, 0.35)
    before = store.read_text()
    decision = registry.promote(worse, store)
    assert decision["promoted"] is False
    assert "does not beat production" in decision["reason"] and better in decision["reason"]
    assert store.read_text() == before  # pointer untouched

    # a small gain can be required on top
    slightly = save(trained, 0.41)
    refused = registry.promote(slightly, store, min_gain=0.05)
    assert refused["promoted"] is False and "+0.05" in refused["reason"]

    assert registry.rollback(store) == first
    pointer = json.loads(store.read_text())
    assert pointer["tag"] == first and pointer["history"] == [] and pointer["rolled_back_from"] == better
    with pytest.raises(ValueError, match="nothing to roll back to"):
        registry.rollback(store)

    # the store lives under the temp BENTOML_HOME, nowhere else
    assert (tmp_path / "bentoml" / "models" / registry.MODEL_NAME).is_dir()
    listed = registry.list_models(store)
    assert [m["tag"] for m in listed] == [first, better, worse, slightly]
    assert [m["is_production"] for m in listed] == [True, False, False, False]
    assert listed[1]["metrics"]["ndcg_at_10"] == pytest.approx(0.40)


def test_promote_refuses_a_model_that_does_not_beat_popularity(trained, store):
    tag = save(trained, ndcg=0.20, baseline=0.25)
    decision = registry.promote(tag, store)
    assert decision["promoted"] is False
    assert "popularity baseline" in decision["reason"]
    assert not store.exists()
    assert registry.promote(f"{registry.MODEL_NAME}:latest", store)["promoted"] is False
    with pytest.raises(ValueError, match="not in the model store"):
        registry.promote(f"{registry.MODEL_NAME}:doesnotexist", store)


def test_promoting_the_production_tag_again_is_refused(trained, store):
    tag = save(trained, 0.5)
    assert registry.promote(tag, store)["promoted"] is True
    again = registry.promote(tag, store)
    assert again["promoted"] is False and "already in production" in again["reason"]


def test_load_production_scores_like_the_trained_model(trained, store):
    model, split = trained
    tag = save(trained, 0.5)
    registry.promote(tag, store)
    loaded = registry.load_production(store)
    assert loaded.tag == tag and loaded.metrics["ndcg_at_10"] == pytest.approx(0.5)
    user = split.maps.user_ids[3]
    items, fallback = loaded.recommend(user, 5)
    expected = model.score(split.maps.user_index[user]).numpy()
    top = np.argsort(-expected)[:5]
    assert fallback is None
    assert [i for i, _ in items] == [split.maps.item_ids[j] for j in top]
    assert [s for _, s in items] == pytest.approx(expected[top].tolist(), rel=1e-5)
    unknown, fallback = loaded.recommend("no-such-user", 3)
    assert fallback == "popularity"
    assert [i for i, _ in unknown] == [i for i, _ in popularity_ranking(split)[:3]]


def test_load_production_without_pointer_names_the_file(store):
    with pytest.raises(FileNotFoundError, match="production.json"):
        registry.load_production(store)


def test_train_candidate_stage_end_to_end(tmp_path, store):
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    con.register("synthetic", make_interactions(seed=8))
    con.execute("create schema marts")
    con.execute("create table marts.interactions as select * from synthetic")
    con.close()
    result = train_candidate(warehouse, holdout_days=7, seed=4, epochs=8, dim=16, reports_dir=tmp_path / "r")
    json.dumps(result)  # plain types only: it crosses process boundaries in the DAG
    assert result["tag"].startswith(f"{registry.MODEL_NAME}:")
    metrics = result["metrics"]
    assert 0.0 <= metrics["ndcg_at_10"] <= 1.0 and metrics["n_test_users"] > 0
    assert metrics["ndcg_at_10"] > metrics["baseline_ndcg_at_10"]
    report = json.loads((tmp_path / "r" / f"training_{result['tag'].replace(':', '_')}.json").read_text())
    assert len(report["history"]) == 8 and report["params"]["cutoff"] == result["params"]["cutoff"]
    decision = promote_candidate(result["tag"], store)
    assert decision["promoted"] is True
    assert registry.load_production(store).tag == result["tag"]
