"""Stage functions for the DAG and the CLI: explicit arguments in, plain-type dicts out."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from training import export
from training.data.features import FeatureSource
from training.data.interactions import Split, load_interactions, time_split
from training.evaluation.baselines import history_parts, own_history, popularity, popularity_ranking
from training.evaluation.metrics import evaluate
from training.gate import gate_evidence
from training.models.config import FitConfig
from training.models.fit import fit_model
from training.registry.loading import LoadedModel, load_model, transferred_scores_fn
from training.registry.pointer import promote, read_pointer
from training.registry.store import save_candidate
from training.report import write_png
from training.rerank.hybrid import hybrid as blend_with_history
from training.rerank.reranker import fit_reranker

log = logging.getLogger(__name__)


def production_scores_fn(pointer_path: Path | None, split: Split):
    """Production's scores over this split's users and items, or None when there is none."""
    pointer = read_pointer(Path(pointer_path)) if pointer_path is not None else None
    if not pointer:
        return None
    try:
        return transferred_scores_fn(load_model(pointer["tag"]), split.maps)
    except ValueError:
        return None


def score_production(pointer_path: Path | None, split: Split) -> dict[str, Any]:
    """The production model's metrics on `split` (the candidate's), or {} when there is none.

    Each night's hold-out window differs, so production's recorded ndcg is not comparable with a new
    candidate's; re-scoring production on the candidate's split is what makes the gate fair.
    """
    pointer = read_pointer(Path(pointer_path)) if pointer_path is not None else None
    if not pointer:
        return {}
    try:
        production = load_model(pointer["tag"])
    except ValueError as exc:  # deleted from the store: the gate falls back and says so
        log.warning("production %s not re-scored on this split: %s", pointer["tag"], exc)
        return {}
    scored = evaluate(transferred_scores_fn(production, split.maps), split, k=10)
    return {
        "production_tag": production.tag,
        "production_recall_at_10": scored["recall_at_10"],
        "production_ndcg_at_10": scored["ndcg_at_10"],
    }


def _report(
    reports_dir: Path, result: dict[str, Any], table: dict[str, dict[str, float]], history: list[dict]
) -> dict[str, str]:
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"training_{result['tag'].replace(':', '_')}.json"
    path.write_text(json.dumps({**result, "table": table, "history": history}, indent=2))
    png = write_png(path.with_suffix(".png"), result["tag"], table, history)
    return {"report": str(path), "report_png": str(png)}


def train_candidate(
    warehouse: Path,
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
) -> dict[str, Any]:
    """Load -> split -> fit (`training.models.fit`, early-stopped on a validation window inside the training
    period) -> export -> evaluate against popularity, repeat-buy and production -> save a candidate.

    `model` is any of training.models.fit.MODELS; `hybrid` blends it with the repeat-buy baseline
    (weight tuned on the validation window); `features` feeds the feature-aware models (two_tower) and
    the DeepFM re-ranker (`rerank`: trained on the validation window's candidates, frozen per user for
    serving).
    What is evaluated is the exported model, scored exactly as serving will score it.
    """
    if rerank and features is None:
        raise ValueError("rerank=True needs a feature source (features=...) for the DeepFM re-ranker")
    started = time.perf_counter()
    split = time_split(load_interactions(warehouse), holdout_days)
    cfg = FitConfig(epochs=epochs, dim=dim, seed=seed, val_days=holdout_days, lr=3e-3)
    fit_started = time.perf_counter()
    fitted = fit_model(model, split, cfg, features=features)
    exported = export.embeddings(model, fitted.module, split, cfg.max_len)
    extra: dict[str, Any] = {}
    if hybrid:
        _, info = blend_with_history(split, fitted.scores_fn, fitted.val_split, fitted.val_scores_fn)
        exported = export.with_history(exported, *history_parts(split), info["weight"])
        extra = {"blend_weight": info["weight"], "blend_val_ndcg_curve": info["val_ndcg_curve"]}
    if rerank:
        reranked, info = fit_reranker(split, fitted, features)
        exported = export.with_rerank(exported, reranked, split.maps.n_users)
        extra.update({f"rerank_{k}": v for k, v in info.items()})
    fit_seconds = time.perf_counter() - fit_started
    popular = popularity_ranking(split)
    candidate = LoadedModel.of(exported, split.maps, popular)
    candidate_fn = candidate.scores

    model_metrics = evaluate(candidate_fn, split, k=10)
    baselines = {
        "baseline": evaluate(popularity(split), split, k=10),
        "repeat_buy": evaluate(own_history(split), split, k=10),
    }
    metrics: dict[str, Any] = {
        **model_metrics,
        **{f"{name}_{m}": b[m] for name, b in baselines.items() for m in ("recall_at_10", "ndcg_at_10")},
        **score_production(pointer_path, split),
        **gate_evidence(candidate_fn, split, production_scores_fn(pointer_path, split)),
    }
    params: dict[str, Any] = {
        "model": model,
        "kind": exported.kind,
        "hybrid": hybrid,
        "rerank": rerank,
        "holdout_days": holdout_days,
        "seed": seed,
        "epochs": epochs,
        "best_epoch": fitted.best_epoch,
        "dim": dim,
        "device": fitted.device,
        "cutoff": split.cutoff.isoformat(),
        "last_date": split.last_date.isoformat(),
        "n_train_rows": int(len(split.train)),
        "n_users": split.maps.n_users,
        "n_items": split.maps.n_items,
        "n_truth_items_unrankable": split.n_truth_items_unrankable,
        **extra,
    }
    tag = save_candidate(exported, split.maps, popular, metrics, params)
    result: dict[str, Any] = {
        "tag": tag,
        "metrics": metrics,
        "params": params,
        "final_loss": fitted.history[-1]["loss"],
        "fit_seconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if reports_dir is not None:
        table = {"candidate": {"ndcg@10": metrics["ndcg_at_10"], "recall@10": metrics["recall_at_10"]}}
        for name, b in baselines.items():
            table[name] = {"ndcg@10": b["ndcg_at_10"], "recall@10": b["recall_at_10"]}
        if "production_ndcg_at_10" in metrics:
            table["production"] = {
                "ndcg@10": metrics["production_ndcg_at_10"], "recall@10": metrics["production_recall_at_10"]
            }
        result.update(_report(reports_dir, result, table, fitted.history))
    log.info(
        "candidate %s (%s) ndcg@10=%.4f (popularity %.4f, repeat-buy %.4f) recall@10=%.4f on %d users",
        tag,
        exported.kind,
        metrics["ndcg_at_10"],
        metrics["baseline_ndcg_at_10"],
        metrics["repeat_buy_ndcg_at_10"],
        metrics["recall_at_10"],
        metrics["n_test_users"],
    )
    return result


def promote_candidate(
    tag: str, pointer_path: Path, min_gain: float = 0.0, report: Path | str | None = None
) -> dict[str, Any]:
    """Run the promotion gate; the decision dict is the result either way."""
    decision = promote(tag, Path(pointer_path), min_gain=min_gain)
    if report is not None and Path(report).exists():  # the run report carries the gate's verdict too
        payload = json.loads(Path(report).read_text())
        payload["promotion"] = decision
        Path(report).write_text(json.dumps(payload, indent=2))
    log.info(
        "promotion of %s: %s (%s)", tag, "accepted" if decision["promoted"] else "refused", decision["reason"]
    )
    return decision
