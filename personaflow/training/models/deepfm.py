"""DeepFM (Guo et al., 2017) for re-ranking candidate lists, in PyTorch.

Inputs per row (one (user, candidate) pair): `cat` (F,) integer codes, one per field (code 0 = missing;
each field owns a slice of one shared embedding table via offsets), and `dense` (D,) standardised
numerics. Every numeric feature is fed twice, by design: bucketised into a categorical field (so the
FM can cross "bought 3 times" with "this category" like any other field) and as a dense value into the
first-order and deep parts (so fine-grained order inside a bucket is not lost).

    logit = b + sum_f w[f, code_f] + w_d . dense                       first order
          + 1/2 sum_k ((sum_f v_fk)^2 - sum_f v_fk^2)                  FM second order
          + MLP([v_1, ..., v_F, dense])                                deep part, same embeddings

Training is per user list: a batch is `batch_users` whole candidate lists; the default loss is a
listwise softmax cross-entropy over each list's candidates (multi-positive: the mean over positives),
`loss="bce"` gives pointwise logistic loss. Early stopping on NDCG@10 of a held-out slice of users.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class _Lookup(torch.autograd.Function):
    """`weight[idx]` whose backward is one `index_add_`: on CPU about 4x faster than the embedding's
    own backward (which sorts the indices), and that backward was a quarter of a re-ranker step."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.rows = weight.shape[0]
        return weight[idx]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        out = torch.zeros(ctx.rows, grad.shape[-1], dtype=grad.dtype, device=grad.device)
        out.index_add_(0, idx.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        return out, None


class DeepFM(nn.Module):
    def __init__(
        self,
        cardinalities: tuple[int, ...],
        n_dense: int,
        dim: int = 16,
        hidden: tuple[int, ...] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.as_tensor(offsets))
        self.dim = dim
        # one table: columns [0, dim) are the FM/deep vectors, column `dim` the first-order weight (one
        # lookup and one backward instead of two)
        self.emb = nn.Parameter(torch.cat([torch.randn(int(sum(cardinalities)), dim) * 0.01,
                                           torch.zeros(int(sum(cardinalities)), 1)], dim=1))  # fmt: skip
        self.dense_first = nn.Linear(n_dense, 1) if n_dense else None
        # the deep part's first layer split by input (vectors, numerics): no concatenated copy per step
        self.deep_v = nn.Linear(len(cardinalities) * dim, hidden[0])
        self.deep_d = nn.Linear(n_dense, hidden[0], bias=False) if n_dense else None
        layers: list[nn.Module] = []
        width = hidden[0]
        for size in (*hidden[1:], 1):
            layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, size)]
            width = size
        self.mlp = nn.Sequential(*layers)

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """cat (B, F) int64, dense (B, D) float -> logits (B,)."""
        e = _Lookup.apply(self.emb, cat + self.offsets)  # (B, F, dim + 1)
        v = e[..., : self.dim]
        first = e[..., self.dim].sum(1)
        hidden = self.deep_v(v.reshape(v.shape[0], -1))
        if self.dense_first is not None:
            first = first + self.dense_first(dense).squeeze(-1)
            hidden = hidden + self.deep_d(dense)
        second = 0.5 * (v.sum(1).pow(2).sum(-1) - v.pow(2).sum((1, 2)))
        return first + second + self.mlp(hidden).squeeze(-1)


@dataclass(frozen=True)
class DeepFMConfig:
    epochs: int = 30
    patience: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-5
    dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    batch_users: int = 64
    holdout: float = 0.15  # share of training users kept aside for early stopping
    loss: str = "bce"  # or "listwise" (measured on the synthetic shop: equal within noise, bce steadier)
    seed: int = 42
    device: str | None = None


@dataclass(frozen=True)
class Lists:
    """Candidate lists: U users x N candidates. n_truth = the user's whole truth size (NDCG's ideal)."""

    cat: np.ndarray  # (U, N, F) int64
    dense: np.ndarray  # (U, N, D) float32
    labels: np.ndarray  # (U, N) float32, 1 = bought in the window
    n_truth: np.ndarray  # (U,) int64


def list_ndcg(scores: np.ndarray, labels: np.ndarray, n_truth: np.ndarray, k: int = 10) -> float:
    """Mean binary NDCG@k of each list ranked by `scores`, the ideal counting truth outside the list."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    gains = np.take_along_axis(labels, top, axis=1) / np.log2(np.arange(2, top.shape[1] + 2))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_truth, k), 1, k) - 1]
    return float((gains.sum(axis=1) / ideal).mean()) if len(scores) else 0.0


def _device(cfg: DeepFMConfig) -> str:
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict(model: DeepFM, cat: np.ndarray, dense: np.ndarray, batch_rows: int = 65_536) -> np.ndarray:
    """Logits for (..., F) codes and (..., D) numerics, shaped like their leading dims."""
    model.eval()
    device = next(model.parameters()).device
    lead = cat.shape[:-1]
    cat2, dense2 = cat.reshape(-1, cat.shape[-1]), dense.reshape(-1, dense.shape[-1])
    out = np.empty(cat2.shape[0], dtype=np.float32)
    for start in range(0, cat2.shape[0], batch_rows):
        c = torch.from_numpy(cat2[start : start + batch_rows]).to(device)
        d = torch.from_numpy(dense2[start : start + batch_rows]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=c.is_cuda):
            out[start : start + batch_rows] = model(c, d).float().cpu().numpy()
    return out.reshape(lead)


def _loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    keep = labels.sum(1) > 0  # a list without a positive says nothing about the order inside it
    logp = torch.log_softmax(logits[keep], dim=1)
    lab = labels[keep]
    return -((lab * logp).sum(1) / lab.sum(1)).mean()


def fit_deepfm(
    data: Lists, cardinalities: tuple[int, ...], cfg: DeepFMConfig, prior: np.ndarray | None = None
) -> tuple[DeepFM, list[dict]]:
    """Train on all but a held-out slice of users; keep the epoch with the best held-out NDCG@10.

    `prior` (U, N): a fixed ordering of the same lists (e.g. the repeat-buy order); its NDCG@10 on the
    same held-out users is logged in every history entry, so the caller can tell whether DeepFM helps.
    """
    if cfg.loss not in ("listwise", "bce"):
        raise ValueError(f"DeepFMConfig.loss must be 'listwise' or 'bce', got {cfg.loss!r}")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = _device(cfg)
    users = rng.permutation(len(data.labels))
    n_hold = max(1, int(round(cfg.holdout * users.size)))
    hold, fit = users[:n_hold], users[n_hold:]
    if cfg.loss == "listwise":  # lists without a positive carry no listwise gradient: skip them
        fit = fit[data.labels[fit].sum(1) > 0]
    if fit.size == 0:
        raise ValueError("no training list with a positive candidate: cannot fit the re-ranker")
    prior_ndcg = list_ndcg(prior[hold], data.labels[hold], data.n_truth[hold]) if prior is not None else None
    model = DeepFM(cardinalities, data.dense.shape[-1], cfg.dim, cfg.hidden, cfg.dropout).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_fields = data.cat.shape[-1]
    history: list[dict] = []
    best, best_state, waited = -1.0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        order = fit[rng.permutation(fit.size)]
        for start in range(0, order.size, cfg.batch_users):
            pick = order[start : start + cfg.batch_users]
            cat = torch.from_numpy(data.cat[pick].reshape(-1, n_fields)).to(device)
            dense = torch.from_numpy(data.dense[pick].reshape(len(pick) * data.cat.shape[1], -1)).to(device)
            labels = torch.from_numpy(data.labels[pick]).to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cat.is_cuda):
                logits = model(cat, dense).float().view(len(pick), -1)
            loss = _loss(logits, labels, cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, batches = total + float(loss.detach()), batches + 1
        scores = predict(model, data.cat[hold], data.dense[hold])
        ndcg = list_ndcg(scores, data.labels[hold], data.n_truth[hold])
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": total / max(batches, 1), "holdout_ndcg_at_10": ndcg,
                        "holdout_prior_ndcg_at_10": prior_ndcg, "seconds": seconds})  # fmt: skip
        log.info("deepfm epoch %d/%d loss=%.4f holdout_ndcg@10=%.4f (prior %s) (%.1fs, %s)",
                 epoch, cfg.epochs, history[-1]["loss"], ndcg,
                 "-" if prior_ndcg is None else f"{prior_ndcg:.4f}", seconds, device)  # fmt: skip
        if ndcg > best:
            best, best_state, waited = ndcg, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model, history
