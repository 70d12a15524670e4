"""BPR training for the matrix factorisation model, in whole vectorised batches."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from training.data import IdMaps, Split
from training.model import MatrixFactorization

log = logging.getLogger(__name__)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def positive_pairs(train: pd.DataFrame, maps: IdMaps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user_idx, item_idx) pairs with their summed interaction weight (> 0 only)."""
    grouped = train.groupby(["user_id", "item_id"], sort=True, observed=True)["weight"].sum().reset_index()
    grouped = grouped[grouped["weight"] > 0]
    users = grouped["user_id"].map(maps.user_index)
    items = grouped["item_id"].map(maps.item_index)
    if users.isna().any() or items.isna().any():
        bad = grouped.loc[users.isna() | items.isna(), ["user_id", "item_id"]].iloc[0].to_dict()
        raise ValueError(f"training pair {bad} is missing from the id maps")
    return (
        users.to_numpy(np.int64),
        items.to_numpy(np.int64),
        grouped["weight"].to_numpy(np.float64),
    )


def _negatives(rng: np.random.Generator, users: np.ndarray, n_items: int, known: np.ndarray) -> np.ndarray:
    """Uniform negatives; one re-draw for those that hit a known positive (cheap, removes most)."""
    neg = rng.integers(0, n_items, size=users.shape[0])
    clash = np.isin(users * n_items + neg, known)
    if clash.any():
        neg[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    return neg


def bpr_epoch(
    model: MatrixFactorization,
    opt: torch.optim.Optimizer,
    u_t: torch.Tensor,
    i_t: torch.Tensor,
    j_t: torch.Tensor,
    batch_size: int,
    reg: float,
) -> float:
    """One pass over pre-drawn (user, positive, negative) triples; returns the summed loss.

    On cuda the forward pass runs under bf16 autocast (no loss scaling needed); on CPU in fp32.
    """
    model.train()
    total = 0.0
    amp = u_t.is_cuda
    for start in range(0, u_t.shape[0], batch_size):
        u, i, j = (
            u_t[start : start + batch_size],
            i_t[start : start + batch_size],
            j_t[start : start + batch_size],
        )
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            margin = model(u, i) - model(u, j)
            penalty = (
                model.user_emb(u).pow(2).sum()
                + model.item_emb(i).pow(2).sum()
                + model.item_emb(j).pow(2).sum()
            ) / u.shape[0]
            loss = -F.logsigmoid(margin.float()).mean() + reg * penalty.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * u.shape[0]
    return total


def draw_triples(
    rng: np.random.Generator,
    users: np.ndarray,
    items: np.ndarray,
    probs: np.ndarray,
    n_items: int,
    known: np.ndarray,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's positives (weighted by interaction strength) and uniform negatives, on `device`."""
    pick = rng.choice(users.size, size=users.size, p=probs)
    u_all, i_all = users[pick], items[pick]
    j_all = _negatives(rng, u_all, n_items, known)
    return tuple(torch.from_numpy(a).to(device) for a in (u_all, i_all, j_all))  # type: ignore[return-value]


def fit_bpr(
    split: Split,
    dim: int = 64,
    epochs: int = 20,
    lr: float = 0.01,
    batch_size: int = 4096,
    seed: int = 42,
    device: str | None = None,
    reg: float = 1e-4,
) -> tuple[MatrixFactorization, list[dict[str, float]]]:
    """Fit BPR-MF on `split.train`; positives drawn in proportion to their interaction weight.

    One epoch draws as many positives as there are distinct (user, item) pairs. Returns the model (on
    CPU, eval mode) and one history row per epoch: {"epoch", "loss", "seconds"}.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    device = device or default_device()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    maps = split.maps
    users, items, weights = positive_pairs(split.train, maps)
    if users.size == 0:
        raise ValueError("no positive (user, item) pairs with weight > 0 in the training frame")
    probs = weights / weights.sum()
    known = np.sort(users * maps.n_items + items)

    model = MatrixFactorization(maps.n_users, maps.n_items, dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict[str, float]] = []
    n = users.size
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        u_t, i_t, j_t = draw_triples(rng, users, items, probs, maps.n_items, known, device)
        total = bpr_epoch(model, opt, u_t, i_t, j_t, batch_size, reg)
        row = {"epoch": float(epoch), "loss": total / n, "seconds": time.perf_counter() - started}
        history.append(row)
        log.info("bpr epoch %d/%d loss=%.4f (%.2fs, %s)", epoch, epochs, row["loss"], row["seconds"], device)
    model.eval()
    return model.cpu(), history
