"""The re-ranker's memory bounds: a fixed budget of training lists, chunked pools, a streamed export."""

import numpy as np
import pytest
import scipy.sparse as sp

from personaflow.ingest.generate import generate_shop
from personaflow.training import export
from personaflow.training.data.features import purchases_source
from personaflow.training.data.purchases import purchases_from_events, split_purchases
from personaflow.training.models.config import FitConfig
from personaflow.training.models.deepfm import DeepFMConfig
from personaflow.training.models.fit import fit_model
from personaflow.training.rerank import candidates as cand_mod
from personaflow.training.rerank.candidates import CandidateBuilder, Quotas, candidate_recall
from personaflow.training.rerank.reranker import RerankConfig, fit_reranker, sample_users

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shop():
    return generate_shop(users=300, items=100, days=40, seed=11)


@pytest.fixture(scope="module")
def split(shop):
    return split_purchases(purchases_from_events(shop.events), test_days=10)


@pytest.fixture(scope="module")
def fitted(split):
    return fit_model("bpr", split, FitConfig(epochs=2, val_days=10, dim=16, device="cpu"))


@pytest.fixture(scope="module")
def small_reranker(split, fitted, shop):
    """One re-ranker (a single DeepFM, no trees) over a pool of 30, shared by the chunking tests."""
    source = purchases_source(shop.items.set_index("item_id"))
    model = DeepFMConfig(epochs=2, patience=1, lr=5e-3, batch_users=8, device="cpu")
    return fit_reranker(
        split,
        fitted,
        source,
        RerankConfig(Quotas(30, 15, 15, 15), model, ensemble=1, trees=None, lambdarank=None),
    )[0]


def test_sample_users_keeps_a_seeded_budget_and_everyone_when_they_fit():
    users = np.arange(100, 1100)
    picked = sample_users(users, 64, seed=3)
    assert picked.size == 64 and np.unique(picked).size == 64 and np.isin(picked, users).all()
    assert (np.diff(picked) > 0).all()  # index order
    np.testing.assert_array_equal(picked, sample_users(users, 64, seed=3))  # same seed, same lists
    assert not np.array_equal(picked, sample_users(users, 64, seed=4))
    np.testing.assert_array_equal(sample_users(users, 5000, seed=3), users)
    np.testing.assert_array_equal(sample_users(users, 0, seed=3), users)  # 0 = no budget


def test_the_reranker_trains_on_at_most_its_budget_of_lists(split, fitted, shop):
    source = purchases_source(shop.items.set_index("item_id"))
    model = DeepFMConfig(epochs=2, patience=1, lr=5e-3, batch_users=8, device="cpu")
    quotas = Quotas(30, 15, 15, 15)
    full_fn, full = fit_reranker(
        split, fitted, source, RerankConfig(quotas, model, ensemble=1, trees=None, lambdarank=None)
    )
    assert full["train_lists"] > 20  # the budget below binds
    cfg = RerankConfig(quotas, model, ensemble=1, trees=None, lambdarank=None, max_lists=20, windows=2)
    small_fn, small = fit_reranker(split, fitted, source, cfg)
    assert small["train_lists"] <= 20 and small["train_rows"] == small["train_lists"] * 30
    users = np.array([split.maps.user_index[u] for u in sorted(split.test_truth)])
    assert small_fn(users).shape == (users.size, split.maps.n_items)
    # the test pools do not depend on the budget: the streamed recall reads every test user
    assert small["candidate_recall_test"] == pytest.approx(full["candidate_recall_test"])


def test_the_test_views_candidate_recall_reads_a_seeded_sample_of_its_truth_users(split, fitted, shop):
    """Pools for every truth user of the test view cost as much as the export (issue 21): the diagnostic
    reads a seeded sample (metrics.tuning_sample), the same one every run."""
    from personaflow.training.evaluation.metrics import tuning_sample

    source = purchases_source(shop.items.set_index("item_id"))
    model = DeepFMConfig(epochs=1, patience=1, lr=5e-3, batch_users=8, device="cpu")
    cfg = RerankConfig(
        Quotas(30, 15, 15, 15), model, ensemble=1, trees=None, lambdarank=None, recall_users=15
    )
    assert len(split.test_truth) > 30  # the sample binds
    built = []
    real_chunks = CandidateBuilder.chunks

    def chunks(self, users, batch=512):
        if self.split is split:  # pools on the test view: only the recall's
            built.append(np.asarray(users).size)
        return real_chunks(self, users, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CandidateBuilder, "chunks", chunks)
        scores_fn, info = fit_reranker(split, fitted, source, cfg)
    assert info["candidate_recall_test_users"] == 15 and built == [15]
    sample = tuning_sample(split, 15, cfg.sample_seed)
    users = np.array([split.maps.user_index[u] for u in sorted(sample.test_truth)])
    whole = candidate_recall(scores_fn.builder.build(users), sample)
    assert info["candidate_recall_test"] == pytest.approx(whole)


def test_chunked_pools_score_and_export_as_one_dense_pass(split, small_reranker, monkeypatch):
    scores_fn = small_reranker
    users = np.arange(split.maps.n_users)
    whole = scores_fn(users)
    # at most 7 users' worth of (user, item) cells per chunk: many chunks, the same scores
    monkeypatch.setattr(cand_mod, "CHUNK_CELLS", 7 * split.maps.n_items)
    assert scores_fn.builder.chunk_size(512) == 7
    np.testing.assert_array_equal(scores_fn(users), whole)
    assert all(u.size <= 7 and items.shape == (u.size, 30) for u, items, _ in scores_fn.pools(users[:50]))

    base = export.Embeddings(
        "bpr-mf", np.ones((split.maps.n_users, 2), np.float32), np.ones((split.maps.n_items, 2), np.float32),
        np.zeros(split.maps.n_items, np.float32),
    )  # fmt: skip
    streamed = export.with_rerank(base, scores_fn, split.maps.n_users)
    dense = export.with_rerank(base, lambda u: scores_fn(u), split.maps.n_users)  # no `pools`: blocks
    assert isinstance(streamed.rerank, sp.csr_matrix) and np.diff(streamed.rerank.indptr).max() == 30
    assert (streamed.rerank != dense.rerank).nnz == 0


def test_a_pass_over_every_user_encodes_the_feature_tables_once_not_once_a_chunk(
    split, small_reranker, monkeypatch
):
    """Each chunk used to encode every user's and item's features again: quadratic in users (issue 21)."""
    from personaflow.training.rerank import reranker

    scores_fn = small_reranker
    users = np.arange(split.maps.n_users)
    whole = scores_fn(users)
    calls = []
    real_encode, real_codes = reranker.encode, reranker._codes
    monkeypatch.setattr(reranker, "encode", lambda *a: calls.append("encode") or real_encode(*a))
    monkeypatch.setattr(reranker, "_codes", lambda *a: calls.append("codes") or real_codes(*a))
    monkeypatch.setattr(cand_mod, "CHUNK_CELLS", 5 * split.maps.n_items)
    scores_fn.fields._cache.clear()
    chunked = scores_fn(users)
    assert split.maps.n_users // 5 > 30  # many chunks ...
    # ... one encoding, and one set of codes for the users and one for the items
    assert calls.count("encode") == 1 and calls.count("codes") == 2
    np.testing.assert_array_equal(chunked, whole)


def test_pools_from_a_sparse_retrieval_are_chunked_by_the_pool_not_the_catalogue(split):
    from personaflow.training.evaluation.baselines import SparseScores, history_parts

    quotas = Quotas(30, 15, 15, 15)
    sparse = CandidateBuilder(split, SparseScores(*history_parts(split)), quotas)
    assert sparse.sparse
    dense = CandidateBuilder(split, lambda u: np.zeros((len(u), split.maps.n_items)), quotas)
    cells = cand_mod.CHUNK_CELLS
    assert sparse.chunk_size(1 << 30) == cells // 30
    assert dense.chunk_size(1 << 30) == cells // split.maps.n_items


def test_candidate_recall_over_a_stream_of_chunks_equals_the_whole(split, fitted):
    builder = CandidateBuilder(split, fitted.scores_fn, Quotas(20, 10, 10, 10))
    users = np.array([split.maps.user_index[u] for u in sorted(split.test_truth)])
    whole = candidate_recall(builder.build(users), split)
    assert 0 < whole < 1
    assert candidate_recall(builder.chunks(users, batch=9), split) == pytest.approx(whole)


def test_group_shares_are_sparse_and_match_their_definition(split, fitted):
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, size=(split.maps.n_items, 1))  # code 0 = missing
    builder = CandidateBuilder(split, fitted.scores_fn, Quotas(20, 10, 10, 10), groups)
    share = builder.group_share[0]
    assert sp.issparse(share)
    counts = builder.counts.toarray()
    per_group = np.stack([counts[:, groups[:, 0] == g].sum(axis=1) for g in range(6)], axis=1)
    per_group[:, 0] = 0
    want = per_group / np.maximum(per_group.sum(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(share.toarray(), want)
    cands = builder.build(np.arange(10))
    expected = want[np.arange(10)[:, None], groups[cands.items, 0]]
    np.testing.assert_allclose(cands.features["group0_share"], expected, rtol=1e-6)


@pytest.mark.parametrize("quotas", [Quotas(30, 15, 15, 15), Quotas(12, 4, 4, 4), Quotas(60, 50, 5, 5)])
def test_pools_from_sparse_rows_equal_those_from_the_whole_catalogue(split, quotas):
    """A SparseScores retrieval (TIFU-KNN) builds its pools from sparse rows only: the same items, in
    the same order, with the same features as scoring every item per user."""
    from personaflow.training.evaluation.baselines import SparseScores
    from personaflow.training.evaluation.tifu import TifuParams, tifu_parts

    matrix, fill = tifu_parts(split, TifuParams(neighbours=20, keep=25))
    # users without any TIFU score (all fill) and rows shorter than the retrieval quota
    matrix = sp.vstack([sp.csr_matrix((5, matrix.shape[1])), matrix[5:]]).tocsr()
    groups = np.random.default_rng(1).integers(0, 5, size=(split.maps.n_items, 2))
    sparse = CandidateBuilder(split, SparseScores(matrix, fill), quotas, groups)
    dense = CandidateBuilder(split, lambda u: matrix[u].toarray() + fill, quotas, groups)
    assert sparse.sparse and not dense.sparse
    users = np.arange(split.maps.n_users)
    assert (np.diff(matrix.indptr)[5:] < 25).any()  # some rows shorter than `keep`
    got, want = sparse.build(users), dense.build(users)
    np.testing.assert_array_equal(got.items, want.items)
    for name in want.features:
        np.testing.assert_array_equal(got.features[name], want.features[name], err_msg=name)
