"""Stage functions for the DAG and the CLI: explicit arguments in, plain-type dicts out."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from training import registry
from training.data import Split, load_interactions, time_split
from training.evaluate import evaluate, popularity_ranking, popularity_scores_fn, transferred_scores_fn
from training.gate import gate_evidence
from training.report import write_png
from training.train import default_device, fit_bpr

log = logging.getLogger(__name__)


def production_scores_fn(pointer_path: Path | None, split: Split):
    """Production's scores over this split's users and items, or None when there is none."""
    pointer = registry.read_pointer(Path(pointer_path)) if pointer_path is not None else None
    if not pointer:
        return None
    try:
        return transferred_scores_fn(registry.load_model(pointer["tag"]), split.maps)
    except ValueError:
        return None


def score_production(pointer_path: Path | None, split: Split) -> dict[str, Any]:
    """The production model's metrics on `split` (the candidate's), or {} when there is none.

    Each night's hold-out window differs, so production's recorded ndcg is not comparable with a new
    candidate's; re-scoring production on the candidate's split is what makes the gate fair.
    """
    pointer = registry.read_pointer(Path(pointer_path)) if pointer_path is not None else None
    if not pointer:
        return {}
    try:
        production = registry.load_model(pointer["tag"])
    except ValueError as exc:  # deleted from the store: the gate falls back and says so
        log.warning("production %s not re-scored on this split: %s", pointer["tag"], exc)
        return {}
    scored = evaluate(transferred_scores_fn(production, split.maps), split, k=10)
    return {
        "production_tag": production.tag,
        "production_recall_at_10": scored["recall_at_10"],
        "production_ndcg_at_10": scored["ndcg_at_10"],
    }


def train_candidate(
    warehouse: Path,
    holdout_days: int,
    seed: int,
    epochs: int = 20,
    dim: int = 64,
    reports_dir: Path | None = None,
    pointer_path: Path | None = None,
) -> dict[str, Any]:
    """Load -> split -> fit -> evaluate (model, popularity, production) -> save a candidate -> report.

    With `pointer_path`, the current production model is scored on this same split too, so the
    promotion gate compares like with like.
    """
    started = time.perf_counter()
    frame = load_interactions(warehouse)
    split = time_split(frame, holdout_days)
    device = default_device()
    fit_started = time.perf_counter()
    model, history = fit_bpr(split, dim=dim, epochs=epochs, seed=seed, device=device)
    fit_seconds = time.perf_counter() - fit_started

    model_metrics = evaluate(lambda users: model.score(users).numpy(), split, k=10)
    baseline = evaluate(popularity_scores_fn(split), split, k=10)
    metrics: dict[str, Any] = {
        **model_metrics,
        "baseline_recall_at_10": baseline["recall_at_10"],
        "baseline_ndcg_at_10": baseline["ndcg_at_10"],
        **score_production(pointer_path, split),
        **gate_evidence(
            lambda users: model.score(users).numpy(), split, production_scores_fn(pointer_path, split)
        ),
    }
    params: dict[str, Any] = {
        "holdout_days": holdout_days,
        "seed": seed,
        "epochs": epochs,
        "dim": dim,
        "device": device,
        "cutoff": split.cutoff.isoformat(),
        "last_date": split.last_date.isoformat(),
        "n_train_rows": int(len(split.train)),
        "n_users": split.maps.n_users,
        "n_items": split.maps.n_items,
        "n_truth_items_unrankable": split.n_truth_items_unrankable,
    }
    tag = registry.save_candidate(model, split.maps, popularity_ranking(split), metrics, params)
    result: dict[str, Any] = {
        "tag": tag,
        "metrics": metrics,
        "params": params,
        "final_loss": history[-1]["loss"],
        "fit_seconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if reports_dir is not None:
        reports_dir = Path(reports_dir)
        reports_dir.mkdir(parents=True, exist_ok=True)
        path = reports_dir / f"training_{tag.replace(':', '_')}.json"
        path.write_text(json.dumps({**result, "history": history}, indent=2))
        result["report"] = str(path)
        table = {
            "candidate": {"ndcg@10": metrics["ndcg_at_10"], "recall@10": metrics["recall_at_10"]},
            "popularity": {"ndcg@10": baseline["ndcg_at_10"], "recall@10": baseline["recall_at_10"]},
        }
        if "production_ndcg_at_10" in metrics:
            table["production"] = {
                "ndcg@10": metrics["production_ndcg_at_10"], "recall@10": metrics["production_recall_at_10"]
            }
        result["report_png"] = str(write_png(path.with_suffix(".png"), tag, table, history))
    log.info(
        "candidate %s ndcg@10=%.4f (popularity %.4f) recall@10=%.4f on %d users",
        tag,
        metrics["ndcg_at_10"],
        metrics["baseline_ndcg_at_10"],
        metrics["recall_at_10"],
        metrics["n_test_users"],
    )
    return result


def promote_candidate(
    tag: str, pointer_path: Path, min_gain: float = 0.0, report: Path | str | None = None
) -> dict[str, Any]:
    """Run the promotion gate; the decision dict is the result either way."""
    decision = registry.promote(tag, Path(pointer_path), min_gain=min_gain)
    if report is not None and Path(report).exists():  # the run report carries the gate's verdict too
        payload = json.loads(Path(report).read_text())
        payload["promotion"] = decision
        Path(report).write_text(json.dumps(payload, indent=2))
    log.info(
        "promotion of %s: %s (%s)", tag, "accepted" if decision["promoted"] else "refused", decision["reason"]
    )
    return decision
