"""The nightly recipe, chosen on this shop's own validation window (issue 21, part 2).

Options, in a fixed order of cost (cheapest first; the order is the tie-break, so the choice never
depends on how busy the machine was while it measured):
  popularity < repeat_buy < repeat_cadence (repeat-buy weighted by how due each item is,
  evaluation/cadence.py) < tifu (the baselines) < item_knn (collaborative, models/item_knn.py)
  < sasrec (sequence, models/sequence.py, at most MAX_EPOCHS epochs)
  < the DeepFM re-ranker over the chosen retrieval.

Every option is fitted once on the split's training period by `recipe.build` (its own parameters,
epochs or weights chosen on the validation view, models/fit.py `validation_view`), and scored by its
validation-view scorer on the same validation users (a seeded sample of at most VAL_USERS), bought
items last where the shop does not re-buy, exactly as serving will rank them. The test window is
never read here: it belongs to the gate (training/gate.py), which the chosen candidate then faces
as any candidate does.

Rules:
- Budget (refusal only): each option has a CPU budget (`budget_s`). A learned model is refused after
  its first epoch when that epoch x its most epochs exceeds it (models/fit.py OverBudget); a sparse
  model (baselines, item-kNN) when a fit on a seeded 1/PROBE_SHARE of the users, scaled by PROBE_SHARE
  and by the fits its tuning grid needs, exceeds it (popularity and repeat-buy, one counting pass each,
  are the floor and never refused); the re-ranker when its validation fit plus the export of every
  user's pool (the validation sample's scoring time per user x the shop's users), per torch thread,
  exceeds it. A refused option is listed with its estimate; nothing is cut short.
- Tie: an option ties with the best when the paired bootstrap 95 % interval of the best's per-user
  NDCG@10 gain over it (same validation users, training/evaluation/bootstrap.py) includes 0, or the
  gain is below TIE_EPS. The cheapest option tied with the best is the retrieval.
- The re-ranker is kept only when it beats its own retrieval on validation: it is trained at the
  validation cut (its lists from the windows before it) and scored on the same validation users; a
  tie keeps the retrieval (it is cheaper). Only a retrieval that re-fits cheaply at an earlier cut
  (a sparse model: FitResult.scorer_at) can be validated this way; over sasrec it is not tried.
- Demographics (where the shop has a customer table: `customers`) are tried as re-ranker features the
  way churn tries them (profiles/churn.py): the re-ranker is trained a second time with each user's
  age, income and household bands as of the cut (data/features.py `with_demographics`), and they are
  kept only when the paired bootstrap 95 % interval of its validation NDCG@10 gain over the re-ranker
  without them is above 0 (and the gain above TIE_EPS); otherwise the report says they do not pay.
  The re-ranker kept (with or without them) must then beat its retrieval as above.
- Cadence (issue 21, item 4; where the shop re-buys: else bought items rank last and a rhythm has nothing
  to reorder) is tried the same way over the re-ranker kept so far: trained again with each (user, item)'s
  repurchase cadence in its pools (evaluation/cadence.py: typical interval, days since / interval, the
  chance it is due in the window), kept only when its paired gain interval over that re-ranker is above
  0 and the gain above TIE_EPS; recorded in the recipe (`cadence`), so the gate's re-fit keeps it. The
  cheap retrieval with the same rhythm, repeat_cadence, competes with the other options as any does.
- The SVD features (rerank/candidates.py SVD_FEATURES: each pair's PureSVD score, the user's distinct
  items, the item's buyers) are tried the same way, before cadence, over the re-ranker kept so far, and
  recorded in the recipe (`svd`). They pay on Online Retail retail-30d and the no-re-buy shop, not on
  The Complete Journey (whose TIFU-KNN neighbours already carry them): so each shop's validation decides.
Nothing here is tuned by hand per shop: the grids, the order and the rules are the same everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from personaflow.training import export
from personaflow.training.data.features import FeatureSource
from personaflow.training.data.interactions import IdMaps, Split
from personaflow.training.evaluation.baselines import user_item_matrix
from personaflow.training.evaluation.bootstrap import paired_bootstrap
from personaflow.training.evaluation.cadence import WEIGHTS as CADENCE_WEIGHTS
from personaflow.training.evaluation.metrics import ScoresFn, per_user_metrics
from personaflow.training.evaluation.rebuy import bought_matrix, excluding
from personaflow.training.evaluation.tifu import GRID as TIFU_GRID
from personaflow.training.models import item_knn
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import (
    MODELS,
    REFIT,
    FitResult,
    OverBudget,
    fit_clock,
    fit_model,
    fit_threads,
    most_epochs,
    torch_threads,
    validation_view,
)
from personaflow.training.recipe import (
    FIT_BUDGET_S,
    SPARSE,
    Built,
    Recipe,
    baseline_parts,
    build,
    learning_rate,
)
from personaflow.training.rerank.reranker import RerankConfig

log = logging.getLogger(__name__)
OPTIONS = ("popularity", "repeat_buy", "repeat_cadence", "tifu", "item_knn", "sasrec")  # cheapest first
RERANK = "rerank"
RERANK_DEMOGRAPHICS = "rerank+demographics"
RERANK_SVD = "rerank+svd"
RERANK_CADENCE = "rerank+cadence"
VAL_USERS = 5000  # validation users scored per option (a seeded sample on a big shop)
TIE_EPS = 0.002  # NDCG@10 below which a gain is a tie whatever its interval
FLOOR = ("popularity", "repeat_buy")  # one counting pass over the rows, no tuning: never refused, so a
# night always has something to serve
PROBE_SHARE = 8  # sparse options: fitted on 1/8 of the users first to estimate the whole fit
# learned options on a shop this big: one epoch on 1/8 of the users first (below it the first epoch
# itself is seconds and fit.py's first-epoch rule refuses as cheaply)
PROBE_LEARNED_MIN_USERS = 50_000
# the larger learned probe holds at most this many users (1/8 of the 100k shop the rule was measured on):
# past 100k customers the probes' share shrinks, so refusing SASRec at 1M customers costs what it costs at
# 100k, not ten times more (its two probe epochs took 716 s wall at 1M, loaded machine)
PROBE_LEARNED_USERS = 12_500
N_BOOT = 1000
# most epochs per learned option (early stopping usually ends sooner): fixed, the same for every shop.
# SASRec: 7 at its learning rate of 6e-3 (recipe.py LEARNING_RATE). Its fit is the choice's dearest on
# Online Retail, which issue 21 wants under 60 s: 10 epochs at 3e-3 took 70 CPU-s (6.1 an epoch on one
# thread, models/fit.py ONE_THREAD, plus the per-epoch validation and the export) for validation NDCG@10
# 0.1865, still climbing; 7 at 6e-3, with attention-weight dropout off (models/sequence.py), 0.1913 in
# 45.5 CPU-s (load 2, issue 21; the benchmark's figures: models.json `*_option_sasrec_*`)
MAX_EPOCHS = {"sasrec": 7}
# fits of the whole model a sparse option's tuning needs (grid points at the validation cut + 1 final);
# item-kNN is priced by its sparse products instead (_probe_item_knn)
FITS = {
    "tifu": int(np.prod([len(v) for v in TIFU_GRID.values()])) + 1,
    "repeat_cadence": len(CADENCE_WEIGHTS) + 1,
}


@dataclass
class Option:
    name: str
    status: str = "scored"  # scored | refused | failed
    val_ndcg_at_10: float | None = None
    fit_cpu_s: float = 0.0
    fit_wall_s: float = 0.0
    estimate_cpu_s: float | None = None
    # the re-ranker's serving fit (at the test cut, once kept), part of fit_cpu_s / fit_wall_s
    serve_fit_cpu_s: float | None = None
    serve_fit_wall_s: float | None = None
    note: str = ""
    per_user: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        out = {
            "status": self.status, "val_ndcg_at_10": self.val_ndcg_at_10,
            "fit_cpu_s": round(self.fit_cpu_s, 3), "fit_wall_s": round(self.fit_wall_s, 3),
        }  # fmt: skip
        if self.estimate_cpu_s is not None:
            out["estimate_cpu_s"] = round(self.estimate_cpu_s, 3)
        if self.serve_fit_wall_s is not None:
            out["serve_fit_cpu_s"] = round(self.serve_fit_cpu_s or 0.0, 3)
            out["serve_fit_wall_s"] = round(self.serve_fit_wall_s, 3)
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Choice:
    recipe: Recipe
    built: Built
    report: dict[str, Any]
    # every option fitted on the split as it is (no re-ranker): the gate's baselines are taken from here
    fits: dict[str, Built] = field(default_factory=dict)

    @property
    def refused(self) -> tuple[str, ...]:
        """Options refused over the CPU budget (never fitted)."""
        return tuple(n for n, row in self.report["options"].items() if row["status"] == "refused")


def _cpu() -> float:
    return time.process_time()


def _probe_sparse(name: str, split: Split, seed: int) -> float:
    """CPU seconds a sparse option is expected to take: one fit on 1/PROBE_SHARE of the users (default
    parameters), scaled to all users and to the fits its tuning grid needs (linear in users); item-kNN
    by its sparse products (_probe_item_knn)."""
    sub = _probe_split(split, seed)
    if name == "item_knn":
        return _probe_item_knn(split, sub)
    started = _cpu()
    baseline_parts(name, sub)
    return (_cpu() - started) * PROBE_SHARE * FITS.get(name, 2)


def _probe_item_knn(split: Split, sub: Split) -> float:
    """Item-kNN's CPU seconds: seconds per sparse product, timed on a fit of the probe's users at the
    grid's widest k, times the products of the whole fit counted on the shop itself
    (item_knn.fit_products: tuning, final fit, validation view), plus the item vectors every sparse export
    carries (a truncated SVD: timed on the probe, scaled by its entries plus its Lanczos basis). Scaling the
    probe's seconds by the users alone underestimated the fit 5x at 100k customers (3.9 CPU-s estimated,
    17 spent, issue 21): a sample of the users has fewer buyers per item, so fewer neighbours per item
    and fewer products per user, and the grid's scoring was not counted."""
    widest = item_knn.KnnParams(k=max(item_knn.K_GRID))
    started = _cpu()
    item_knn.knn_parts(sub, widest)
    per_product = (_cpu() - started) / max(1.0, sum(item_knn.products(sub, widest.k)))
    matrix = user_item_matrix(sub)
    started = _cpu()
    export.item_vectors(matrix)
    vectors = _cpu() - started
    # the SVD (ARPACK on the items' side) costs per iteration the matrix's entries plus the items x its
    # Lanczos basis (2 x 32 + 1 vectors): on these shops the catalogue's part, which the probe keeps
    # whole, outweighs the entries (measured at 8k, 30k and 100k customers: 0.5-1.2 CPU-s at every size)
    basis = matrix.shape[1] * (2 * 32 + 1)
    full_nnz = user_item_matrix(split).nnz
    return per_product * item_knn.fit_products(split) + vectors * (full_nnz + basis) / (matrix.nnz + basis)


def _probe_split(split: Split, seed: int, share: int = PROBE_SHARE) -> Split:
    """A seeded 1/share of the users' training rows, the whole catalogue kept."""
    users = split.train["user_id"].unique()
    rng = np.random.default_rng(seed)
    keep = rng.choice(users, size=max(1, len(users) // share), replace=False)
    # the sampled users get their own id map: a fit's cost must not include the users left out
    maps = IdMaps(sorted(str(u) for u in keep), split.maps.item_ids)
    return replace(split, train=split.train[split.train["user_id"].isin(set(keep))], maps=maps)


def _probe_learned(name: str, base: Recipe, split: Split, features, epochs: int) -> tuple[float, int]:
    """(Per torch thread CPU seconds a learned fit is expected to take, as fit.py's first-epoch rule
    counts them (one epoch x its most epochs), the probes' share): from one epoch on a seeded 1/(2 share)
    and one on a 1/share of the users, share = PROBE_SHARE up to 100k customers, PROBE_LEARNED_USERS in
    the larger probe above: on a big shop the first epoch itself is minutes (SASRec at 1M
    customers), spent only to be refused. An epoch costs a part fixed in users (its validation sample,
    the catalogue's side) plus a part per user; the two probes give both, so the fixed part is not
    multiplied."""
    cfg = FitConfig(
        epochs=1, dim=base.dim, seed=base.seed, val_days=base.val_days, lr=learning_rate(name),
        exclude_bought=base.exclude_bought,
    )  # fmt: skip
    share = max(PROBE_SHARE, round(split.maps.n_users / PROBE_LEARNED_USERS))
    with torch_threads(fit_threads(name, cfg)):  # fit_clock divides by the threads the fit runs on
        small, large = (_probe_cost(name, split, features, cfg, s) for s in (2 * share, share))
    per_user_part = max(large - small, 0.0) * 2 * share  # the per-user cost of all the users
    per_epoch = max(large, large - per_user_part / share + per_user_part)
    return per_epoch * most_epochs(name, replace(cfg, epochs=epochs)), share


def _probe_cost(name: str, split: Split, features, cfg: FitConfig, probe_share: int) -> float:
    """One epoch's fit_clock seconds on a seeded 1/probe_share of the users (_probe_learned)."""
    # the epoch's validation sample shrinks with the users too (the full fit's is capped at
    # cfg.val_users, reached on a big shop): else the probes' evaluation looks fixed-cost-free
    # and per user, and the estimate overstated SASRec at 100k customers 2.5 times
    probe_cfg = replace(cfg, val_users=max(1, cfg.val_users // probe_share))
    started = fit_clock()
    fit_model(name, _probe_split(split, cfg.seed, probe_share), probe_cfg, features=features)
    return (fit_clock() - started) / (2 if name in REFIT else 1)  # a probe refits once too


def _tie(best: Option, other: Option, seed: int) -> tuple[bool, dict[str, float]]:
    """Whether `other` ties with `best`: the paired 95 % interval of best - other includes 0, or the gain
    is under TIE_EPS."""
    gain = paired_bootstrap(best.per_user, other.per_user, n_boot=N_BOOT, seed=seed)
    return gain["gain_ci_low"] <= 0.0 or gain["gain"] < TIE_EPS, gain


def _scored(option: Option, fn: ScoresFn, sample: Split, bought) -> Option:
    fn = fn if bought is None else excluding(fn, bought)
    option.per_user = per_user_metrics(fn, sample)["ndcg_at_10"]
    option.val_ndcg_at_10 = float(option.per_user.mean()) if option.per_user.size else 0.0
    return option


def _sample(val: Split, seed: int) -> Split:
    if len(val.test_truth) <= VAL_USERS:
        return val
    users = np.random.default_rng(seed).choice(sorted(val.test_truth), size=VAL_USERS, replace=False)
    return replace(val, test_truth={str(u): val.test_truth[str(u)] for u in users})


def _fit_option(
    name: str, base: Recipe, split: Split, features, budget_s: float
) -> tuple[Option, Built | None]:
    option = Option(name)
    if name in SPARSE and name not in FLOOR:
        option.estimate_cpu_s = _probe_sparse(name, split, base.seed)
        if option.estimate_cpu_s > budget_s:
            option.status = "refused"
            option.note = f"estimated {option.estimate_cpu_s:.3g} CPU-s > budget {budget_s:.3g}"
            return option, None
    epochs = min(base.epochs, MAX_EPOCHS.get(name, base.epochs))
    if name in MODELS and split.maps.n_users >= PROBE_LEARNED_MIN_USERS:
        try:
            option.estimate_cpu_s, share = _probe_learned(name, base, split, features, epochs)
        except ValueError:  # too few rows in the probe for a validation view: the first epoch decides
            option.estimate_cpu_s = None
        if option.estimate_cpu_s is not None and option.estimate_cpu_s > budget_s:
            option.status = "refused"
            option.note = (
                f"estimated {option.estimate_cpu_s:.3g} CPU-s (one epoch from probes on 1/{2 * share} "
                f"and 1/{share} of the users, x its most epochs) > budget {budget_s:.3g}"
            )
            return option, None
    cpu, wall = _cpu(), time.perf_counter()
    try:
        recipe = replace(base, model=name, hybrid=False, rerank=False, epochs=epochs)
        built = build(recipe, split, features, budget_s)
    except OverBudget as exc:
        option.status, option.estimate_cpu_s, option.note = "refused", exc.estimate_s, str(exc)
        built = None
    except ValueError as exc:  # e.g. too little data for a validation view
        option.status, option.note, built = "failed", str(exc), None
    option.fit_cpu_s, option.fit_wall_s = _cpu() - cpu, time.perf_counter() - wall
    return option, built


def _rerank_at_validation(
    retrieval: Built, val: Split, base: Recipe, features: FeatureSource, cfg: Any = None
) -> ScoresFn:
    """The re-ranker trained one cut earlier (lists from windows before the validation cut), scoring the
    validation view: what it would have served there. `cfg`: its RerankConfig (None: the defaults)."""
    from personaflow.training.rerank.reranker import fit_reranker

    fitted = retrieval.fitted
    earlier = validation_view(val, base.val_days)
    at_val = FitResult(
        fitted.name, fitted.val_scores_fn, [], 0, fitted.device, fitted.scorer_at(earlier), earlier, None,
        fitted.scorer_at,
    )  # fmt: skip
    return fit_reranker(val, at_val, features, cfg)[0]


def _with_rerank(
    retrieval: Built, split: Split, base: Recipe, features: FeatureSource, cfg: Any = None
) -> Built:
    from personaflow.training.rerank.reranker import fit_reranker

    started = time.perf_counter()
    reranked, info = fit_reranker(split, retrieval.fitted, features, cfg)
    exported = export.with_rerank(retrieval.exported, reranked, split.maps.n_users)
    if base.exclude_bought:
        exported = replace(exported, exclude=bought_matrix(split))
    extra = {**retrieval.extra, **{f"rerank_{k}": v for k, v in info.items()}}
    return Built(exported, retrieval.fitted, extra, retrieval.fit_seconds + time.perf_counter() - started)


def _try_variant(
    rows: dict[str, Option], ties: dict[str, Any], name: str, plain: Option,
    at_validation: Callable[[], ScoresFn], seed: int, sample: Split, bought: Any,
) -> tuple[Option, bool, str]:  # fmt: skip
    """The re-ranker `plain` trained again another way (`at_validation` fits it and returns its
    validation-view scorer), scored on the same validation users: (its option, whether it pays over
    `plain`: a higher score and a paired gain interval above 0 with the gain above TIE_EPS, the interval
    as text). Demographics, the SVD features and cadence are each tried this way."""
    option = rows[name] = Option(name, status="not tried")
    cpu, wall = _cpu(), time.perf_counter()
    try:
        _scored(option, at_validation(), sample, bought)
        option.status = "scored"
    except ValueError as exc:
        option.status, option.note = "failed", str(exc)
    option.fit_cpu_s, option.fit_wall_s = _cpu() - cpu, time.perf_counter() - wall
    if option.status != "scored":
        return option, False, ""
    tied, gain = _tie(option, plain, seed)
    pays = option.val_ndcg_at_10 > plain.val_ndcg_at_10 and not tied
    ties[name] = {"pays": pays, **{f"vs_{plain.name}_{k}": v for k, v in gain.items()}}
    return option, pays, f"gain interval [{gain['gain_ci_low']:.4f}, {gain['gain_ci_high']:.4f}]"


def _try_demographics(
    rows: dict[str, Option], ties: dict[str, Any], plain: Option, chosen: Built, val: Split, base: Recipe,
    features: FeatureSource, customers: Any, sample: Split, bought: Any,
) -> tuple[Option, FeatureSource]:  # fmt: skip
    """The re-ranker trained again with the users' demographic bands; (the re-ranker option to go on
    with, its feature source): the one with demographics only when it pays over `plain`."""
    from personaflow.training.data.features import with_demographics

    demo_features = with_demographics(features, customers)
    option, pays, interval = _try_variant(
        rows, ties, RERANK_DEMOGRAPHICS, plain,
        lambda: _rerank_at_validation(chosen, val, base, demo_features), base.seed, sample, bought,
    )  # fmt: skip
    if option.status != "scored":
        return plain, features
    if not pays:
        option.note = f"demographics do not pay over the re-ranker without them ({interval})"
        return plain, features
    option.note, plain.note = "kept", f"demographics pay ({interval}): the re-ranker with them goes on"
    option.estimate_cpu_s = option.fit_cpu_s / _rerank_threads(base.rerank_config)
    return option, demo_features


def _rerank_threads(cfg: RerankConfig) -> int:
    """Threads the re-ranker's members fit on, the divisor of its CPU estimate: torch's where DeepFMs
    are members, else the LambdaRanks' own (one by default: its CPU-s are its wall-s)."""
    if cfg.ensemble:
        return max(1, torch.get_num_threads())
    if cfg.lambdarank is not None and cfg.lambdarank_members:
        return cfg.lambdarank.n_jobs
    return 1


def _try_pools(
    rows: dict[str, Option], ties: dict[str, Any], name: str, plain: Option, chosen: Built, val: Split,
    base: Recipe, features: FeatureSource, sample: Split, bought: Any, **pools: bool,
) -> tuple[Option, bool]:  # fmt: skip
    """The re-ranker trained again with more cross features in its pools (`pools`: the Recipe fields that
    add them, cadence or svd, with those already kept); (the re-ranker option to go on with, whether
    they are kept): kept only when they pay over `plain` (the re-ranker so far)."""
    cfg = replace(base, rerank=True, demographics=False, **pools).rerank_config
    option, pays, interval = _try_variant(
        rows, ties, name, plain, lambda: _rerank_at_validation(chosen, val, base, features, cfg),
        base.seed, sample, bought,
    )  # fmt: skip
    what = name.removeprefix(f"{RERANK}+")
    if option.status != "scored":
        return plain, False
    if not pays:
        option.note = f"{what} does not pay over {plain.name} ({interval})"
        return plain, False
    option.note = f"kept: {what} pays over {plain.name} ({interval})"
    return option, True


def choose(
    split: Split,
    base: Recipe,
    features: FeatureSource | None = None,
    rerank: bool = True,
    budget_s: float = FIT_BUDGET_S,
    options: tuple[str, ...] = OPTIONS,
    customers: Any = None,
) -> Choice:
    """Fit every option, score each on the validation window, pick by the rules above (module docstring).

    `base` carries what all options share (seed, val_days, epochs, dim, exclude_bought). Memory: one
    option's model at a time besides the kept ones' validation scores (VAL_USERS floats each) and the
    fitted options (each as its export: sparse per-user scores or vectors, linear in users).
    `customers` (our customer table with valid_from, or None): demographics are tried as re-ranker
    features and kept only where they pay (module docstring).
    """
    val = validation_view(split, base.val_days)
    sample = _sample(val, base.seed)
    bought = bought_matrix(val) if base.exclude_bought else None
    rows: dict[str, Option] = {}
    fits: dict[str, Built] = {}
    for name in options:
        option, built = _fit_option(name, base, split, features, budget_s)
        if built is not None:
            _scored(option, built.fitted.val_scores_fn, sample, bought)
            fits[name] = built
        rows[name] = option
        log.info("option %s: %s", name, option.row())
    scored = [rows[n] for n in options if rows[n].status == "scored"]
    if not scored:
        raise ValueError(f"no option could be fitted on this split: {[o.row() for o in rows.values()]}")
    best = max(scored, key=lambda o: o.val_ndcg_at_10)
    ties: dict[str, Any] = {}
    winner = best
    for option in scored:  # cheapest first: the first tied with the best wins
        if option is best:
            break
        tied, gain = _tie(best, option, base.seed)
        ties[option.name] = {"tied_with_best": tied, **{f"best_{k}": v for k, v in gain.items()}}
        if tied:
            winner = option
            break
    reason = (
        f"{best.name} scored best on validation (ndcg@10 {best.val_ndcg_at_10:.4f})"
        if winner is best
        else f"{winner.name} (ndcg@10 {winner.val_ndcg_at_10:.4f}) ties with the best, {best.name} "
        f"({best.val_ndcg_at_10:.4f}): the cheaper option wins a tie"
    )
    epochs = min(base.epochs, MAX_EPOCHS.get(winner.name, base.epochs))
    chosen_recipe = replace(base, model=winner.name, hybrid=False, rerank=False, epochs=epochs)
    chosen = replace(fits[winner.name], extra=dict(fits[winner.name].extra))  # `fits` stays as fitted
    rows[RERANK] = Option(RERANK, status="not tried")
    if not rerank:
        rows[RERANK].note = "re-ranking switched off (PERSONAFLOW_RERANK=false)"
    elif features is None:
        rows[RERANK].note = "no feature source"
    elif chosen.fitted.scorer_at is None:
        note = f"{winner.name} does not re-fit cheaply at an earlier cut: not validated, not tried"
        rows[RERANK].note = note
    else:
        option = rows[RERANK]
        cpu, wall = _cpu(), time.perf_counter()
        scoring_cpu = 0.0
        try:
            at_val = _rerank_at_validation(chosen, val, base, features)
            scoring_started = _cpu()
            _scored(option, at_val, sample, bought)
            scoring_cpu = _cpu() - scoring_started
            option.status = "scored"
        except ValueError as exc:  # e.g. no validation users before the validation cut
            option.status, option.note = "failed", str(exc)
        option.fit_cpu_s, option.fit_wall_s = _cpu() - cpu, time.perf_counter() - wall
        # The serving fit learns from as many lists, then scores every user's pool for the export: the
        # validation sample's scoring, per user, times the shop's users (linear, but at 1M customers the
        # export outweighs the fit). Per thread the members fit on, as a learned fit's budget counts
        # (one for the default LambdaRanks, torch's for DeepFMs). (With demographics kept, their
        # option's fit includes its own scoring, about the plain one's.)
        export_cpu = scoring_cpu / max(1, len(sample.test_truth)) * split.maps.n_users
        plain_estimate = (option.fit_cpu_s - scoring_cpu + export_cpu) / _rerank_threads(base.rerank_config)
        # Each feature set only adds work to the fit and the export: where the plain re-ranker is over the
        # budget, every variant would be refused too, so none is fitted (at 1M customers each try was
        # another ~260 CPU-s validation fit for nothing)
        tries = option.status == "scored" and plain_estimate <= budget_s
        if option.status == "scored" and not tries:
            demographics = (RERANK_DEMOGRAPHICS,) if customers is not None and len(customers) else ()
            for name in (*demographics, RERANK_SVD, RERANK_CADENCE):
                rows[name] = Option(name, status="not tried")
                rows[name].note = f"the re-ranker is over the budget ({plain_estimate:.3g} CPU-s estimated)"
        if tries and customers is not None and len(customers):
            option, features = _try_demographics(rows, ties, option, chosen, val, base, features, customers,
                                                 sample, bought)  # fmt: skip
        with_demographics, with_cadence, with_svd = option.name == RERANK_DEMOGRAPHICS, False, False
        if tries:
            option, with_svd = _try_pools(rows, ties, RERANK_SVD, option, chosen, val, base, features,
                                          sample, bought, svd=True)  # fmt: skip
        if tries and base.exclude_bought:
            rows[RERANK_CADENCE] = Option(RERANK_CADENCE, status="not tried")
            rows[RERANK_CADENCE].note = "the shop does not re-buy: bought items rank last, no rhythm to use"
        elif tries:
            option, with_cadence = _try_pools(rows, ties, RERANK_CADENCE, option, chosen, val, base, features,
                                              sample, bought, cadence=True, svd=with_svd)  # fmt: skip
        rerank_cfg = replace(base, rerank=True, cadence=with_cadence, svd=with_svd).rerank_config
        threads = _rerank_threads(rerank_cfg)
        option.estimate_cpu_s = (option.fit_cpu_s - scoring_cpu + export_cpu) / threads
        if option.status == "scored":
            tied, gain = _tie(option, winner, base.seed)
            ties[RERANK] = {"beats_retrieval": not tied, **{f"vs_retrieval_{k}": v for k, v in gain.items()}}
            if option.val_ndcg_at_10 <= winner.val_ndcg_at_10 or tied:
                option.note = f"does not beat its retrieval {winner.name} on validation: the retrieval serves"
            elif option.estimate_cpu_s > budget_s:
                option.status = "refused"
                option.note = (
                    "its fit and the export of every user's pool are estimated at "
                    f"{option.estimate_cpu_s:.3g} CPU-s > budget {budget_s:.3g}"
                )
            else:
                cpu, wall = _cpu(), time.perf_counter()
                chosen = _with_rerank(chosen, split, base, features, rerank_cfg)
                option.serve_fit_cpu_s, option.serve_fit_wall_s = _cpu() - cpu, time.perf_counter() - wall
                option.fit_cpu_s += option.serve_fit_cpu_s
                option.fit_wall_s += option.serve_fit_wall_s
                # recorded with the model, so a gate re-fit of it (registry/fair.py) keeps the bands
                chosen_recipe = replace(chosen_recipe, rerank=True, demographics=with_demographics,
                                        cadence=with_cadence, svd=with_svd)  # fmt: skip
                with_demo = " with demographics" if chosen_recipe.demographics else ""
                with_demo += " with the SVD features" if chosen_recipe.svd else ""
                with_demo += " with cadence" if chosen_recipe.cadence else ""
                reason += (
                    f"; the re-ranker{with_demo} over it beats it on validation (ndcg@10 "
                    f"{option.val_ndcg_at_10:.4f}, gain interval [{gain['gain_ci_low']:.4f}, "
                    f"{gain['gain_ci_high']:.4f}])"
                )
                option.note = "kept"
    report = {
        "chosen": winner.name
        + ("+rerank" if chosen_recipe.rerank else "")
        + ("+demographics" if chosen_recipe.demographics else "")
        + ("+svd" if chosen_recipe.svd else "")
        + ("+cadence" if chosen_recipe.cadence else ""),
        "reason": reason,
        "options": {name: o.row() for name, o in rows.items()},
        "comparisons": ties,
        "val_users": len(sample.test_truth),
        "budget_cpu_s": budget_s,
        "tie_rule": f"paired bootstrap 95% interval of the gain includes 0, or the gain < {TIE_EPS}",
    }
    log.info("recipe chosen: %s (%s)", report["chosen"], reason)
    return Choice(chosen_recipe, chosen, report, fits)
