"""A gradient-boosted LambdaRank (LightGBM's `LGBMRanker`) over the re-ranker's candidate lists.

Why: the field's standard re-ranker over candidate features. It optimises NDCG over each user's list
directly (lambda gradients), takes NaN ("never bought") as a value of its own, and a fit over the
re-ranker's few thousand lists of 150 candidates is seconds on two cores, where one DeepFM is minutes.
Training length comes from validation, never from time: it stops when NDCG@10 on a seeded held-out
slice of the training lists has not risen for `patience` rounds and keeps the best round. With
`deterministic` and a fixed thread count, the same lists and seed give the same trees on a busy or an
idle machine (LightGBM's histogram sums are otherwise order-dependent across threads).

Memory: LightGBM bins the (lists x pool, D) numerics once (one byte per value and feature, besides the
float64 input the caller holds); trees are at most `rounds` x `num_leaves` nodes. Scoring is one pass
over the rows given, linear in them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from personaflow.training.models.deepfm import list_ndcg


@dataclass(frozen=True)
class LambdaRankConfig:
    objective: str = "lambdarank"  # or "rank_xendcg" (listwise cross-entropy: linear per list, not pairwise)
    rounds: int = 500  # most boosting rounds; early stopping usually ends far sooner
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 100
    reg_lambda: float = 1.0
    subsample: float = 0.8  # rows per round (bagging every round): alike members make alike errors
    colsample_bytree: float = 0.8
    holdout: float = 0.15  # share of the training lists kept aside for early stopping
    # Rounds without a held-out gain before stopping. 10, not 30: over repeat-buy on Online Retail (the
    # choice's validation fit, 1,738 lists, five members) the members stopped at best rounds 22-53 instead
    # of 71-115 and fitted in 12.9 CPU-s instead of 34.4 (load 12-15 on 2 cores), validation NDCG@10
    # 0.3284 vs 0.3274 (patience 30's gain over it [-0.0040, 0.0022]: a tie). Three members (20.0 CPU-s,
    # 0.3281), learning rate 0.2 (19.5, 0.3269) and 63 bins (29.1, 0.3291) saved less (issue 21: the
    # re-ranker's validation and serving fits had taken 98.7 CPU-s together, over the 60 s bar).
    patience: int = 10
    seed: int = 0
    # One thread: on a loaded 2-core machine LightGBM's two OpenMP threads spin against each other and
    # other jobs (measured on Online Retail's 1,738 lists: 97 s wall, 40 CPU-s on two threads vs 23 s,
    # 10 CPU-s on one, the same trees). 0: every core (os.cpu_count()), for a machine of its own.
    threads: int = 1

    @property
    def n_jobs(self) -> int:
        """The threads a fit runs on: `threads`, or every core for 0."""
        return self.threads or os.cpu_count() or 1


def fit_lambdarank(
    numeric: np.ndarray,
    labels: np.ndarray,
    n_truth: np.ndarray,
    cfg: LambdaRankConfig,
    prior: np.ndarray | None = None,
    categorical: int = 0,
):
    """LambdaRank on (U, N, D) numerics and (U, N) 0/1 labels, one group per list, early-stopped on a
    seeded held-out `cfg.holdout` of the lists. Returns (model, info): info holds the held-out NDCG@10
    of the model and of `prior` (the pool's own order) on the same lists, as fit_deepfm's history does,
    and the best round; model is None when no list has a positive (nothing to learn). The last
    `categorical` columns are integer codes (0 = missing), split on as LightGBM categoricals, not as
    ordered values."""
    from lightgbm import LGBMRanker, early_stopping

    u, n, d = numeric.shape
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(u)
    n_hold = max(1, int(round(cfg.holdout * u))) if u > 1 else 0
    hold, fit = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    fit = fit[labels[fit].sum(1) > 0]  # a list without a positive carries no lambda gradient
    info = {"holdout_ndcg_at_10": 0.0, "holdout_prior_ndcg_at_10": 0.0, "best_round": 0}
    if fit.size == 0 or hold.size == 0:
        return None, info
    model = LGBMRanker(
        objective=cfg.objective,
        n_estimators=cfg.rounds,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        min_child_samples=cfg.min_child_samples,
        reg_lambda=cfg.reg_lambda,
        subsample=cfg.subsample,
        subsample_freq=1,
        colsample_bytree=cfg.colsample_bytree,
        random_state=cfg.seed,
        n_jobs=cfg.n_jobs,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    model.fit(
        numeric[fit].reshape(-1, d),
        labels[fit].reshape(-1).astype(np.int32),
        group=np.full(fit.size, n),
        eval_X=(numeric[hold].reshape(-1, d),),
        eval_y=(labels[hold].reshape(-1).astype(np.int32),),
        eval_group=[np.full(hold.size, n)],
        eval_at=[10],
        callbacks=[early_stopping(cfg.patience, verbose=False)],
        categorical_feature=list(range(d - categorical, d)) if categorical else "auto",
    )
    scores = lambdarank_logits(model, numeric[hold])
    info = {
        "holdout_ndcg_at_10": list_ndcg(scores, labels[hold], n_truth[hold]),
        "holdout_prior_ndcg_at_10": (
            list_ndcg(prior[hold], labels[hold], n_truth[hold]) if prior is not None else 0.0
        ),
        "best_round": int(model.best_iteration_ or cfg.rounds),
    }
    return model, info


def lambdarank_logits(model, numeric: np.ndarray) -> np.ndarray:
    """Scores for (..., D) numerics at the best round, shaped like their leading dims."""
    flat = numeric.reshape(-1, numeric.shape[-1])
    out = model.predict(flat, num_iteration=model.best_iteration_ or None)
    return np.asarray(out, dtype=np.float32).reshape(numeric.shape[:-1])
