"""One training interface for every model: seeded, cuda (bf16 autocast) when present, early stopping.

`fit_model(name, split, config)` carves a validation split from the TRAINING period (the same protocol,
`config.val_days` before the training cut), trains epoch by epoch on the rows before that inner cut,
logs one line per epoch (loss, validation NDCG@10, seconds), keeps the best epoch's weights and stops
after `patience` epochs without improvement. The test window is never looked at.
- BPR-MF and the two-tower model then refit on the whole training period for the best number of epochs
  (user vectors must see the recent weeks); the two-tower model needs a `FeatureSource`: the validation
  learner gets features as of the inner cut, the refit learner features as of the training cut;
- sequence models keep their best weights and score from each user's full training history.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.data import Split
from training.evaluate import ScoresFn, evaluate
from training.feature_tables import FeatureSource, FeatureTables, encode
from training.model import MatrixFactorization
from training.protocol import PurchaseSplit, validation_split
from training.sequence import SeqRec, last_windows, training_windows, user_sequences
from training.train import bpr_epoch, default_device, draw_triples, positive_pairs
from training.two_tower import TwoTower, softmax_epoch

log = logging.getLogger(__name__)
MODELS = ("bpr", "sasrec", "gru", "two_tower")
FEATURE_MODELS = ("two_tower",)  # these need `features=` in fit_model
# two-tower knobs, overridable through FitConfig.extra. Steps are batch_size * batch_scale positives at
# lr * lr_scale: each step runs the whole item tower, so few large steps amortise it (and suffer far less
# from thread contention on shared cores); chosen on validation NDCG on the synthetic shop.
TWO_TOWER_DEFAULTS = {
    "temperature": 1.0, "negatives": "full", "hidden": 128, "weight_decay": 0.0, "lr_scale": 6.0,
    "batch_scale": 4,
}  # fmt: skip


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 30
    patience: int = 3
    val_days: int = 30
    dim: int = 64
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 42
    device: str | None = None
    max_len: int = 50
    layers: int = 2
    dropout: float = 0.2
    reg: float = 1e-4
    # Big shops: BPR's batch grows so an epoch is at most this many optimizer steps (each step updates
    # the whole embedding tables), and early stopping scores a fixed sample of validation users.
    max_steps_per_epoch: int = 400
    val_users: int = 5000
    extra: dict[str, Any] = field(default_factory=dict)


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


class _BPR:
    def __init__(self, train, maps, cfg: FitConfig, device: str) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.users, self.items, weights = positive_pairs(train, maps)
        self.probs = weights / weights.sum()
        self.known = np.sort(self.users * maps.n_items + self.items)
        self.maps, self.cfg, self.device = maps, cfg, device
        self.module = MatrixFactorization(maps.n_users, maps.n_items, cfg.dim).to(device)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr * 10)

    def epoch(self) -> float:
        u, i, j = draw_triples(
            self.rng, self.users, self.items, self.probs, self.maps.n_items, self.known, self.device
        )
        batch = max(self.cfg.batch_size * 16, -(-u.shape[0] // self.cfg.max_steps_per_epoch))
        return bpr_epoch(self.module, self.opt, u, i, j, batch, self.cfg.reg) / u.shape[0]

    @torch.no_grad()
    def scores(self, users: np.ndarray) -> np.ndarray:
        self.module.eval()
        return self.module.score(torch.as_tensor(users)).float().cpu().numpy()


class _TwoTower:
    def __init__(self, train, maps, cfg: FitConfig, device: str, tables: FeatureTables) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.users, self.items, weights = positive_pairs(train, maps)
        self.probs = weights / weights.sum()
        self.cfg, self.device = cfg, device
        opts = {**TWO_TOWER_DEFAULTS, **cfg.extra}
        self.temperature = float(opts["temperature"])
        self.log_q = None
        if opts["negatives"] == "in_batch":  # each item's share of the positive stream
            q = np.bincount(self.items, weights=self.probs, minlength=maps.n_items)
            self.log_q = torch.from_numpy(np.log(np.maximum(q, 1e-12))).float().to(device)
        elif opts["negatives"] != "full":
            raise ValueError(f"two_tower: negatives must be 'full' or 'in_batch', got {opts['negatives']!r}")
        feats = encode(tables, maps)
        self.module = TwoTower(maps.n_users, maps.n_items, feats, cfg.dim, int(opts["hidden"])).to(device)
        lr = cfg.lr * float(opts["lr_scale"])  # like BPR's 10x: above the sequence models' shared lr
        self.batch_size = cfg.batch_size * int(opts["batch_scale"])
        decay = float(opts["weight_decay"])
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=lr, weight_decay=decay)

    def epoch(self) -> float:
        pick = self.rng.choice(self.users.size, size=self.users.size, p=self.probs)
        u, i = (torch.from_numpy(a[pick]).to(self.device) for a in (self.users, self.items))
        return softmax_epoch(self.module, self.opt, u, i, self.batch_size, self.temperature, self.log_q)

    @torch.no_grad()
    def scores(self, users: np.ndarray) -> np.ndarray:
        self.module.eval()
        idx = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device)
        return (self.module.users(idx) @ self.module.items().T).float().cpu().numpy()


class _Seq:
    def __init__(self, train, maps, cfg: FitConfig, device: str, kind: str) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.cfg, self.device, self.maps = cfg, device, maps
        self.inputs, self.targets = training_windows(user_sequences(train, maps), cfg.max_len)
        self.history = user_sequences(train, maps)
        self.module = SeqRec(maps.n_items, cfg.dim, cfg.max_len, cfg.layers, dropout=cfg.dropout, kind=kind)
        self.module.to(device)
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=cfg.lr, weight_decay=0.01)

    def epoch(self) -> float:
        self.module.train()
        order = self.rng.permutation(len(self.inputs))
        total, count = 0.0, 0
        for start in range(0, order.size, self.cfg.batch_size):
            pick = order[start : start + self.cfg.batch_size]
            seq = torch.from_numpy(self.inputs[pick]).to(self.device)
            tgt = torch.from_numpy(self.targets[pick]).to(self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=seq.is_cuda):
                logits = self.module.logits(self.module.encode(seq))
            keep = tgt > 0
            loss = F.cross_entropy(logits[keep].float(), tgt[keep] - 1)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), 1.0)
            self.opt.step()
            total += float(loss.detach()) * int(keep.sum())
            count += int(keep.sum())
        return total / max(count, 1)

    @torch.no_grad()
    def scores(self, users: np.ndarray) -> np.ndarray:
        self.module.eval()
        seq = torch.from_numpy(last_windows(self.history, np.asarray(users), self.cfg.max_len)).to(
            self.device
        )
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=seq.is_cuda):
            logits = self.module.logits(self.module.encode(seq)[:, -1])
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()


def _learner(name: str, train, maps, cfg: FitConfig, device: str, tables: FeatureTables | None = None):
    if name == "bpr":
        return _BPR(train, maps, cfg, device)
    if name == "two_tower":
        return _TwoTower(train, maps, cfg, device, tables)
    if name in ("sasrec", "gru"):
        return _Seq(train, maps, cfg, device, name)
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
    device = cfg.device or default_device()
    torch.manual_seed(cfg.seed)
    val = validation_view(split, cfg.val_days)
    # point in time: the validation learner sees features as of the inner cut only
    val_tables = features(val) if name in FEATURE_MODELS else None
    learner = _learner(name, val.train, split.maps, cfg, device, val_tables)
    val_sample = _sample_users(val, cfg.val_users, cfg.seed)
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, waited = -1.0, 0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        loss = learner.epoch()
        ndcg = evaluate(learner.scores, val_sample)["ndcg_at_10"]
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
    if name in ("bpr", "two_tower"):  # refit on the whole training period for the chosen number of epochs
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
