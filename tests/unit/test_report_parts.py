"""Pieces of the nightly report that need no server: merged calibration bins and the training picture."""

import matplotlib.image as mpimg
import pytest

from personaflow.profiles.churn import merge_sparse_bins
from personaflow.training.report import write_png


def _bin(b, n, predicted, observed):
    return {"bin": b, "lo": b / 10, "hi": (b + 1) / 10, "n": n, "mean_predicted": predicted,
            "observed_rate": observed}  # fmt: skip


def test_calibration_bins_are_merged_until_each_holds_enough_customers():
    rows = [_bin(0, 1, 0.05, 1.0), _bin(1, 0, None, None), _bin(2, 50, 0.25, 0.2), _bin(3, 30, 0.35, 0.3),
            _bin(8, 3, 0.85, 0.0), _bin(9, 2, 0.95, 1.0)]  # fmt: skip
    merged = merge_sparse_bins(rows, min_n=20)
    assert [m["n"] for m in merged] == [51, 35]
    assert (merged[0]["lo"], merged[0]["hi"], merged[1]["hi"]) == (0.0, 0.3, 1.0)
    assert merged[0]["observed_rate"] == pytest.approx((1 * 1.0 + 50 * 0.2) / 51)
    assert merged[1]["mean_predicted"] == pytest.approx((30 * 0.35 + 3 * 0.85 + 2 * 0.95) / 35)
    assert all(m["n"] >= 20 for m in merged)  # no point of the curve rests on one customer
    assert merge_sparse_bins([_bin(4, 3, 0.4, 0.0)]) == [_bin(4, 3, 0.4, 0.0)]  # too few overall: one bin
    assert merge_sparse_bins(rows, min_n=1) == [r for r in rows if r["n"]]


def test_a_model_without_epochs_gets_no_empty_loss_panel(tmp_path):
    table = {"tifu": {"ndcg@10": 0.36, "recall@10": 0.18}}
    alone = mpimg.imread(write_png(tmp_path / "tifu.png", "tifu", table, []))
    history = [{"epoch": e, "loss": 1.0 / (e + 1), "val_ndcg_at_10": 0.1 * e} for e in range(3)]
    both = mpimg.imread(write_png(tmp_path / "bpr.png", "bpr", table, history))
    assert alone.shape[1] < 0.6 * both.shape[1]  # one panel, not a table beside an empty plot
