"""Per-segment model metrics (issue 14): users placed in an RFM segment from their training rows only,
and the gate's per-segment NDCG@10 / Recall@10 for the candidate, the best baseline and production."""

from datetime import date, timedelta

import numpy as np
import pandas as pd

from personaflow.training import gate
from personaflow.training.evaluation.baselines import own_history, popularity
from personaflow.training.evaluation.segments import FIRST_TIME, NO_PURCHASE, segments
from tests.unit.test_gate import oracle, shop


def test_segments_come_from_training_rows_at_the_cut():
    cut = date(2026, 11, 30)
    rows = []
    for n in range(10):  # u0..u9: u9 buys most and most recently, u0 least and longest ago
        for d in range(n + 2):
            rows.append((f"u{n}", "i1", cut - timedelta(days=1 + d * (10 - n)), 0, 0, 1))
    rows += [
        ("once", "i1", cut - timedelta(days=3), 0, 0, 1),
        ("browser", "i2", cut - timedelta(days=1), 4, 1, 0),
    ]
    train = pd.DataFrame(
        rows, columns=["user_id", "item_id", "event_date", "n_views", "n_carts", "n_purchases"]
    )
    got = segments(train, pd.Timestamp(cut))
    assert got["u9"] == "Champions" and got["u0"] in {"Lost", "Hibernating"}
    assert got["once"] == FIRST_TIME and got["browser"] == NO_PURCHASE  # views alone are no order
    assert set(got.index) == set(train["user_id"])


def test_the_gate_records_metrics_per_segment_for_every_model():
    split = shop(0)
    perfect = oracle(split)
    bases = {"repeat_buy": own_history(split), "popularity": popularity(split)}
    ev = gate.gate_evidence(perfect, split, bases, popularity(split), production_tag="prod:1", n_boot=50)
    table = ev["gate_segments"]
    assert sum(row["n_users"] for row in table.values()) == ev["gate_n_test_users"] == len(split.test_truth)
    sizes = [row["n_users"] for row in table.values()]
    assert sizes == sorted(sizes, reverse=True) and len(table) > 1
    for name, row in table.items():
        assert set(row) == {"n_users", "candidate", "best_baseline", "production"}, name
        # the oracle ranks every user's hold-out items first: perfect in every segment
        assert row["candidate"]["recall@10"] == 1.0 or row["candidate"]["ndcg@10"] > 0.99, name
        assert row["production"]["ndcg@10"] < row["candidate"]["ndcg@10"], name
    # the per-segment means, weighted by size, give back the overall means
    overall = sum(r["n_users"] * r["best_baseline"]["ndcg@10"] for r in table.values()) / sum(sizes)
    assert np.isclose(overall, ev["gate_best_baseline_ndcg_at_10"], atol=1e-3)
