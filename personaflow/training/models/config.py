"""What every model's fit takes: one FitConfig, and the device it runs on (cuda when present)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    # CPU budget (None: none), in seconds of this process's CPU time per torch thread (what the fit
    # takes alone on the machine). It only refuses: after the first epoch, that epoch's CPU time x the
    # most epochs the fit can run is the estimate, and above the budget the fit raises OverBudget
    # (models/fit.py). It never shortens a fit: `epochs` and `patience` alone decide its length.
    budget_s: float | None = None
    # A shop without re-buys (personaflow/training/evaluation/rebuy.py): validation ranks bought items last
    # too.
    exclude_bought: bool = False
    # torch threads the fit runs on (models/fit.py fit_threads); None: ONE_THREAD models on one, the others
    # on torch's setting; 0: torch's setting
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
