"""The promotion gate: evidence measured at training time on the candidate's own split, and the verdict.

`gate_evidence` returns plain JSON types (they go into the model's metadata, read back at promotion):
- sanity: no NaN scores, every test user gets k distinct items, catalogue coverage above a floor;
- paired bootstrap over test users of candidate minus production NDCG@10 (production re-scored on
  the same split): the gain must have a 95% interval above zero to count as "not noise";
- the low-activity slice (test users with few distinct training items): candidate and production
  NDCG@10 there, so the gate can refuse a regression beyond a margin.
`decide` is the verdict training/registry/pointer.py `promote` acts on: beat the popularity baseline and
production by more than `min_gain`, and pass `check` over the recorded evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.data.interactions import Split
from training.evaluation.bootstrap import paired_bootstrap
from training.evaluation.metrics import ScoresFn, per_user_metrics

GATE_METRIC = "ndcg_at_10"
COVERAGE_FLOOR = 0.02
LOW_ACTIVITY_MAX_ITEMS = 3
LOW_ACTIVITY_MARGIN = 0.02


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


def gate_evidence(
    candidate_fn: ScoresFn,
    split: Split,
    production_fn: ScoresFn | None = None,
    k: int = 10,
    coverage_floor: float = COVERAGE_FLOOR,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    failures, cand = sanity(candidate_fn, split, k, coverage_floor)
    out: dict[str, Any] = {"gate_sanity_failures": failures, "gate_coverage_floor": coverage_floor}
    if cand is None:
        return out
    metric = f"ndcg_at_{k}"
    low = low_activity_users(split)
    out["gate_coverage"] = float(np.unique(cand["top"]).size / split.maps.n_items)
    out["gate_n_low_activity_users"] = int(low.sum())
    if low.any():  # BentoML metadata holds no None: absent means "no such users"
        out[f"low_activity_{metric}"] = float(cand[metric][low].mean())
    if production_fn is None:
        return out
    prod = per_user_metrics(production_fn, split, k)
    out.update(
        {
            f"gate_{key}": value
            for key, value in paired_bootstrap(cand[metric], prod[metric], n_boot, seed).items()
        }
    )
    if low.any():
        out[f"production_low_activity_{metric}"] = float(prod[metric][low].mean())
    return out


def check(
    metrics: dict[str, Any], same_split_production: bool, margin: float = LOW_ACTIVITY_MARGIN
) -> list[str]:
    """Reasons to refuse drawn from recorded evidence (empty = the evidence allows promotion).

    Evidence a candidate did not record (older versions) is not invented: those checks are skipped.
    """
    reasons = [f"sanity check failed: {f}" for f in metrics.get("gate_sanity_failures") or []]
    if not same_split_production:
        return reasons
    lo, hi = metrics.get("gate_gain_ci_low"), metrics.get("gate_gain_ci_high")
    if lo is not None and not lo > 0:
        reasons.append(
            f"gain over production {metrics.get('gate_gain', 0.0):+.4f} ndcg@10 is not distinguishable from "
            f"noise (paired bootstrap 95% CI [{lo:+.4f}, {hi:+.4f}] includes 0)"
        )
    cand_low = metrics.get("low_activity_ndcg_at_10")
    prod_low = metrics.get("production_low_activity_ndcg_at_10")
    if cand_low is not None and prod_low is not None and cand_low < prod_low - margin:
        reasons.append(
            f"low-activity users regress: ndcg@10 {cand_low:.4f} vs production {prod_low:.4f} "
            f"(margin {margin}, {metrics.get('gate_n_low_activity_users')} users)"
        )
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

    `prod` is production's ndcg@10 and `basis` how it was measured ("on the candidate's split" makes
    the paired evidence in `metrics` count); "beats" means by more than `min_gain`.
    """
    cand = metrics.get(GATE_METRIC)
    base = metrics.get(f"baseline_{GATE_METRIC}")
    decision: dict[str, Any] = {
        "tag": tag,
        "previous": current,
        "candidate_ndcg_at_10": cand,
        "baseline_ndcg_at_10": base,
        "production_ndcg_at_10": prod,
        "production_basis": basis,
        "min_gain": min_gain,
    }
    reason = None
    if cand is None or base is None:
        reason = f"candidate {tag} lacks metrics {GATE_METRIC!r}/baseline_{GATE_METRIC!r} in its metadata"
    elif current == tag:
        reason = f"{tag} is already in production"
    elif not cand > base + min_gain:
        reason = f"candidate ndcg@10 {cand:.4f} does not beat popularity baseline {base:.4f} (+{min_gain})"
    elif prod is not None and not cand > prod + min_gain:
        reason = (
            f"candidate ndcg@10 {cand:.4f} does not beat production {current} {prod:.4f} {basis} "
            f"(+{min_gain})"
        )
    # Evidence recorded at training time: sanity, paired bootstrap vs production, low-activity slice.
    refusals = check(metrics, same_split_production=basis == "on the candidate's split")
    decision["gate_checks"] = refusals
    if reason is None and refusals:
        reason = "; ".join(refusals)
    return decision, reason
