"""Matrix factorisation scored as u·v + b_item (the user bias cancels out in a per-user ranking)."""

from __future__ import annotations

import torch
from torch import nn


class MatrixFactorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 64) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1 or dim < 1:
            raise ValueError(f"need n_users, n_items, dim >= 1; got {n_users}, {n_items}, {dim}")
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        # Small init keeps the first BPR margins near zero so the loss starts at ~log(2).
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    @property
    def dim(self) -> int:
        return self.user_emb.embedding_dim

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Score aligned (user, item) pairs."""
        dot = (self.user_emb(users) * self.item_emb(items)).sum(dim=-1)
        return dot + self.item_bias(items).squeeze(-1)

    @torch.no_grad()
    def score(self, user_idx: torch.Tensor | int) -> torch.Tensor:
        """Scores over all items: shape (n_items,) for one user, (n_users_given, n_items) for many."""
        users = torch.as_tensor(user_idx, device=self.user_emb.weight.device)
        out = self.user_emb(users) @ self.item_emb.weight.T + self.item_bias.weight.squeeze(-1)
        return out
