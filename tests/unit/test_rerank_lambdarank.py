"""The LightGBM LambdaRank member of the re-ranker: it learns an order, stops on its held-out lists, is
reproducible, and serves alone or beside the other members."""

import numpy as np
import pytest

from personaflow.ingest.generate import generate_shop
from personaflow.training.data.features import purchases_source
from personaflow.training.data.purchases import purchases_from_events, split_purchases
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.models.config import FitConfig
from personaflow.training.models.deepfm import list_ndcg
from personaflow.training.models.fit import fit_model
from personaflow.training.models.lambdarank import LambdaRankConfig, fit_lambdarank, lambdarank_logits
from personaflow.training.rerank.candidates import Quotas
from personaflow.training.rerank.reranker import RerankConfig, fit_reranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lists(seed: int = 0, users: int = 400, pool: int = 20):
    """Lists whose positives are the rows with feature 0 above 1, or feature 1 missing and feature 2
    above 1.5 (a never-bought item that is popular): a threshold and a NaN rule to learn."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(users, pool, 4))
    numeric[..., 1] = np.where(rng.random((users, pool)) < 0.5, np.nan, numeric[..., 1])
    labels = (numeric[..., 0] > 1.0) | np.isnan(numeric[..., 1]) & (numeric[..., 2] > 1.5)
    return numeric, labels.astype(np.float32), np.maximum(labels.sum(1), 1).astype(np.int64)


def test_lambdarank_learns_the_order_beats_the_prior_and_stops_on_its_held_out_lists():
    numeric, labels, n_truth = _lists()
    prior = numeric[..., 3]  # a feature unrelated to the labels: an order that knows nothing
    cfg = LambdaRankConfig(rounds=300, min_child_samples=20, patience=10, threads=1)
    model, info = fit_lambdarank(numeric, labels, n_truth, cfg, prior)
    assert info["holdout_ndcg_at_10"] > 0.95 > info["holdout_prior_ndcg_at_10"] + 0.3
    # early stopping on the held-out lists ended it before the most rounds
    assert 0 < info["best_round"] < cfg.rounds
    fresh, fresh_labels, fresh_truth = _lists(seed=1)
    scores = lambdarank_logits(model, fresh)
    assert scores.shape == fresh_labels.shape
    assert list_ndcg(scores, fresh_labels, fresh_truth) > 0.95


def test_lambdarank_is_the_same_model_for_the_same_lists_and_seed_and_another_for_another_seed():
    numeric, labels, n_truth = _lists(users=200)
    cfg = LambdaRankConfig(rounds=60, min_child_samples=20, patience=10, threads=2)
    a = lambdarank_logits(fit_lambdarank(numeric, labels, n_truth, cfg)[0], numeric)
    b = lambdarank_logits(fit_lambdarank(numeric, labels, n_truth, cfg)[0], numeric)
    other = lambdarank_logits(fit_lambdarank(numeric, labels, n_truth, LambdaRankConfig(
        rounds=60, min_child_samples=20, patience=10, threads=2, seed=5))[0], numeric)  # fmt: skip
    assert np.array_equal(a, b)
    assert not np.array_equal(a, other)  # another held-out slice and other bagging draws


def test_lambdarank_without_a_positive_list_learns_nothing():
    numeric, labels, n_truth = _lists(users=50)
    model, info = fit_lambdarank(numeric, np.zeros_like(labels), n_truth, LambdaRankConfig())
    assert model is None and info["best_round"] == 0


@pytest.fixture(scope="module")
def shop_split_fitted():
    shop = generate_shop(users=300, items=100, days=40, seed=11)
    split = split_purchases(purchases_from_events(shop.events), test_days=10)
    fitted = fit_model("bpr", split, FitConfig(epochs=2, val_days=10, dim=16, device="cpu"))
    return shop, split, fitted


def test_the_reranker_serves_lambdarank_alone_reproducibly_and_beats_random(shop_split_fitted):
    shop, split, fitted = shop_split_fitted
    source = purchases_source(shop.items.set_index("item_id"))
    lr = LambdaRankConfig(rounds=100, min_child_samples=20, patience=10, threads=1)
    cfg = RerankConfig(Quotas(40, 20, 20, 20), ensemble=0, trees=None, lambdarank=lr, lambdarank_members=2)
    fn, info = fit_reranker(split, fitted, source, cfg)
    assert info["ensemble"] == 0 and info["lambdarank_members"] == 2 and info["tree_rounds"] == 0
    assert info["deepfm_fit_s"] == 0.0 and info["lambdarank_fit_s"] > 0
    users = np.array([split.maps.user_index[u] for u in sorted(split.test_truth)])
    scores = fn(users)
    assert ((scores > 1.0).sum(axis=1) == 40).all()  # the pool above every non-candidate
    again, _ = fit_reranker(split, fitted, source, cfg)
    assert np.array_equal(again(users), scores)  # same data + seed = same model
    rng = np.random.default_rng(0)
    random = evaluate(lambda u: rng.random((len(u), split.maps.n_items)), split)["ndcg_at_10"]
    assert evaluate(fn, split)["ndcg_at_10"] > random + 0.1


def test_the_default_ranker_is_lambdarank_members_alone():
    cfg = RerankConfig()
    assert (
        cfg.ensemble == 0 and cfg.trees is None and cfg.lambdarank is not None and cfg.lambdarank_members > 1
    )


def test_a_reranker_without_members_is_refused(shop_split_fitted):
    shop, split, fitted = shop_split_fitted
    source = purchases_source(shop.items.set_index("item_id"))
    with pytest.raises(ValueError, match="no member"):
        fit_reranker(
            split,
            fitted,
            source,
            RerankConfig(Quotas(40, 20, 20, 20), ensemble=0, trees=None, lambdarank=None),
        )


def test_a_user_code_column_is_split_on_as_a_category():
    """Which items a user wants depends on their band (a user code, constant over the list, 0 =
    unknown); band 1 wants feature 0 high, band 2 low, band 3 feature 1 high. Only through that column can
    a ranker learn it; LightGBM keeps it as a category (its values listed, no order assumed)."""
    rng = np.random.default_rng(0)
    users, pool = 600, 20
    numeric = rng.normal(size=(users, pool, 2))
    band = rng.integers(1, 4, users)
    want = np.where(band[:, None] == 1, numeric[..., 0], np.where(band[:, None] == 2, -numeric[..., 0],
                                                                  numeric[..., 1]))  # fmt: skip
    labels = (want > 1.0).astype(np.float32)
    n_truth = np.maximum(labels.sum(1), 1).astype(np.int64)
    coded = np.concatenate([numeric, np.repeat(band[:, None, None], pool, axis=1).astype(float)], axis=-1)
    cfg = LambdaRankConfig(rounds=300, min_child_samples=20, patience=10, threads=1)
    _, without = fit_lambdarank(numeric, labels, n_truth, cfg)
    model, with_band = fit_lambdarank(coded, labels, n_truth, cfg, categorical=1)
    assert with_band["holdout_ndcg_at_10"] > 0.9 > without["holdout_ndcg_at_10"] + 0.2
    assert model.booster_.dump_model()["feature_infos"]["Column_2"]["values"]  # a categorical's values
