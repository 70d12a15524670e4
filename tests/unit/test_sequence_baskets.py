"""Sequence models on basket data: the target is the next order, never the next line of the same order."""

import numpy as np
import pandas as pd

from personaflow.training.data.purchases import split_purchases
from personaflow.training.evaluation.baselines import popularity
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.models.config import FitConfig
from personaflow.training.models.fit import fit_model
from personaflow.training.models.sequence import basket_windows


def test_targets_are_the_next_basket_read_at_each_basket_end():
    tokens = [np.array([1, 2, 3, 4, 5])]
    baskets = [np.array([0, 0, 1, 1, 2])]  # {1, 2} then {3, 4} then {5}
    w = basket_windows(tokens, baskets, max_len=8)
    assert w.inputs.shape == (1, 8) and list(w.inputs[0, -5:]) == [1, 2, 3, 4, 5]
    assert list(w.end_pos) == [4, 6]  # the last line of basket 0 and of basket 1 (left padding 3)
    first = w.targets[w.targets_ptr[0] : w.targets_ptr[1]]
    second = w.targets[w.targets_ptr[1] : w.targets_ptr[2]]
    assert set(first) == {2, 3} and set(second) == {4}  # item indices (token - 1) of the next basket
    # nothing is asked inside a basket: token 1's "next item" 2 is in the same order


def alternating_shop(n_users: int = 240, n_baskets: int = 10, seed: int = 0) -> pd.DataFrame:
    """Each user alternates between two personal baskets (A, B, A, B, ...), one order a day: the next
    order follows from the last one, while the most popular items say nothing about it."""
    rng = np.random.default_rng(seed)
    rows, start = [], pd.Timestamp("2025-01-01")
    for u in range(n_users):
        a, b = rng.choice(40, 3, replace=False), rng.choice(np.arange(40, 80), 3, replace=False)
        offset = int(rng.integers(0, 2))
        for k in range(n_baskets):
            ts = start + pd.Timedelta(days=k, hours=int(rng.integers(8, 18)))
            for item in a if (k + offset) % 2 == 0 else b:
                rows.append((f"u{u}", f"i{item}", ts))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_next_basket_sequence_models_beat_popularity():
    split = split_purchases(alternating_shop(), test_days=1)
    cfg = FitConfig(
        epochs=8, patience=8, val_days=1, dim=16, lr=5e-3, batch_size=32, seed=1, device="cpu", max_len=20
    )
    pop = evaluate(popularity(split), split)["ndcg_at_10"]
    for name in ("gru", "sasrec"):
        fitted = fit_model(name, split, cfg)
        assert evaluate(fitted.scores_fn, split)["ndcg_at_10"] > 2 * pop, name  # and far above it
