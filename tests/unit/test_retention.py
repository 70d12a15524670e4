"""Retention: the production model, its rollback history and the newest candidates stay; the rest go,
and the one serving is never removed however small the allowance."""

import pytest

from personaflow.training.data.interactions import time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.models.bpr import fit_bpr
from personaflow.training.registry.pointer import promote, rollback
from personaflow.training.registry.retention import prune
from personaflow.training.registry.store import save_candidate, saved_models


def test_prune_keeps_production_history_and_recent_candidates(store):
    split = time_split(make_interactions(seed=4), holdout_days=7)
    model, _ = fit_bpr(split, dim=4, epochs=1, batch_size=256, seed=1, device="cpu")
    popular = popularity_ranking(split)

    def save(ndcg: float) -> str:
        metrics = {"ndcg_at_10": ndcg, "baseline_ndcg_at_10": 0.1}
        return save_candidate(model, split.maps, popular, metrics, {})

    first = save(0.30)
    assert promote(first, store)["promoted"]
    second = save(0.40)
    assert promote(second, store)["promoted"]
    refused = [save(0.2) for _ in range(4)]  # worse candidates the gate turned down
    newest = save(0.25)

    dry = prune(store, keep_candidates=2, dry_run=True)
    assert len(saved_models()) == 7 and dry["dry_run"]
    result = prune(store, keep_candidates=2)
    assert result["kept"] == {
        newest: "recent candidate", refused[-1]: "recent candidate", second: "production",
        first: "rollback history",
    }  # fmt: skip
    assert sorted(result["removed"]) == sorted(refused[:-1])
    assert {str(m.tag) for m in saved_models()} == {newest, refused[-1], second, first}
    assert prune(store, keep_candidates=0)["kept"][second] == "production"  # never the one serving
    assert rollback(store) == first  # the rollback history survived
    with pytest.raises(ValueError, match="keep_candidates=-1"):
        prune(store, keep_candidates=-1)
