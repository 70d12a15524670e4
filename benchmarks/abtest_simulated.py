"""Benchmark: `personaflow abtest report` on a simulated run, one where the challenger is truly better
and one where neither is (an A/A test), so the report's real output can be read and cited.

Each simulated user is assigned by the real stable hash (personaflow/experiments/assign.py, share 0.5), gets
one
logged exposure (the real exposure file layout, personaflow/experiments/exposures.py) at a random time over
seven days, and buys one of the recommended items within two hours with the arm's true conversion rate
(10 % control; 13 % or 10 % challenger), at 20.00. Purchases go into a real DuckDB `raw.events`, and
the report is `personaflow.pipeline.abtest.report`, exactly what `personaflow abtest report` prints.
Writes benchmarks/results/abtest_simulated.json.

    .venv/bin/python benchmarks/abtest_simulated.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "abtest_simulated.json"
N_USERS, DAY0 = 8000, pd.Timestamp("2026-11-01")
RUNS = {
    "better_challenger": {"control": 0.10, "challenger": 0.13},
    "a_a": {"control": 0.10, "challenger": 0.10},
}


def simulate(home: Path, experiment: str, rates: dict[str, float], seed: int) -> pd.DataFrame:
    """Exposure files for `experiment` under `home`; returns the purchases they led to."""
    from personaflow.experiments.assign import arm
    from personaflow.experiments.state import exposures_dir

    rng = np.random.default_rng(seed)
    users = [f"{experiment}-u{i}" for i in range(N_USERS)]
    arms = [arm(experiment, u, 0.5) for u in users]
    ts = DAY0 + pd.to_timedelta(rng.integers(0, 7 * 86400, N_USERS), unit="s")
    folder = exposures_dir(home, experiment)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"ts": t.isoformat() + "+00:00", "user_id": u, "arm": a, "model_version": f"model-{a}",
                    "items": ["i1", "i2", "i3"], "status": 200, "latency_ms": float(rng.gamma(4, 4.0))})
        for u, a, t in zip(users, arms, ts, strict=True)
    ]  # fmt: skip
    (folder / "exposures_2026-11-01.jsonl").write_text("\n".join(lines) + "\n")
    bought = rng.random(N_USERS) < np.array([rates[a] for a in arms])
    return pd.DataFrame({
        "user_id": np.array(users)[bought], "item_id": "i1", "event_type": "purchase",
        "event_ts": ts[bought] + pd.Timedelta(hours=2), "quantity": 1, "price": 20.0,
    })  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="personaflow-abtest-sim-") as folder:
        merge_results(RESULTS, run(Path(folder)))


def run(home: Path) -> dict[str, object]:
    os.environ["PERSONAFLOW_HOME"] = str(home)
    from personaflow.core import settings
    from personaflow.pipeline.abtest import report

    s = settings.load()
    runs = enumerate(RUNS.items())
    purchases = pd.concat([simulate(home, name, rates, seed) for seed, (name, rates) in runs])
    s.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(s.warehouse)) as con:
        con.register("purchases", purchases)
        con.execute("create schema raw; create table raw.events as select * from purchases")
    result: dict[str, object] = {"users_per_run": N_USERS, "true_rates": RUNS}
    for name in RUNS:
        answer = report(s, experiment=name)
        print(json.dumps(answer, indent=1, default=str))
        result[name] = json.loads(json.dumps(answer, default=str))
    return result

if __name__ == "__main__":
    main()
