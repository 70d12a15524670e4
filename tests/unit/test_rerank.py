"""Candidate pooling, DeepFM and the re-ranker on hand-made purchases and a tiny synthetic shop."""

import numpy as np
import pandas as pd
import pytest
import torch

from personaflow.ingest.generate import generate_shop
from personaflow.training.data.features import purchases_source
from personaflow.training.data.purchases import PurchaseSplit, purchases_from_events, split_purchases
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.models.config import FitConfig
from personaflow.training.models.deepfm import DeepFMConfig, Lists, _Lookup, fit_deepfm, list_ndcg, predict
from personaflow.training.models.fit import fit_model
from personaflow.training.models.trees import TreesConfig, fit_trees, tree_logits
from personaflow.training.rerank.candidates import (
    CandidateBuilder,
    Quotas,
    candidate_recall,
    copurchase_similarity,
)
from personaflow.training.rerank.reranker import RerankConfig, _vote, fit_reranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# the DeepFM ensemble with its tree vote, as these tests were written for (the default ranker is now
# LambdaRank members: tests/unit/test_rerank_lambdarank.py)
DEEPFM = {"trees": TreesConfig(), "lambdarank": None}


# Cut = 2025-02-20 - 30 days = 2025-01-21. Rows on/after the cut are the test window.
ROWS = [
    ("u1", "a", "2025-01-02"), ("u1", "a", "2025-01-10"), ("u1", "b", "2025-01-15"),
    ("u2", "a", "2025-01-05"), ("u2", "c", "2025-01-05"),  # a and c: one basket -> co-purchase pair
    ("u3", "e", "2025-01-03"), ("u3", "f", "2025-01-04"), ("u3", "d", "2025-01-04"),
    ("u4", "g", "2025-01-06"),
    ("u1", "b", "2025-02-01"),  # test window: must not count as a second purchase of b
    ("u1", "a", "2025-02-02"), ("u1", "d", "2025-02-02"),  # a+d basket only in the test window
    ("u1", "z", "2025-02-20"),  # an item that exists only in the test window
]  # fmt: skip


def _split() -> PurchaseSplit:
    frame = pd.DataFrame(ROWS, columns=["user_id", "item_id", "ts"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["quantity"] = 1
    return split_purchases(frame, test_days=30)


def test_pool_holds_history_copurchase_and_retrieval_items_without_test_leakage():
    split = _split()
    assert split.cut_ts == pd.Timestamp("2025-01-21") and "z" not in split.maps.item_index
    idx, items = split.maps.item_index, np.asarray(split.maps.item_ids)
    liked = np.zeros(split.maps.n_items)
    liked[idx["g"]] = 5.0  # the retrieval model's favourite: nobody near u1 bought it

    builder = CandidateBuilder(split, lambda u: np.tile(liked, (len(u), 1)), Quotas(4, 1, 2, 1))
    cands = builder.build(np.array([split.maps.user_index["u1"]]))
    pool = list(items[cands.items[0]])
    assert set(pool) == {"a", "b", "c", "g"}  # 2 own items, a's basket neighbour c, retrieval's g
    feats = {k: dict(zip(pool, v[0], strict=True)) for k, v in cands.features.items()}
    assert feats["n_bought"]["a"] == 2 and feats["n_bought"]["b"] == 1  # test-window re-buy not counted
    assert feats["days_since"]["b"] == pytest.approx(6.0) and np.isnan(feats["days_since"]["c"])
    assert feats["in_copurchase"]["c"] == 1 and feats["co_score"]["c"] > 0
    assert feats["in_retrieval"]["g"] == 1 and feats["in_history"]["g"] == 0
    # the a+d basket lies in the test window: no co-purchase link was learnt from it
    cosine = copurchase_similarity(split).toarray()
    assert cosine[idx["a"], idx["d"]] == 0 and cosine[idx["a"], idx["c"]] == pytest.approx(1 / np.sqrt(3))
    # u1's truth {b, a, d, z}: b and a in the pool, d outside it, z unrankable -> 2 of 4
    assert candidate_recall(cands, split) == pytest.approx(0.5)


def test_the_embedding_lookup_gives_the_embedding_gradient():
    weight = torch.randn(7, 3, requires_grad=True)
    idx = torch.tensor([[0, 6, 6], [2, 0, 6]])
    upstream = torch.randn(2, 3, 3)
    (_Lookup.apply(weight, idx) * upstream).sum().backward()
    ours = weight.grad.clone()
    weight.grad = None
    (torch.nn.functional.embedding(idx, weight) * upstream).sum().backward()
    assert torch.allclose(ours, weight.grad) and ours[6].abs().sum() > 0  # repeats add up, row 6 thrice


def test_deepfm_learns_a_field_interaction_and_its_loss_falls():
    rng = np.random.default_rng(0)
    users, n = 240, 20
    cat = np.stack([rng.integers(1, 4, (users, n)), rng.integers(1, 4, (users, n))], axis=-1)
    labels = (cat[..., 0] == cat[..., 1]).astype(np.float32) * (rng.random((users, n)) < 0.5)
    dense = rng.normal(size=(users, n, 1)).astype(np.float32)
    data = Lists(cat.astype(np.int64), dense, labels, np.maximum(labels.sum(1), 1).astype(np.int64))
    cfg = DeepFMConfig(epochs=12, patience=12, lr=1e-2, batch_users=32, device="cpu")
    model, history = fit_deepfm(data, (4, 4), cfg)
    assert history[-1]["loss"] < history[0]["loss"] - 0.1
    scores = predict(model, data.cat, data.dense)
    random = list_ndcg(rng.random((users, n)), data.labels, data.n_truth)
    assert list_ndcg(scores, data.labels, data.n_truth) > random + 0.15
    with pytest.raises(ValueError, match="loss"):
        fit_deepfm(data, (4, 4), DeepFMConfig(loss="hinge"))


def test_trees_learn_a_threshold_and_take_never_bought_as_a_value():
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=(300, 20, 3))
    numeric[..., 1] = np.where(rng.random((300, 20)) < 0.5, np.nan, numeric[..., 1])  # never bought
    labels = (numeric[..., 0] > 1.0) | np.isnan(numeric[..., 1]) & (numeric[..., 2] > 1.5)
    model = fit_trees(numeric, labels, TreesConfig(iterations=50, min_samples_leaf=20))
    logits = tree_logits(model, numeric)
    assert logits.shape == (300, 20)
    pos, neg = logits[labels], logits[~labels]
    auc = (pos[:, None] > neg[None, :2000]).mean()
    assert auc > 0.95
    assert fit_trees(numeric, np.zeros((300, 20), bool), TreesConfig()) is None  # nothing to split on


def test_the_vote_weighs_members_alike_whatever_their_scale():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    # a listwise member's logits carry any offset, trees' log-odds another scale: neither may dominate
    assert np.allclose(_vote([a, 100.0 * b + 7.0]), _vote([a, b]))
    assert not np.allclose(np.argsort(_vote([a, b]), axis=1), np.argsort(a + 100.0 * b, axis=1))


def test_reranked_scores_give_every_user_k_finite_items_and_beat_random():
    shop = generate_shop(users=300, items=100, days=40, seed=11)
    split = split_purchases(purchases_from_events(shop.events), test_days=10)
    fitted = fit_model("bpr", split, FitConfig(epochs=2, val_days=10, dim=16, device="cpu"))
    source, quotas = purchases_source(shop.items.set_index("item_id")), Quotas(40, 20, 20, 20)
    trained = DeepFMConfig(epochs=6, patience=2, lr=5e-3, batch_users=8, device="cpu")
    scores_fn, info = fit_reranker(split, fitted, source, RerankConfig(quotas, trained, ensemble=1, **DEEPFM))
    assert info["train_rows"] == info["train_lists"] * 40 and 0 < info["positive_rate"] < 1
    assert 0.3 < info["candidate_recall_val"] <= 1 and 0.3 < info["candidate_recall_test"] <= 1

    users = np.array([split.maps.user_index[u] for u in sorted(split.test_truth)])
    scores = scores_fn(users)
    assert scores.shape == (users.size, split.maps.n_items) and np.isfinite(scores).all()
    # exactly the pool (40 items) sits above every non-candidate
    assert ((scores > 1.0).sum(axis=1) == 40).all() and (scores[scores <= 1.0] <= 0.5).all()
    rng = np.random.default_rng(0)
    random = evaluate(lambda u: rng.random((len(u), split.maps.n_items)), split)["ndcg_at_10"]
    assert evaluate(scores_fn, split)["ndcg_at_10"] > random + 0.1

    # an untrained DeepFM ranks below the pool's repeat-buy order on the held-out lists: it is not served
    untrained = DeepFMConfig(epochs=1, lr=1e-7, device="cpu")
    fallback_fn, fallback = fit_reranker(
        split, fitted, source, RerankConfig(quotas, untrained, ensemble=5, **DEEPFM)
    )
    assert fallback["fallback"] and fallback["holdout_ndcg_at_10"] < fallback["holdout_prior_ndcg_at_10"]
    assert evaluate(fallback_fn, split)["ndcg_at_10"] > random + 0.1

    # an ensemble of three (seeds 42, 43, 44, each with its own held-out slice) averages their logits:
    # another order than the first member alone, as good as chance allows on this shop
    trio_fn, trio = fit_reranker(split, fitted, source, RerankConfig(quotas, trained, ensemble=3, **DEEPFM))
    assert trio["ensemble"] == 3 and info["ensemble"] == 1 and trio["tree_rounds"] > 0
    trio_scores = trio_fn(users)
    assert ((trio_scores > 1.0).sum(axis=1) == 40).all()
    assert (np.argsort(-trio_scores, axis=1)[:, :10] != np.argsort(-scores, axis=1)[:, :10]).any()
    assert evaluate(trio_fn, split)["ndcg_at_10"] > random + 0.1
    # without the tree vote: DeepFMs alone, another order
    bare_fn, bare = fit_reranker(
        split, fitted, source, RerankConfig(quotas, trained, ensemble=3, trees=None, lambdarank=None)
    )
    assert bare["tree_rounds"] == 0
    assert (np.argsort(-bare_fn(users), axis=1)[:, :10] != np.argsort(-trio_scores, axis=1)[:, :10]).any()
