"""Score the nightly recipe on a split a shop brings (personaflow/training/data/given.py), as the nightly run
does. The same steps as `training.pipeline.train_model` after its split: the re-buy rule measured from the
training rows (or set), the recipe built (personaflow/training/recipe.py), every servable baseline built
beside it,
all of them scored as serving scores them (`LoadedModel`), and the gate's evidence (paired bootstrap
against the best baseline, low-activity slice) from personaflow/training/gate.py. Nothing is saved or
promoted: the answer is a plain dict, one row per model plus the verdict.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from personaflow.training.data.features import FeatureSource
from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.evaluation.protocol import score
from personaflow.training.evaluation.rebuy import decide_exclusion
from personaflow.training.gate import check
from personaflow.training.recipe import Recipe, build
from personaflow.training.registry.fair import baseline_models, evidence
from personaflow.training.registry.loading import LoadedModel

METRICS = ("ndcg_at_10", "ndcg_at_10_ci_low", "ndcg_at_10_ci_high", "recall_at_10", "mrr_at_10", "coverage")
# the next-basket field's split of the same top 10 (training/evaluation/metrics.py): items the user bought
# before (repeat) and items new to them (explore), each over the users whose truth has such items
PARTS = ("repeat_ndcg_at_10", "repeat_recall_at_10", "explore_ndcg_at_10", "explore_recall_at_10")
SHARES = ("repeat_users", "repeat_user_share", "explore_users", "explore_user_share")


def assess(
    split: Split,
    recipe: Recipe,
    features: FeatureSource,
    exclude_bought: bool | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Metrics of `recipe` and of every baseline on `split`, and whether the gate would pass it."""
    exclude, rate = decide_exclusion(split, exclude_bought)
    recipe = replace(recipe, exclude_bought=exclude)
    built = build(recipe, split, features)
    popular = popularity_ranking(split)
    fns = {name: LoadedModel.of(b.exported, split.maps, popular).scores
           for name, b in baseline_models(split, recipe.val_days, exclude).items()}  # fmt: skip
    candidate_fn = LoadedModel.of(built.exported, split.maps, popular).scores
    rows, shares = {}, {}
    for name, fn in {"candidate": candidate_fn, **fns}.items():
        metrics, _ = score(fn, split, n_boot=n_boot)
        rows[name] = {k: metrics[k] for k in (*METRICS, *PARTS)}
        shares = {k: metrics[k] for k in SHARES}  # the truth's, the same for every model
    gate = evidence(candidate_fn, split, recipe, fns, None, features)
    refusals = check(gate)
    return {
        "split": {
            **getattr(split, "sizes", lambda: {})(),
            "cut": str(split.cutoff),
            "last": str(split.last_date),
            **shares,
        },
        "recipe": asdict(recipe),
        "repeat_rate": rate,
        "fit_s": round(built.fit_seconds, 2),
        "models": rows,
        "best_baseline": gate.get("gate_best_baseline"),
        "gain_vs_best_baseline": {
            k.removeprefix("gate_vs_baseline_"): v
            for k, v in gate.items()
            if k.startswith("gate_vs_baseline_")
        },  # fmt: skip
        "gate_passed": not refusals,  # against the baselines (a shop's split has no production model)
        "gate_refusals": refusals,
    }
