"""One training interface for every model: seeded, cuda (bf16 autocast) when present, early stopping.

`fit_model(name, split, config)` carves a validation split from the TRAINING period (the same protocol,
`config.val_days` before the training cut), trains epoch by epoch on the rows before that inner cut,
logs one line per epoch (loss, validation NDCG@10, seconds), keeps the best epoch's weights and stops
after `patience` epochs without improvement or at `config.epochs` (the fixed maximum per model). The
test window is never looked at.
Training length comes from validation alone: the same data, seed and config give the same model on an
idle or a busy machine. A CPU budget (`config.budget_s`) may only *refuse* a fit up front: the first
epoch's CPU time times the most epochs the fit can run (the refit included) is the estimate; above the
budget the fit raises `OverBudget` after that first epoch, before any result exists. It never ends a fit
early (a truncated fit's quality would depend on the machine's load).
- BPR-MF and the two-tower model then refit on the whole training period for the best number of epochs
  (user vectors must see the recent weeks); the two-tower model needs a `FeatureSource`: the validation
  learner gets features as of the inner cut, the refit learner features as of the training cut;
- sequence models keep their best weights and score from each user's full training history.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from personaflow.training.data.features import FeatureSource, FeatureTables
from personaflow.training.data.interactions import Split
from personaflow.training.data.purchases import PurchaseSplit, validation_split
from personaflow.training.evaluation.metrics import ScoresFn, evaluate
from personaflow.training.evaluation.rebuy import bought_matrix, excluding
from personaflow.training.models.bpr import BPRLearner
from personaflow.training.models.config import FitConfig, default_device
from personaflow.training.models.sequence import SequenceLearner, user_sequences
from personaflow.training.models.two_tower import TwoTowerLearner

log = logging.getLogger(__name__)
MODELS = ("bpr", "sasrec", "gru", "two_tower")
FEATURE_MODELS = ("two_tower",)  # these need `features=` in fit_model
REFIT = ("bpr", "two_tower")  # refit on the whole training period for the best number of epochs
# Fitted on one torch thread by default (FitConfig.threads None). SASRec's tensors are small (256 windows
# x 50 tokens x 64 dims a step): a second thread buys little on idle cores, and on a loaded machine
# torch's OpenMP threads spin waiting for each other. Measured on Online Retail's validation view (6,115
# windows, 24 steps an epoch), load 12-15 on 2 cores: one epoch 31.0 CPU-s / 114 s wall on two threads,
# 7.0 CPU-s / 42 s wall on one (issue 21: the option's fit had taken 346 CPU-s, over the 60 s bar).
ONE_THREAD = ("sasrec",)


class OverBudget(RuntimeError):
    """A fit refused up front: its estimated CPU seconds exceed its budget (nothing was truncated)."""

    def __init__(self, name: str, estimate_s: float, budget_s: float) -> None:
        super().__init__(
            f"{name}: estimated {estimate_s:.1f} CPU-s (first epoch x most epochs) > budget {budget_s:.0f} s"
        )
        self.name, self.estimate_s, self.budget_s = name, estimate_s, budget_s


def fit_clock() -> float:
    """Seconds the fit would take alone on this machine's torch threads: this process's CPU time over
    the thread count (wall time would charge it for other jobs sharing the cores). Read only to refuse
    a fit up front, never to end one."""
    return time.process_time() / max(1, torch.get_num_threads())


def fit_threads(name: str, cfg: FitConfig) -> int:
    """Torch threads a fit of `name` runs on: cfg.threads when set (0: torch's setting), else one for the
    ONE_THREAD models and torch's setting for the others."""
    if cfg.threads is None:
        return 1 if name in ONE_THREAD else torch.get_num_threads()
    return cfg.threads or torch.get_num_threads()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside, restored after (fit_clock divides by them inside)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def most_epochs(name: str, cfg: FitConfig) -> int:
    """The most epochs a fit of `name` can run: early stopping's maximum, plus as many in the refit."""
    return cfg.epochs * (2 if name in REFIT else 1)


@dataclass
class FitResult:
    name: str
    scores_fn: ScoresFn
    history: list[dict[str, float]]
    best_epoch: int
    device: str
    val_scores_fn: ScoresFn  # the early-stopped model scored on the validation view (for tuning blends)
    val_split: Split
    module: torch.nn.Module  # two_tower: a TwoTower, whose user_vectors()/item_vectors() serving needs
    # split -> the same recipe's scorer at that split's cut, where refitting is cheap (baselines): lets
    # a re-ranker learn from several earlier validation windows
    scorer_at: Callable[[Split], ScoresFn] | None = None


def _learner(name: str, train, maps, cfg: FitConfig, device: str, tables: FeatureTables | None = None):
    if name == "bpr":
        return BPRLearner(train, maps, cfg, device)
    if name == "two_tower":
        return TwoTowerLearner(train, maps, cfg, device, tables)
    if name in ("sasrec", "gru"):
        return SequenceLearner(train, maps, cfg, device, name)
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def validation_view(split: PurchaseSplit, val_days: int) -> PurchaseSplit:
    """Inner train + validation truth, over the full split's id maps (so weights carry over)."""
    inner = validation_split(split, val_days)
    return replace(inner, maps=split.maps)


def _sample_users(split: Split, n: int, seed: int) -> Split:
    """`split` with at most n test users (a fixed, seeded sample): early stopping on a big shop."""
    if len(split.test_truth) <= n:
        return split
    users = np.random.default_rng(seed).choice(sorted(split.test_truth), size=n, replace=False)
    return replace(split, test_truth={str(u): split.test_truth[str(u)] for u in users})


def fit_model(
    name: str, split: PurchaseSplit, cfg: FitConfig | None = None, features: FeatureSource | None = None
) -> FitResult:
    """Train `name` on `split.train` (see the module docstring); `features` is required by FEATURE_MODELS."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")
    if name in FEATURE_MODELS and features is None:
        raise ValueError(f"model {name!r} needs user/item features: pass features=<FeatureSource>")
    cfg = cfg or FitConfig()
    with torch_threads(fit_threads(name, cfg)):
        return _fit(name, split, cfg, features)


def _fit(name: str, split: PurchaseSplit, cfg: FitConfig, features: FeatureSource | None) -> FitResult:
    device = cfg.device or default_device()
    torch.manual_seed(cfg.seed)
    val = validation_view(split, cfg.val_days)
    # point in time: the validation learner sees features as of the inner cut only
    val_tables = features(val) if name in FEATURE_MODELS else None
    learner = _learner(name, val.train, split.maps, cfg, device, val_tables)
    val_sample = _sample_users(val, cfg.val_users, cfg.seed)
    val_bought = bought_matrix(val) if cfg.exclude_bought else None
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, waited = -1.0, 0, None, 0
    first_started = fit_clock()
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        loss = learner.epoch()
        scorer = learner.scores if val_bought is None else excluding(learner.scores, val_bought)
        ndcg = evaluate(scorer, val_sample)["ndcg_at_10"]
        history.append(
            {"epoch": epoch, "loss": loss, "val_ndcg_at_10": ndcg, "seconds": time.perf_counter() - started}
        )
        log.info(
            "%s epoch %d/%d loss=%.4f val_ndcg@10=%.4f (%.1fs, %s)",
            name,
            epoch,
            cfg.epochs,
            loss,
            ndcg,
            history[-1]["seconds"],
            device,
        )
        if epoch == 1 and cfg.budget_s is not None:  # refuse up front, or run to the end: never truncate
            estimate = (fit_clock() - first_started) * most_epochs(name, cfg)
            log.info("%s: estimated %.1f CPU-s at most (budget %.0f)", name, estimate, cfg.budget_s)
            if estimate > cfg.budget_s:
                raise OverBudget(name, estimate, cfg.budget_s)
        if ndcg > best:
            best, best_epoch, waited = ndcg, epoch, 0
            best_state = copy.deepcopy(learner.module.state_dict())
        else:
            waited += 1
            if waited >= cfg.patience:
                log.info(
                    "%s: early stop after epoch %d (best %d, val ndcg@10 %.4f)", name, epoch, best_epoch, best
                )
                break
    learner.module.load_state_dict(best_state)
    val_scores = learner.scores
    if name in REFIT:  # refit on the whole training period for the chosen number of epochs
        val_learner = learner
        tables = features(split) if name in FEATURE_MODELS else None
        learner = _learner(name, split.train, split.maps, cfg, device, tables)
        for _ in range(best_epoch):
            learner.epoch()
        val_scores = val_learner.scores
    else:  # same weights; the test scorer reads full training histories, the validation one does not
        val_learner = copy.copy(learner)
        learner.history = user_sequences(split.train, split.maps)
        val_scores = val_learner.scores
    return FitResult(name, learner.scores, history, best_epoch, device, val_scores, val, learner.module)
