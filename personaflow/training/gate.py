"""The promotion gate: evidence measured on one fair split, and the verdict.

`gate_evidence` returns plain JSON types (they go into the model's metadata, or are measured afresh on
today's split at manual promotion):
- sanity: no NaN scores, every test user gets k distinct items, catalogue coverage above a floor;
- the best baseline on this split (repeat-buy, TIFU-KNN, popularity) and the paired bootstrap over test
  users of candidate minus that baseline (NDCG@10);
- production scored fairly on the same split (neither model has seen its test window: see
  personaflow/training/registry/fair.py) and the paired bootstrap of candidate minus production;
- the low-activity slice (test users with few distinct training items): its own paired interval per
  comparison, counted only when the slice holds at least MIN_SLICE_USERS users;
- `gate_segments`: NDCG@10 / Recall@10 per RFM segment at the cut (Champions, At Risk, first-time
  buyers...; personaflow/training/evaluation/segments.py) for the candidate, the best baseline and production:
  shown in the training and nightly reports, not a veto (most segments are too small for one).
`check` turns the evidence into reasons to refuse; `decide` is the verdict
personaflow/training/registry/pointer.py
`promote` acts on.

Rules. A learned candidate must beat the best baseline and production, each with a paired 95% interval
above zero. A re-fit of production's own recipe (a nightly retrain on fresher data) and a baseline
candidate (served when no learned model wins) need only not be clearly worse than production, nor (a
baseline) than the best baseline (interval not entirely below zero); but not when the candidate learned
from exactly the data production learned from (`gate_same_data`: a cleared and re-run training task, a
re-run day): then nothing is fresher, and it must beat production clearly like any other candidate, so
re-running a night never swaps production for its own retrain. A slice vetoes only when it is
big enough and its own interval lies entirely below zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from personaflow.training.data.interactions import Split
from personaflow.training.evaluation.bootstrap import paired_bootstrap
from personaflow.training.evaluation.metrics import ScoresFn, per_user_metrics
from personaflow.training.evaluation.segments import segment_metrics, split_segments

GATE_METRIC = "ndcg_at_10"
COVERAGE_FLOOR = 0.02
LOW_ACTIVITY_MAX_ITEMS = 3
MIN_SLICE_USERS = 30


def low_activity_users(split: Split, max_items: int = LOW_ACTIVITY_MAX_ITEMS) -> np.ndarray:
    """Boolean mask over sorted test users: True where the user bought/used <= max_items train items."""
    distinct = split.train.groupby("user_id")["item_id"].nunique()
    users = sorted(split.test_truth)
    return np.array([int(distinct.get(u, 0)) <= max_items for u in users], dtype=bool)


def sanity(
    scores_fn: ScoresFn, split: Split, k: int = 10, coverage_floor: float = COVERAGE_FLOOR
) -> tuple[list[str], dict[str, np.ndarray] | None]:
    """Failure reasons (empty list = sane) and the per-user metrics when scoring worked at all."""
    try:
        per_user = per_user_metrics(scores_fn, split, k)
    except ValueError as exc:  # NaN scores or a wrong shape: nothing else can be checked
        return [f"scoring failed: {exc}"], None
    failures = []
    top = per_user["top"]
    want = min(k, split.maps.n_items)
    short = [u for u, row in zip(per_user["users"], top, strict=True) if np.unique(row).size < want]
    if top.shape[1] < want or short:
        failures.append(
            f"{len(short)} test user(s) get fewer than {want} distinct items (first: {short[:1]})"
        )
    coverage = np.unique(top).size / split.maps.n_items
    if coverage < coverage_floor:
        failures.append(f"catalogue coverage {coverage:.4f} is below the floor {coverage_floor}")
    return failures, per_user


def interval_words(lo: float, hi: float) -> str:
    """What a 95% interval of a gain says, in words that match its numbers."""
    if hi < 0:
        return "lies entirely below 0"
    if lo > 0:
        return "lies entirely above 0"
    return "includes 0"


def _paired(prefix: str, cand: np.ndarray, other: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    out = {f"{prefix}_{k}": v for k, v in paired_bootstrap(cand, other, n_boot, seed).items()}
    out[f"{prefix}_n_users"] = int(len(cand))
    return out


def _compare(prefix, cand, other, low, n_boot, seed, slice_min) -> dict[str, Any]:
    out = _paired(prefix, cand, other, n_boot, seed)
    out[f"{prefix}_low_activity_n_users"] = int(low.sum())
    if low.sum() >= slice_min:  # a slice of a handful of users has no interval worth a veto
        out.update(_paired(f"{prefix}_low_activity", cand[low], other[low], n_boot, seed + 1))
    return out


def gate_evidence(
    candidate_fn: ScoresFn,
    split: Split,
    baselines: dict[str, ScoresFn] | None = None,
    production_fn: ScoresFn | None = None,
    *,
    production_tag: str | None = None,
    production_basis: str = "on the candidate's split",
    same_recipe: bool = False,
    same_data: bool = False,
    candidate_baseline: str | None = None,
    k: int = 10,
    coverage_floor: float = COVERAGE_FLOOR,
    n_boot: int = 1000,
    seed: int = 0,
    slice_min: int = MIN_SLICE_USERS,
) -> dict[str, Any]:
    """Evidence for `check` (module docstring). `candidate_baseline`: the candidate *is* that baseline."""
    failures, cand = sanity(candidate_fn, split, k, coverage_floor)
    out: dict[str, Any] = {
        "gate_sanity_failures": failures,
        "gate_coverage_floor": coverage_floor,
        "gate_cutoff": split.cutoff.isoformat(),
        "gate_min_slice_users": slice_min,
    }
    if candidate_baseline is not None:
        out["gate_candidate_baseline"] = candidate_baseline
    if cand is None:
        return out
    metric = f"ndcg_at_{k}"
    low = low_activity_users(split)
    out["gate_coverage"] = float(np.unique(cand["top"]).size / split.maps.n_items)
    out["gate_n_test_users"] = int(len(cand["users"]))
    out["gate_n_low_activity_users"] = int(low.sum())
    if low.any():  # BentoML metadata holds no None: absent means "no such users"
        out[f"low_activity_{metric}"] = float(cand[metric][low].mean())
    sliced = {"candidate": cand}  # per-user metrics of each model the segment table shows
    if baselines:
        per_base = {name: per_user_metrics(fn, split, k) for name, fn in baselines.items()}
        scored = {name: rows[metric] for name, rows in per_base.items()}
        out.update({f"gate_{name}_{metric}": float(v.mean()) for name, v in scored.items()})
        best = max(scored, key=lambda name: scored[name].mean())
        out["gate_best_baseline"] = best
        out[f"gate_best_baseline_{metric}"] = float(scored[best].mean())
        out.update(_compare("gate_vs_baseline", cand[metric], scored[best], low, n_boot, seed, slice_min))
        sliced["best_baseline"] = per_base[best]
    if production_fn is None:
        out["gate_segments"] = segment_metrics(split_segments(split), sliced, k)
        return out
    prod = per_user_metrics(production_fn, split, k)
    sliced["production"] = prod
    out["gate_segments"] = segment_metrics(split_segments(split), sliced, k)
    out.update(
        {
            "production_tag": production_tag,
            "gate_production_basis": production_basis,
            "gate_same_recipe": bool(same_recipe),
            "gate_same_data": bool(same_data),
            f"production_{metric}": float(prod[metric].mean()),
            f"production_recall_at_{k}": float(prod[f"recall_at_{k}"].mean()),
        }
    )
    if production_tag is None:
        del out["production_tag"]
    if low.any():
        out[f"production_low_activity_{metric}"] = float(prod[metric][low].mean())
    out.update(_compare("gate_vs_production", cand[metric], prod[metric], low, n_boot, seed, slice_min))
    return out


def gain_of(metrics: dict[str, Any], prefix: str) -> tuple[float, float, float] | None:
    lo, hi = metrics.get(f"{prefix}_gain_ci_low"), metrics.get(f"{prefix}_gain_ci_high")
    if lo is None or hi is None:
        return None
    return float(metrics.get(f"{prefix}_gain", 0.0)), float(lo), float(hi)


def said(what: str, gain: tuple[float, float, float], n: int | None = None) -> str:
    g, lo, hi = gain
    users = f", {n} users" if n is not None else ""
    ci = f"paired bootstrap 95% CI [{lo:+.4f}, {hi:+.4f}] {interval_words(lo, hi)}{users}"
    return f"{what} {g:+.4f} ndcg@10 ({ci})"


def check(metrics: dict[str, Any], current: str | None = None) -> list[str]:
    """Reasons to refuse drawn from the evidence (empty = the evidence allows promotion).

    Production evidence counts only while `current` is still the model it was measured on. Evidence a
    candidate did not record (older versions) is not invented: those checks are skipped.
    """
    reasons = [f"sanity check failed: {f}" for f in metrics.get("gate_sanity_failures") or []]
    is_baseline = metrics.get("gate_candidate_baseline")
    best = metrics.get("gate_best_baseline")
    vs_base = gain_of(metrics, "gate_vs_baseline")
    if best is not None and vs_base is not None and is_baseline is not None and is_baseline != best:
        if vs_base[2] < 0:  # another baseline is clearly better: serve that one
            reasons.append(said(f"the best baseline ({best}) is clearly better: gain", vs_base))
    elif best is not None and vs_base is not None and is_baseline is None:
        if not vs_base[1] > 0:
            reasons.append(said(f"gain over the best baseline ({best}) is", vs_base) + ": not a clear win")
        low = gain_of(metrics, "gate_vs_baseline_low_activity")
        if low is not None and low[2] < 0:
            n = metrics.get("gate_vs_baseline_low_activity_n_users")
            reasons.append(said(f"low-activity users regress against {best}:", low, n))
    prod_tag = metrics.get("production_tag")
    vs_prod = gain_of(metrics, "gate_vs_production")
    if vs_prod is None or (current is not None and prod_tag is not None and prod_tag != current):
        return reasons
    where = metrics.get("gate_production_basis", "on the candidate's split")
    fresher = not metrics.get("gate_same_data")  # a retrain on production's own data earns no leniency
    if (is_baseline is not None or metrics.get("gate_same_recipe")) and fresher:
        if vs_prod[2] < 0:  # a retrain of the same recipe, or the baseline: only "clearly worse" refuses
            reasons.append(said(f"production {prod_tag} ({where}) is clearly better: gain", vs_prod))
    elif not vs_prod[1] > 0:
        reasons.append(said(f"gain over production {prod_tag} ({where}) is", vs_prod) + ": not a clear win")
    low = gain_of(metrics, "gate_vs_production_low_activity")
    if low is not None and low[2] < 0:
        n = metrics.get("gate_vs_production_low_activity_n_users")
        reasons.append(said("low-activity users regress against production:", low, n))
    return reasons


def decide(
    tag: str,
    metrics: dict[str, Any],
    current: str | None,
    prod: float | None,
    basis: str,
    min_gain: float = 0.0,
) -> tuple[dict[str, Any], str | None]:
    """The decision record and the reason to refuse (None = promote `tag` over `current`).

    `prod` is production's ndcg@10 and `basis` how it was measured; "beats" means by more than
    `min_gain`. A baseline candidate, or a retrain of production's recipe, is held to `check` alone,
    unless it learned from production's very data (`gate_same_data`).
    """
    cand = metrics.get(GATE_METRIC)
    base = metrics.get(f"baseline_{GATE_METRIC}")
    # held to `check` alone, but only while the paired evidence is about today's production
    fair = metrics.get("gate_vs_production_gain_ci_low") is not None
    lenient = (metrics.get("gate_candidate_baseline") is not None or metrics.get("gate_same_recipe")) and (
        fair and metrics.get("production_tag") == current and not metrics.get("gate_same_data")
    )
    decision: dict[str, Any] = {
        "tag": tag,
        "previous": current,
        "candidate_ndcg_at_10": cand,
        "baseline_ndcg_at_10": base,
        "best_baseline": metrics.get("gate_best_baseline"),
        "best_baseline_ndcg_at_10": metrics.get(f"gate_best_baseline_{GATE_METRIC}"),
        "production_ndcg_at_10": prod,
        "production_basis": basis,
        "min_gain": min_gain,
    }
    reason = None
    if cand is None or base is None:
        reason = f"candidate {tag} lacks metrics {GATE_METRIC!r}/baseline_{GATE_METRIC!r} in its metadata"
    elif current == tag:
        reason = f"{tag} is already in production"
    elif metrics.get("gate_candidate_baseline") is None and not cand > base + min_gain:
        reason = f"candidate ndcg@10 {cand:.4f} does not beat popularity baseline {base:.4f} (+{min_gain})"
    elif prod is not None and not lenient and not cand > prod + min_gain:
        reason = (
            f"candidate ndcg@10 {cand:.4f} does not beat production {current} {prod:.4f} {basis} "
            f"(+{min_gain})"
        )
    refusals = check(metrics, current)
    decision["gate_checks"] = refusals
    if refusals and (reason is None or current != tag):
        reason = "; ".join([*([reason] if reason else []), *refusals])
    return decision, reason
