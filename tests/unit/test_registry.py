"""The promotion gate, rollback and loading, on a real BentoML model store in a temp BENTOML_HOME."""

import json

import duckdb
import numpy as np
import pytest

from personaflow.training.data.interactions import IdMaps, time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.models.bpr import MatrixFactorization, fit_bpr
from personaflow.training.pipeline import promote_candidate, train_candidate
from personaflow.training.registry.loading import LoadedModel, load_production, transferred_scores_fn
from personaflow.training.registry.pointer import list_models, promote, read_pointer, rollback
from personaflow.training.registry.store import MODEL_NAME, save_candidate


@pytest.fixture(scope="module")
def trained():
    split = time_split(make_interactions(seed=21), holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=3, batch_size=256, seed=1, device="cpu")
    return model, split


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.register("synthetic", make_interactions(seed=8))
    con.execute("create schema marts")
    con.execute("create table marts.interactions as select * from synthetic")
    con.close()
    return path


def save(trained, ndcg: float, baseline: float = 0.1) -> str:
    model, split = trained
    metrics = {"ndcg_at_10": ndcg, "recall_at_10": ndcg, "n_test_users": 10, "baseline_ndcg_at_10": baseline}
    return save_candidate(model, split.maps, popularity_ranking(split), metrics, {"seed": 1})


def promote_as_production(model, split, recorded_ndcg: float, store) -> str:
    """Production trained on another (longer hold-out) window, with the ndcg that window gave it."""
    tag = save((model, split), recorded_ndcg, baseline=0.1)
    assert promote(tag, store)["promoted"] is True
    return tag


def test_promote_accepts_better_refuses_worse_and_rollback_restores(trained, store, tmp_path):
    first = save(trained, 0.30)
    decision = promote(first, store)
    assert decision["promoted"] is True and decision["previous"] is None
    assert json.loads(store.read_text())["tag"] == first

    better = save(trained, 0.40)
    decision = promote(better, store)
    assert decision["promoted"] is True and decision["previous"] == first
    pointer = json.loads(store.read_text())
    assert pointer["tag"] == better and pointer["history"] == [first]

    worse = save(trained, 0.35)
    before = store.read_text()
    decision = promote(worse, store)
    assert decision["promoted"] is False
    assert "does not beat production" in decision["reason"] and better in decision["reason"]
    assert store.read_text() == before  # pointer untouched

    # a small gain can be required on top
    slightly = save(trained, 0.41)
    refused = promote(slightly, store, min_gain=0.05)
    assert refused["promoted"] is False and "+0.05" in refused["reason"]

    assert rollback(store) == first
    pointer = json.loads(store.read_text())
    assert pointer["tag"] == first and pointer["history"] == [] and pointer["rolled_back_from"] == better
    with pytest.raises(ValueError, match="nothing to roll back to"):
        rollback(store)

    # the store lives under the temp BENTOML_HOME, nowhere else
    assert (tmp_path / "bentoml" / "models" / MODEL_NAME).is_dir()
    listed = list_models(store)
    assert [m["tag"] for m in listed] == [first, better, worse, slightly]
    assert [m["is_production"] for m in listed] == [True, False, False, False]
    assert listed[1]["metrics"]["ndcg_at_10"] == pytest.approx(0.40)


def test_promote_refuses_a_model_that_does_not_beat_popularity(trained, store):
    tag = save(trained, ndcg=0.20, baseline=0.25)
    decision = promote(tag, store)
    assert decision["promoted"] is False
    assert "popularity baseline" in decision["reason"]
    assert not store.exists()
    assert promote(f"{MODEL_NAME}:latest", store)["promoted"] is False
    with pytest.raises(ValueError, match="not in the model store"):
        promote(f"{MODEL_NAME}:doesnotexist", store)


def test_promoting_the_production_tag_again_is_refused(trained, store):
    tag = save(trained, 0.5)
    assert promote(tag, store)["promoted"] is True
    again = promote(tag, store)
    assert again["promoted"] is False and "already in production" in again["reason"]


def test_load_production_scores_like_the_trained_model(trained, store):
    model, split = trained
    tag = save(trained, 0.5)
    promote(tag, store)
    loaded = load_production(store)
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
        load_production(store)


def test_train_candidate_stage_end_to_end(tmp_path, store, warehouse):
    result = train_candidate(warehouse, holdout_days=7, seed=4, epochs=8, dim=16, reports_dir=tmp_path / "r")
    json.dumps(result)  # plain types only: it crosses process boundaries in the DAG
    assert result["tag"].startswith(f"{MODEL_NAME}:")
    metrics = result["metrics"]
    assert 0.0 <= metrics["ndcg_at_10"] <= 1.0 and metrics["n_test_users"] > 0
    assert metrics["ndcg_at_10"] > metrics["baseline_ndcg_at_10"]
    report = json.loads((tmp_path / "r" / f"training_{result['tag'].replace(':', '_')}.json").read_text())
    assert len(report["history"]) == 8 and report["params"]["cutoff"] == result["params"]["cutoff"]
    decision = promote_candidate(result["tag"], store)
    assert decision["promoted"] is True
    assert load_production(store).tag == result["tag"]


def test_transferred_scores_map_production_onto_the_candidate_split(trained):
    _, split = trained
    users, items = split.maps.user_ids, split.maps.item_ids
    # production knows a different, reordered set: not users[:5] nor items[0]; plus ids the split lacks
    prod_maps = IdMaps(user_ids=["ghost", *users[5:][::-1]], item_ids=["gone", *items[1:][::-1]])
    rng = np.random.default_rng(0)
    prod = LoadedModel(
        tag="prod:1",
        metrics={},
        user_emb=rng.normal(size=(prod_maps.n_users, 4)).astype(np.float32),
        item_emb=rng.normal(size=(prod_maps.n_items, 4)).astype(np.float32),
        item_bias=rng.normal(size=prod_maps.n_items).astype(np.float32),
        maps=prod_maps,
        popularity=[("gone", 9.0), (items[7], 5.0), (items[3], 4.0), (items[1], 1.0)],
    )
    scores = transferred_scores_fn(prod, split.maps)(np.array([split.maps.user_index[users[9]], 0]))
    assert scores.shape == (2, split.maps.n_items)
    # a known user: the same score as production gives that (user, item), item by item
    u = prod_maps.user_index[users[9]]
    for j in (1, 5, len(items) - 1):
        v = prod_maps.item_index[items[j]]
        expected = float(prod.user_emb[u] @ prod.item_emb[v] + prod.item_bias[v])
        assert scores[0, j] == pytest.approx(expected, rel=1e-5)
    assert scores[0, 0] == -np.inf  # items[0] is unknown to production: ranked after all it knows
    # an unknown user: production's popularity order over the items this split can rank ("gone" cannot)
    top = np.argsort(-scores[1], kind="stable")[:3]
    assert [items[j] for j in top] == [items[7], items[3], items[1]]
    result = evaluate(transferred_scores_fn(prod, split.maps), split)
    assert result["n_test_users"] == len(split.test_truth)


def test_gate_uses_production_rescored_on_the_candidate_split_not_its_easier_window(store, warehouse):
    # production: an untrained model whose recorded 0.95 came from an easy window
    earlier = time_split(make_interactions(seed=8), holdout_days=14)
    untrained = MatrixFactorization(earlier.maps.n_users, earlier.maps.n_items, dim=8)
    prod = promote_as_production(untrained, earlier, 0.95, store)

    # without re-scoring, the gate can only compare with the recorded number, and says so
    blind = train_candidate(warehouse, holdout_days=7, seed=4, epochs=8, dim=16)
    assert "production_ndcg_at_10" not in blind["metrics"]  # a baseline or bpr: the check is the same
    refused = promote(blind["tag"], store)
    assert refused["promoted"] is False and "0.9500" in refused["reason"]
    assert "as recorded on its own hold-out window" in refused["reason"]

    fair = train_candidate(warehouse, holdout_days=7, seed=4, epochs=8, dim=16, pointer_path=store)
    metrics = fair["metrics"]
    assert metrics["production_tag"] == prod
    assert metrics["production_ndcg_at_10"] < metrics["baseline_ndcg_at_10"] < metrics["ndcg_at_10"] < 0.95
    assert 0.0 <= metrics["production_recall_at_10"] <= 1.0
    decision = promote(fair["tag"], store)
    assert decision["promoted"] is True, decision["reason"]
    assert decision["production_ndcg_at_10"] == pytest.approx(metrics["production_ndcg_at_10"])
    # production's cut is older than the candidate's: its own artefact is graded on the new window
    assert "after both cuts" in decision["reason"]
    assert read_pointer(store)["history"] == [prod]


def test_gate_refuses_a_worse_candidate_that_only_beats_productions_harder_window(store, warehouse):
    # production: a well-trained model whose recorded 0.30 came from a hard window
    earlier = time_split(make_interactions(seed=8), holdout_days=14)
    strong, _ = fit_bpr(earlier, dim=16, epochs=8, batch_size=256, seed=2, device="cpu")
    prod = promote_as_production(strong, earlier, 0.30, store)

    # a less trained candidate (big default batches: few steps): beats popularity and the recorded
    # 0.30, but not production on this split
    weak = train_candidate(
        warehouse, holdout_days=7, seed=4, epochs=8, dim=16, pointer_path=store, serve_baseline=False
    )
    metrics = weak["metrics"]
    assert 0.30 < metrics["baseline_ndcg_at_10"] < metrics["ndcg_at_10"] < metrics["production_ndcg_at_10"]
    before = store.read_text()
    decision = promote(weak["tag"], store)
    assert decision["promoted"] is False
    reason = decision["reason"]
    # the same recipe as production (bpr): a retrain only has to be not clearly worse, and it is
    lo, hi = metrics["gate_vs_production_gain_ci_low"], metrics["gate_vs_production_gain_ci_high"]
    assert hi < 0 and f"[{lo:+.4f}, {hi:+.4f}] lies entirely below 0" in reason
    assert prod in reason and "after both cuts" in reason and "clearly better" in reason
    assert store.read_text() == before

    # once production has changed, the candidate's same-split number is stale: fall back, and say so
    newer = save((strong, earlier), 0.31)
    assert promote(newer, store)["promoted"] is True
    stale = promote(weak["tag"], store)
    assert stale["promoted"] is False and stale["production_ndcg_at_10"] == pytest.approx(0.31)
    assert "as recorded on its own hold-out window" in stale["production_basis"]
