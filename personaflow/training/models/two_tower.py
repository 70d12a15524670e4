"""A two-tower recommender over ids and features: score(u, i) = user_vec(u) · item_vec(i).

Each tower embeds the id, embeds every categorical feature, maps the numeric features linearly, and
sends the concatenation through a small MLP to `dim`; the id embedding is also added to the MLP's output
(a residual), so a user with a long history keeps an MF-like personal vector while a new or thin one
leans on its features. Scores are a plain dot product, so serving uses the precomputed matrices exactly
like matrix factorisation: scores = item_vectors() @ user_vector.

Training is a softmax over items for each (user, bought item) pair. With a catalogue of a few thousand
items the full softmax is cheap and exact (the default); `negatives="in_batch"` uses the other
positives of the batch as negatives with the logQ correction (subtract log of each item's sampling
probability) so popular items are not over-penalised, for catalogues too big for the full softmax.
In a shop without re-buys (`FitConfig.exclude_bought`) the user's other bought items leave the softmax:
serving ranks them last anyway, and as negatives they would teach the user vector to push away the very
taste its purchases share (the model then learns little beyond popularity).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from personaflow.training.data.features import Encoded, FeatureTables, encode
from personaflow.training.data.interactions import positive_pairs
from personaflow.training.evaluation.rebuy import bought_pairs
from personaflow.training.models.config import FitConfig


class Tower(nn.Module):
    def __init__(
        self, n_ids: int, cardinality: tuple[int, ...], n_numeric: int, dim: int, hidden: int
    ) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_ids, dim)
        self.cats = nn.ModuleList(nn.Embedding(size, dim) for size in cardinality)
        self.num = nn.Linear(n_numeric, dim) if n_numeric else None
        width = dim * (1 + len(cardinality) + (1 if n_numeric else 0))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.normal_(self.ids.weight, std=0.1)
        for emb in self.cats:
            nn.init.normal_(emb.weight, std=0.1)

    def forward(self, idx: torch.Tensor, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        own = self.ids(idx)
        parts = [own] + [emb(cat[:, k]) for k, emb in enumerate(self.cats)]
        if self.num is not None:
            parts.append(self.num(num))
        return own + self.mlp(torch.cat(parts, dim=-1))


class TwoTower(nn.Module):
    """Features live in non-persistent buffers: they follow `.to(device)` but stay out of state_dict."""

    def __init__(self, n_users: int, n_items: int, feats: Encoded, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        if feats.user_num.shape[0] != n_users or feats.item_num.shape[0] != n_items:
            raise ValueError(
                f"features cover {feats.user_num.shape[0]} users / {feats.item_num.shape[0]} items; "
                f"the id maps have {n_users} / {n_items}"
            )
        self.user_tower = Tower(n_users, feats.user_cardinality, feats.user_num.shape[1], dim, hidden)
        self.item_tower = Tower(n_items, feats.item_cardinality, feats.item_num.shape[1], dim, hidden)
        for name in ("user_num", "user_cat", "item_num", "item_cat"):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(getattr(feats, name))), False)

    def users(self, idx: torch.Tensor) -> torch.Tensor:
        return self.user_tower(idx, self.user_cat[idx], self.user_num[idx])

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is None:
            idx = torch.arange(self.item_num.shape[0], device=self.item_num.device)
        return self.item_tower(idx, self.item_cat[idx], self.item_num[idx])

    @torch.no_grad()
    def user_vectors(self) -> np.ndarray:
        """(n_users, dim) float32, row i = maps.user_ids[i]."""
        self.eval()
        idx = torch.arange(self.user_num.shape[0], device=self.user_num.device)
        return self.users(idx).float().cpu().numpy()

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32, row i = maps.item_ids[i]."""
        self.eval()
        return self.items().float().cpu().numpy()


def _others(exclude: sp.csr_matrix, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(batch, n_items) bool: what each row's user bought, less the row's own target item."""
    rows = torch.from_numpy(exclude[users.cpu().numpy()].toarray() > 0).to(users.device)
    rows[torch.arange(users.shape[0], device=users.device), items] = False
    return rows


def softmax_epoch(
    model: TwoTower,
    opt: torch.optim.Optimizer,
    users: torch.Tensor,
    items: torch.Tensor,
    batch_size: int,
    temperature: float,
    log_q: torch.Tensor | None = None,
    exclude: sp.csr_matrix | None = None,
) -> float:
    """One pass over (user, item) positives; full softmax, or in-batch with logQ when `log_q` is given;
    `exclude` (users x items, bought): each user's bought items other than the target are no negatives.

    Returns the mean loss per positive. bf16 autocast on cuda; the loss itself is taken in fp32.
    """
    model.train()
    total = 0.0
    for start in range(0, users.shape[0], batch_size):
        u, i = users[start : start + batch_size], items[start : start + batch_size]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=u.is_cuda):
            user_vec = model.users(u)
            if log_q is None:
                logits = (user_vec @ model.items().T).float() / temperature
                target = i
                if exclude is not None:
                    logits = logits.masked_fill(_others(exclude, u, i), float("-inf"))
            else:
                logits = (user_vec @ model.items(i).T).float() / temperature - log_q[i][None, :]
                # the same item twice in a batch is not a negative of itself
                clash = (i[:, None] == i[None, :]) & ~torch.eye(i.shape[0], dtype=torch.bool, device=i.device)
                if exclude is not None:  # another row's item that this row's user bought
                    clash |= _others(exclude, u, i)[:, i]  # (never the diagonal: the own target is left in)
                logits = logits.masked_fill(clash, float("-inf"))
                target = torch.arange(i.shape[0], device=i.device)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * u.shape[0]
    return total / max(users.shape[0], 1)


# two-tower knobs, overridable through FitConfig.extra. Steps are batch_size * batch_scale positives at
# lr * lr_scale: each step runs the whole item tower, so few large steps amortise it (and suffer far less
# from thread contention on shared cores); chosen on validation NDCG on the synthetic shop.
TWO_TOWER_DEFAULTS = {
    "temperature": 1.0, "negatives": "full", "hidden": 128, "weight_decay": 0.0, "lr_scale": 6.0,
    "batch_scale": 4,
}  # fmt: skip
# exclude_bought: a slower, decayed fit. At 6x the re-buy shop's lr the id vectors memorise each user's
# own items within two epochs (validation NDCG peaks at epoch 1, near popularity), and without re-buys
# those are the items serving ranks last.
TWO_TOWER_NO_REBUY = {"lr_scale": 2.0, "weight_decay": 0.3}


class TwoTowerLearner:
    """fit_model's two-tower learner over the split's feature tables."""

    def __init__(self, train, maps, cfg: FitConfig, device: str, tables: FeatureTables) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.users, self.items, weights = positive_pairs(train, maps)
        self.probs = weights / weights.sum()
        self.cfg, self.device = cfg, device
        opts = {**TWO_TOWER_DEFAULTS, **(TWO_TOWER_NO_REBUY if cfg.exclude_bought else {}), **cfg.extra}
        self.temperature = float(opts["temperature"])
        self.log_q = None
        if opts["negatives"] == "in_batch":  # each item's share of the positive stream
            q = np.bincount(self.items, weights=self.probs, minlength=maps.n_items)
            self.log_q = torch.from_numpy(np.log(np.maximum(q, 1e-12))).float().to(device)
        elif opts["negatives"] != "full":
            raise ValueError(f"two_tower: negatives must be 'full' or 'in_batch', got {opts['negatives']!r}")
        self.exclude = bought_pairs(train, maps) if cfg.exclude_bought else None
        feats = encode(tables, maps)
        self.module = TwoTower(maps.n_users, maps.n_items, feats, cfg.dim, int(opts["hidden"])).to(device)
        lr = cfg.lr * float(opts["lr_scale"])  # like BPR's 10x: above the sequence models' shared lr
        self.batch_size = cfg.batch_size * int(opts["batch_scale"])
        decay = float(opts["weight_decay"])
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=lr, weight_decay=decay)

    def epoch(self) -> float:
        # at most max_steps_per_epoch / 8 steps: each runs the whole item tower (measured: 126 s an epoch
        # over retail-30d's 240k pairs on 2 shared cores)
        size = min(self.users.size, self.batch_size * max(1, self.cfg.max_steps_per_epoch // 8))
        pick = self.rng.choice(self.users.size, size=size, p=self.probs)
        u, i = (torch.from_numpy(a[pick]).to(self.device) for a in (self.users, self.items))
        return softmax_epoch(
            self.module, self.opt, u, i, self.batch_size, self.temperature, self.log_q, self.exclude
        )

    @torch.no_grad()
    def scores(self, users: np.ndarray) -> np.ndarray:
        self.module.eval()
        idx = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device)
        return (self.module.users(idx) @ self.module.items().T).float().cpu().numpy()
