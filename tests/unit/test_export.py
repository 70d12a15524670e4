"""Any model the nightly run trains is saved as what serving scores with, and scores the same loaded."""

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from personaflow.training import export
from personaflow.training.data.features import purchases_source
from personaflow.training.data.interactions import time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import history_parts, own_history, popularity_ranking
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.export import BASELINE_KINDS
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import fit_model
from personaflow.training.pipeline import promote_candidate, train_candidate
from personaflow.training.registry.loading import LoadedModel, load_model
from personaflow.training.registry.pointer import list_models
from personaflow.training.registry.store import save_candidate
from personaflow.training.rerank.hybrid import blend

CFG = FitConfig(epochs=3, patience=2, val_days=7, dim=16, seed=5, device="cpu", max_len=20, layers=1)


@pytest.fixture(scope="module")
def split():
    return time_split(make_interactions(seed=21), holdout_days=7)


@pytest.fixture
def warehouse(tmp_path):
    """marts.interactions as the nightly run leaves it (synthetic rows), nothing else."""
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("synthetic", make_interactions(seed=8))
        con.execute("create schema marts")
        con.execute("create table marts.interactions as select * from synthetic")
    return path


@pytest.mark.parametrize("name", ["sasrec", "gru", "bpr"])
def test_exported_vectors_rank_exactly_as_the_fitted_model(split, name):
    fitted = fit_model(name, split, CFG)
    emb = export.embeddings(name, fitted.module, split, CFG.max_len)
    assert emb.user_emb.shape == (split.maps.n_users, CFG.dim)
    assert emb.item_emb.shape == (split.maps.n_items, CFG.dim)
    users = np.arange(0, split.maps.n_users, 7)
    loaded = LoadedModel.of(emb, split.maps, popularity_ranking(split))
    exported, fitted_scores = loaded.scores(users), fitted.scores_fn(users)
    # sequence scores are log-softmax of the same logits: equal up to a per-user constant
    shift = fitted_scores - exported
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-3)
    assert evaluate(loaded.scores, split)["ndcg_at_10"] == pytest.approx(
        evaluate(fitted.scores_fn, split)["ndcg_at_10"], abs=1e-9
    )


def test_a_hybrid_survives_the_model_store_and_scores_like_the_blend(split, store):
    fitted = fit_model("bpr", split, CFG)
    emb = export.with_history(export.embeddings("bpr", fitted.module, split), *history_parts(split), 0.3)
    tag = save_candidate(emb, split.maps, popularity_ranking(split), {"ndcg_at_10": 0.5}, {})
    loaded = load_model(tag)
    assert loaded.kind == "bpr-mf+history" and loaded.blend_weight == pytest.approx(0.3)
    users = np.arange(split.maps.n_users)
    expected = blend(own_history(split), fitted.scores_fn, 0.3)(users)
    np.testing.assert_allclose(loaded.scores(users), expected, rtol=1e-5, atol=1e-6)
    # one user at a time (serving's path) gives that user's row of the batch
    np.testing.assert_allclose(loaded.scores(3), expected[3], rtol=1e-5, atol=1e-6)
    # the repeat-buy part is really there: a user's most bought item outranks the model's favourite
    user = int(np.argmax(np.asarray(history_parts(split)[0].sum(axis=1)).ravel()))
    top_bought = int(history_parts(split)[0][user].toarray().argmax())
    assert int(np.argmax(loaded.scores(user))) == top_bought
    assert list_models(store)[0]["kind"] == "bpr-mf+history"


def test_nightly_training_saves_a_sequence_hybrid_that_the_gate_can_promote(tmp_path, store, warehouse):
    result = train_candidate(
        warehouse, holdout_days=7, seed=4, epochs=3, dim=16, reports_dir=tmp_path / "r", model="gru",
        hybrid=True,
    )
    # the learned model is saved either way; when it does not clearly beat the best baseline, that
    # baseline is saved too and is the candidate to serve
    learned = result.get("learned_tag", result["tag"])
    params = result.get("learned_params", result["params"])
    metrics = result.get("learned_metrics", result["metrics"])
    assert params["kind"] == "gru+history" and 0.0 < params["blend_weight"]
    # the report compares with every baseline, and the saved model scores what was measured
    assert {"baseline_ndcg_at_10", "repeat_buy_ndcg_at_10", "tifu_ndcg_at_10"} <= set(metrics)
    split = time_split(make_interactions(seed=8), holdout_days=7)
    loaded = load_model(learned)
    assert evaluate(loaded.scores, split)["ndcg_at_10"] == pytest.approx(metrics["ndcg_at_10"], abs=1e-9)
    served = load_model(result["tag"])
    assert evaluate(served.scores, split)["ndcg_at_10"] == pytest.approx(
        result["metrics"]["ndcg_at_10"], abs=1e-9
    )
    if "learned_tag" in result:
        assert served.kind == BASELINE_KINDS[result["metrics"]["gate_best_baseline"]]
        assert "no learned model beat the best baseline" in result["served_instead"]
    decision = promote_candidate(result["tag"], store, report=result["report"])
    assert decision["promoted"] is True  # nothing in production yet: the gate's sanity is all


def test_a_reranked_model_serves_its_frozen_candidates_first(store, warehouse):
    with pytest.raises(ValueError, match="rerank=True needs a feature source"):
        train_candidate(warehouse, holdout_days=7, seed=4, epochs=2, dim=8, rerank=True)
    result = train_candidate(
        warehouse, holdout_days=7, seed=4, epochs=2, dim=8, model="bpr", rerank=True,
        features=purchases_source(None), serve_baseline=False,
    )  # fmt: skip
    assert result["params"]["kind"] == "bpr-mf+rerank" and result["params"]["rerank_pool_size"] > 0
    loaded = load_model(result["tag"])
    split = time_split(make_interactions(seed=8), holdout_days=7)
    assert evaluate(loaded.scores, split)["ndcg_at_10"] == pytest.approx(result["metrics"]["ndcg_at_10"])
    user = split.maps.user_index[sorted(split.test_truth)[0]]
    scores = loaded.scores(user)
    picked = loaded.rerank[user]
    assert picked.nnz > 0 and np.array_equal(scores[picked.indices], picked.data)


def test_rerank_scores_put_the_candidates_first_and_keep_the_model_order_below():
    rng = np.random.default_rng(3)
    base = export.Embeddings("bpr-mf", rng.normal(size=(2, 4)), rng.normal(size=(6, 4)), np.zeros(6))
    frozen = sp.csr_matrix(([1.9, 1.5], ([0, 0], [4, 1])), shape=(2, 6))  # user 0: item 4, then item 1
    model = export.Embeddings(**{**base.__dict__, "rerank": frozen})
    scores = export.score_users(model, np.array([0, 1]))
    assert list(np.argsort(-scores[0])[:2]) == [4, 1] and scores[0, [0, 2, 3, 5]].max() <= 0.5
    plain = export.score_users(base, np.array([0, 1]))
    below = [0, 2, 3, 5]  # the rest keep the model's own order
    assert list(np.argsort(-scores[0, below])) == list(np.argsort(-plain[0, below]))
    assert list(np.argsort(-scores[1])) == list(np.argsort(-plain[1]))  # no candidates: the model's order
