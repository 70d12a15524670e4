"""The two-tower model through the one training interface, on a tiny synthetic shop."""

import numpy as np
import pytest

from personaflow.ingest.generate import generate_shop
from personaflow.training import export
from personaflow.training.data.features import purchases_source
from personaflow.training.data.purchases import purchases_from_events, split_purchases
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import fit_model

CFG = FitConfig(epochs=4, patience=4, val_days=10, dim=16, lr=2e-3, batch_size=64, seed=5, device="cpu")


@pytest.fixture(scope="module")
def shop_split():
    shop = generate_shop(users=300, items=100, days=40, seed=11)
    split = split_purchases(purchases_from_events(shop.events), test_days=10)
    return split, purchases_source(shop.items.set_index("item_id"))


def test_two_tower_learns_beats_random_and_exposes_serving_vectors(shop_split):
    split, source = shop_split
    cuts = []

    def recording(s):  # the real source, remembering which cut each call was made at
        cuts.append(s.cut_ts)
        return source(s)

    fitted = fit_model("two_tower", split, CFG, features=recording)
    # validation learner: features as of the inner cut; refit learner: as of the training cut
    assert cuts == [fitted.val_split.cut_ts, split.cut_ts] and cuts[0] < cuts[1]
    losses = [row["loss"] for row in fitted.history]
    assert len(losses) == CFG.epochs and losses[-1] < losses[0] * 0.9

    users = fitted.module.user_vectors()
    items = fitted.module.item_vectors()
    assert users.shape == (split.maps.n_users, CFG.dim) and items.shape == (split.maps.n_items, CFG.dim)
    assert np.isfinite(users).all() and np.isfinite(items).all()
    idx = np.arange(split.maps.n_users)
    scores = fitted.scores_fn(idx)
    # serving scores exactly like matrix factorisation: item_vecs @ user_vec
    np.testing.assert_allclose(scores, users @ items.T, rtol=1e-4, atol=1e-4)
    emb = export.embeddings("two_tower", fitted.module, split)  # what the registry saves
    np.testing.assert_allclose(emb.user_emb @ emb.item_emb.T + emb.item_bias, scores, rtol=1e-4, atol=1e-4)

    rng = np.random.default_rng(0)
    learned = evaluate(fitted.scores_fn, split)["ndcg_at_10"]
    randomly = evaluate(lambda u: rng.random((len(u), split.maps.n_items)), split)["ndcg_at_10"]
    assert learned > randomly + 0.1, (learned, randomly)

    again = fit_model("two_tower", split, CFG, features=source)
    assert again.best_epoch == fitted.best_epoch
    np.testing.assert_array_equal(again.scores_fn(idx), scores)  # seeded: same seed, same scores


def test_two_tower_refuses_to_train_without_features_and_bpr_has_vectors_too(shop_split):
    split, source = shop_split
    with pytest.raises(ValueError, match="two_tower.*features"):
        fit_model("two_tower", split, CFG)
    with pytest.raises(ValueError, match="negatives"):
        fit_model(
            "two_tower", split, FitConfig(**{**CFG.__dict__, "extra": {"negatives": "x"}}), features=source
        )
    bpr = fit_model("bpr", split, FitConfig(**{**CFG.__dict__, "epochs": 1}))
    emb = export.embeddings("bpr", bpr.module, split)
    np.testing.assert_allclose(
        emb.user_emb[:3] @ emb.item_emb.T + emb.item_bias, bpr.scores_fn(np.arange(3)), rtol=1e-4, atol=1e-5
    )
