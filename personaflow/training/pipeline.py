"""Stage functions for the DAG and the CLI: explicit arguments in, plain-type dicts out."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from personaflow.core import warehouse as wh
from personaflow.training.choice import choose
from personaflow.training.data.features import FeatureSource
from personaflow.training.data.interactions import (
    Split,
    cut_time,
    load_interactions,
    split_fingerprint,
    time_split,
)
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.evaluation.rebuy import bought_matrix, decide_exclusion, excluding
from personaflow.training.gate import gain_of, said
from personaflow.training.recipe import BASELINES, Recipe, build
from personaflow.training.registry.fair import baseline_models, evidence
from personaflow.training.registry.loading import LoadedModel
from personaflow.training.registry.pointer import promote, read_pointer
from personaflow.training.registry.store import get_model, metrics_of, model_info, save_candidate
from personaflow.training.report import write_png

log = logging.getLogger(__name__)
METRICS = ("recall_at_10", "ndcg_at_10", "repeat_ndcg_at_10", "explore_ndcg_at_10")
AUTO = "auto"  # model="auto": the recipe is chosen on the shop's validation window (training/choice.py)
# the report's columns: overall, and on repeat items (bought by the user before) and explore items apart
TABLE_COLUMNS = {
    "ndcg@10": "ndcg_at_10",
    "recall@10": "recall_at_10",
    "repeat ndcg@10": "repeat_ndcg_at_10",
    "explore ndcg@10": "explore_ndcg_at_10",
}


def _row(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """One report row from `metrics` (keys `<prefix>ndcg_at_10`, ...); columns it lacks are left out."""
    return {label: metrics[prefix + key] for label, key in TABLE_COLUMNS.items() if prefix + key in metrics}


# metrics keys per baseline: popularity is `baseline_*` (what older models and the UI read)
BASELINE_PREFIX = {"popularity": "baseline", "repeat_buy": "repeat_buy", "tifu": "tifu"}


def _report(
    reports_dir: Path, result: dict[str, Any], table: dict[str, dict[str, float]], history: list[dict]
) -> dict[str, str]:
    """The run's JSON (result, test table, learned curve and, when the recipe was chosen, every option's
    validation score, fit seconds and the reason: result["choice"]) and its PNG."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"training_{result['tag'].replace(':', '_')}.json"
    path.write_text(json.dumps({**result, "table": table, "history": history}, indent=2, default=str))
    png = write_png(path.with_suffix(".png"), result["tag"], table, history, result.get("choice"))
    return {"report": str(path), "report_png": str(png)}


def _params(recipe: Recipe, built, split: Split) -> dict[str, Any]:
    return {
        "model": recipe.model, "kind": built.exported.kind, "hybrid": recipe.hybrid, "rerank": recipe.rerank,
        "holdout_days": recipe.val_days, "seed": recipe.seed, "epochs": recipe.epochs,
        "best_epoch": built.fitted.best_epoch, "dim": recipe.dim, "device": built.fitted.device,
        "cutoff": split.cutoff.isoformat(), "last_date": split.last_date.isoformat(),
        "n_train_rows": int(len(split.train)), "n_users": split.maps.n_users, "n_items": split.maps.n_items,
        "n_truth_items_unrankable": split.n_truth_items_unrankable, "data_sha256": split_fingerprint(split),
        "exclude_bought": recipe.exclude_bought, "demographics": recipe.demographics,
        "cadence": recipe.cadence, "svd": recipe.svd,
        **_validation_size(built.fitted.val_split, split),
        **built.extra,
    }  # fmt: skip


def _validation_size(val: Split, split: Split) -> dict[str, Any]:
    """How many users early stopping and tuning saw, over how many days (the window may be widened)."""
    days = (cut_time(split) - cut_time(val)).total_seconds() / 86_400
    return {
        "val_users": len(val.test_truth),
        "val_window_days": round(days, 2),
        "val_cutoff": str(val.cutoff),
    }


def _save(recipe, built, split, scored, ev, fit_seconds, started) -> dict[str, Any]:
    metrics = {**evaluate(scored, split, k=10), **ev}
    params = _params(recipe, built, split)
    tag = save_candidate(built.exported, split.maps, popularity_ranking(split), metrics, params)
    return {
        "tag": tag, "metrics": metrics, "params": params,
        "final_loss": built.fitted.history[-1]["loss"] if built.fitted.history else 0.0,
        "fit_seconds": round(fit_seconds, 3), "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip


def train_candidate(
    warehouse: wh.Location,
    holdout_days: int,
    seed: int,
    epochs: int = 20,
    dim: int = 64,
    reports_dir: Path | None = None,
    pointer_path: Path | None = None,
    model: str = "bpr",
    hybrid: bool = False,
    features: FeatureSource | None = None,
    rerank: bool = False,
    serve_baseline: bool = True,
    exclude_bought: bool | None = None,
    customers: Any = None,
) -> dict[str, Any]:
    """Load -> split -> fit the recipe (personaflow/training/recipe.py) -> evaluate against every baseline and
    production on this split (personaflow/training/registry/fair.py) -> save a candidate.

    `model` "auto" (the nightly default): the recipe is chosen on this shop's validation window among
    the baselines, item-kNN, SASRec and the re-ranker over the best of them (training/choice.py;
    `rerank` says whether the re-ranker is an option, `hybrid` is not used); the choice, every option's
    validation score and fit seconds are `result["choice"]` and in the report. Otherwise `model` is a
    learned model (training.models.fit.MODELS), item_knn or a baseline (repeat_buy, tifu, popularity);
    `hybrid` blends a learned model with repeat-buy; `rerank` puts the DeepFM re-ranker over its
    candidates. What is evaluated is the exported model, scored exactly as serving will.
    If the learned candidate does not beat the best baseline (paired interval above 0) and
    `serve_baseline`, that baseline is saved too and *it* is the returned `tag` (the learned one is
    `learned_tag`): the nightly run then promotes the baseline through the same gate, and says so.
    `exclude_bought` (None: measured, personaflow/training/evaluation/rebuy.py): rank already-bought items
    last in validation, evaluation, gate, blend and serving alike. `customers` (the shop's customer
    table, or None): with "auto", demographics are tried as re-ranker features (training/choice.py).
    """
    started = time.perf_counter()
    split = time_split(load_interactions(warehouse), holdout_days)
    exclude, rate = decide_exclusion(split, exclude_bought)
    choice = None
    if model == AUTO:
        base = Recipe(epochs=epochs, dim=dim, seed=seed, val_days=holdout_days, exclude_bought=exclude)
        choice = choose(split, base, features, rerank=rerank, customers=customers)
        recipe, built = choice.recipe, choice.built
        built.extra.update(chosen_on_validation=True, choice_reason=choice.report["reason"])
    else:
        recipe = Recipe(model, hybrid, rerank, epochs, dim, seed, holdout_days, exclude)
        built = build(recipe, split, features)
    built.extra.update(repeat_rate=rate)
    popular = popularity_ranking(split)
    candidate_fn = LoadedModel.of(built.exported, split.maps, popular).scores
    refused = frozenset(choice.refused if choice is not None else ())
    fitted = choice.fits if choice is not None else None
    bases = baseline_models(split, holdout_days, exclude, fitted, refused)
    base_fns = {name: LoadedModel.of(b.exported, split.maps, popular).scores for name, b in bases.items()}
    base_metrics = {
        f"{BASELINE_PREFIX[name]}_{m}": value
        for name, fn in base_fns.items()
        for m, value in evaluate(fn, split, k=10).items()
        if m in METRICS
    }
    ev = {
        **base_metrics,
        **evidence(candidate_fn, split, recipe, base_fns, pointer_path, features, customers=customers),
    }
    if refused & set(BASELINES):
        ev["gate_baselines_refused"] = ",".join(sorted(refused & set(BASELINES)))
    result = _save(recipe, built, split, candidate_fn, ev, built.fit_seconds, started)
    metrics = result["metrics"]
    best = metrics.get("gate_best_baseline")
    if serve_baseline and not recipe.is_baseline and not metrics.get("gate_vs_baseline_gain_ci_low", 1.0) > 0:
        brecipe = Recipe(best, seed=seed, val_days=holdout_days, exclude_bought=exclude)
        bases[best].extra.update(repeat_rate=rate)
        bev = {
            **base_metrics,
            **evidence(base_fns[best], split, brecipe, base_fns, pointer_path, features, customers=customers),
        }
        learned = result
        result = _save(brecipe, bases[best], split, base_fns[best], bev, bases[best].fit_seconds, started)
        result["learned_tag"] = learned["tag"]
        result["learned_metrics"] = learned["metrics"]
        result["learned_params"] = learned["params"]
        result["served_instead"] = (
            f"no learned model beat the best baseline: {recipe.model} ndcg@10 "
            f"{learned['metrics']['ndcg_at_10']:.4f} vs {best} "
            f"{metrics['gate_best_baseline_ndcg_at_10']:.4f}, "
            + said("gain", gain_of(metrics, "gate_vs_baseline"))
            + f": the candidate to serve is the baseline {best}"
        )
        log.warning(result["served_instead"])
        metrics = result["metrics"]
    if choice is not None:
        result["choice"] = choice.report
    if reports_dir is not None:
        table = {"candidate": _row(metrics)}
        if "learned_metrics" in result:
            table = {
                "candidate (baseline)": table["candidate"],
                f"learned {recipe.model}": _row(result["learned_metrics"]),
            }
        for name in BASELINES:
            if row := _row(metrics, f"{BASELINE_PREFIX[name]}_"):  # none for a baseline refused tonight
                table[name] = row
        if "production_ndcg_at_10" in metrics:
            table["production"] = {
                "ndcg@10": metrics["production_ndcg_at_10"], "recall@10": metrics["production_recall_at_10"]
            }  # fmt: skip
        result.update(_report(reports_dir, result, table, built.fitted.history))  # the learned fit's curve
    log.info(
        "candidate %s (%s) ndcg@10=%.4f (popularity %.4f, repeat-buy %.4f, tifu %.4f) recall@10=%.4f, "
        "%d users",
        result["tag"], result["params"]["kind"], metrics["ndcg_at_10"], metrics["baseline_ndcg_at_10"],
        metrics["repeat_buy_ndcg_at_10"], metrics.get("tifu_ndcg_at_10", float("nan")),
        metrics["recall_at_10"], metrics["n_test_users"],
    )  # fmt: skip
    return result


def evidence_now(
    tag: str,
    warehouse: wh.Location,
    holdout_days: int,
    pointer_path: Path,
    features: FeatureSource | None = None,
    customers: Any = None,
) -> dict[str, Any]:
    """The gate's evidence for saved model `tag` on *today's* split (manual promotion): the candidate
    and production each scored fairly there (re-fitted on today's cut if their artefact saw the window;
    `customers`: the shop's customer table, for a recipe whose re-ranker uses demographics)."""
    from personaflow.training.registry.fair import scored_fairly

    split = time_split(load_interactions(warehouse), holdout_days)
    popular = popularity_ranking(split)
    candidate_fn, basis, recipe = scored_fairly(tag, split, features, customers)
    if recipe.exclude_bought:  # what the candidate's user bought up to today's cut, not its own
        candidate_fn = excluding(candidate_fn, bought_matrix(split))
    bases = baseline_models(split, holdout_days, recipe.exclude_bought)
    base_fns = {name: LoadedModel.of(b.exported, split.maps, popular).scores for name, b in bases.items()}
    ev = evidence(
        candidate_fn, split, recipe, base_fns, pointer_path, features, candidate_tag=tag, customers=customers
    )
    scored = evaluate(candidate_fn, split, k=10)
    base = evaluate(base_fns["popularity"], split, k=10)
    return {
        **ev, **scored, "baseline_ndcg_at_10": base["ndcg_at_10"],
        "baseline_recall_at_10": base["recall_at_10"], "gate_candidate_basis": basis,
    }  # fmt: skip


def promote_candidate(
    tag: str,
    pointer_path: Path,
    min_gain: float = 0.0,
    report: Path | str | None = None,
    warehouse: wh.Location | None = None,
    holdout_days: int | None = None,
    force: bool = False,
    features: FeatureSource | None = None,
    customers: Any = None,
) -> dict[str, Any]:
    """Run the promotion gate; the decision dict is the result either way.

    With a `warehouse` (manual promotion), the gate runs on today's split: the evidence the candidate
    recorded is reused only when it was measured on today's cut against today's production, else it
    is measured afresh (`evidence_now`; `features` and `customers` for recipes that re-rank, with
    demographics). `force` promotes despite a refusal (logged and shown).
    """
    ev = None
    if warehouse is not None and wh.exists(warehouse):
        split_cut = time_split(load_interactions(warehouse), holdout_days or 7).cutoff.isoformat()
        recorded = metrics_of(get_model(tag))
        pointer = read_pointer(Path(pointer_path))
        current = pointer["tag"] if pointer else None
        fresh = recorded.get("gate_cutoff") == split_cut and recorded.get("production_tag") == current
        if not fresh or (current is not None and "production_tag" not in recorded):
            days = holdout_days or int(model_info(tag)["params"].get("holdout_days", 7))
            try:
                ev = evidence_now(tag, warehouse, days, Path(pointer_path), features, customers)
            except ValueError as exc:  # e.g. a re-ranked recipe to re-fit and no feature source given
                ev = {"gate_sanity_failures": [f"not measurable on today's split: {exc}"]}
    decision = promote(tag, Path(pointer_path), min_gain=min_gain, evidence=ev, force=force)
    if report is not None and Path(report).exists():  # the run report carries the gate's verdict too
        payload = json.loads(Path(report).read_text())
        payload["promotion"] = decision
        Path(report).write_text(json.dumps(payload, indent=2))
    log.info(
        "promotion of %s: %s (%s)", tag, "accepted" if decision["promoted"] else "refused", decision["reason"]
    )
    return decision
