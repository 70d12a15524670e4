"""Sequence recommenders over each user's purchase history: SASRec-style self-attention, or a GRU.

Item index 0 is padding (item i of the id map is token i + 1). Sequences are left-padded windows of a
user's purchases in time order; the model predicts the next purchased item at every position with a
full softmax over the catalogue (a few thousand items: cheap, and better than sampled losses). A
user's scores are the logits at the last position of their most recent window.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from training.data.interactions import IdMaps
from training.models.config import FitConfig


class SeqRec(nn.Module):
    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        kind: str = "sasrec",
    ) -> None:
        super().__init__()
        if kind not in ("sasrec", "gru"):
            raise ValueError(f"kind must be 'sasrec' or 'gru', got {kind!r}")
        self.kind, self.max_len, self.heads = kind, max_len, heads
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        if kind == "sasrec":
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim * 2, dropout, batch_first=True, norm_first=True, activation="gelu"
            )
            self.encoder: nn.Module = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.GRU(dim, dim, num_layers=1, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item.weight, std=0.05)

    def _mask(self, seq: torch.Tensor) -> torch.Tensor:
        """Causal + padding mask, each position always seeing itself (so pad rows never go NaN)."""
        length = seq.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        masked = causal[None] | (seq == 0)[:, None, :]
        masked = masked & ~torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        return masked.repeat_interleave(self.heads, dim=0)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, L) token ids -> (batch, L, dim) hidden states."""
        positions = torch.arange(seq.shape[1], device=seq.device)
        x = self.item(seq) * math.sqrt(self.item.embedding_dim)
        if self.kind == "sasrec":
            x = self.drop(x + self.pos(positions)[None])
            h = self.encoder(x, mask=self._mask(seq))
        else:
            h, _ = self.encoder(self.drop(x))
        return self.norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item.weight[1:].T


def user_sequences(train: pd.DataFrame, maps: IdMaps) -> list[np.ndarray]:
    """Per user index: their purchased item tokens (index + 1) in time order (ties by item).

    Rows of the interactions mart without a purchase (views, carts) are left out: the model learns
    what is bought next, which is what it is measured on."""
    if "n_purchases" in train:
        train = train.loc[train["n_purchases"] > 0]
    frame = pd.DataFrame(
        {
            "u": train["user_id"].map(maps.user_index).to_numpy(np.int64),
            "i": train["item_id"].map(maps.item_index).to_numpy(np.int64) + 1,
            "t": pd.to_datetime(train["ts"] if "ts" in train else train["event_date"]).to_numpy(),
        }
    ).sort_values(["u", "t", "i"], kind="stable")
    out = [np.zeros(0, dtype=np.int64)] * maps.n_users
    bounds = np.flatnonzero(np.diff(frame["u"].to_numpy())) + 1
    users = frame["u"].to_numpy()
    for chunk_users, chunk in zip(
        np.split(users, bounds), np.split(frame["i"].to_numpy(), bounds), strict=True
    ):
        if chunk_users.size:
            out[int(chunk_users[0])] = chunk
    return out


def training_windows(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (inputs, targets) windows of length max_len, stepping through long histories."""
    inputs, targets = [], []
    for seq in sequences:
        if seq.size < 2:
            continue
        for end in range(seq.size, 1, -max_len):
            window = seq[max(0, end - max_len - 1) : end]
            pad = max_len + 1 - window.size
            padded = np.concatenate([np.zeros(pad, dtype=np.int64), window])
            inputs.append(padded[:-1])
            targets.append(padded[1:])
    if not inputs:
        raise ValueError("no user has two or more purchases: nothing for a sequence model to learn")
    return np.stack(inputs), np.stack(targets)


def last_windows(sequences: list[np.ndarray], users: np.ndarray, max_len: int) -> np.ndarray:
    """Each user's most recent max_len tokens, left-padded (all zeros for a user with no history)."""
    out = np.zeros((len(users), max_len), dtype=np.int64)
    for row, user in enumerate(users):
        seq = sequences[int(user)][-max_len:]
        if seq.size:
            out[row, -seq.size :] = seq
    return out


class SequenceLearner:
    """fit_model's SASRec / GRU learner: next-item softmax over left-padded purchase windows."""

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
