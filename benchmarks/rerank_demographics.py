"""Benchmark: do demographics pay as re-ranker features on The Complete Journey (../shared/data/)?

The nightly choice (personaflow/training/choice.py) on the real log, with the shop's customer table: the
retrieval options, the DeepFM re-ranker over the chosen one, and the same re-ranker trained again with
each household's age, income and household bands as of the cut (training/data/features.py
`with_demographics`). Demographics are kept only when the paired bootstrap 95 % interval of their
validation NDCG@10 gain over the re-ranker without them is above 0, as churn keeps them
(profiles/churn.py). The protocol is recipe_choice.py's: the last 30 days are the test window, the 30
before them the validation window; features from each split's own training rows and the catalogue
(department as category, brand).

The re-ranker (an ensemble of 5 DeepFMs and trees, trained twice here) is too slow on all 2,469
households on 2 shared cores, so it runs on a seeded random subsample of households (`--households`,
all their purchases), which keeps the share with demographics (about a third) as in the whole set;
the retrieval options are the two floor ones (popularity, repeat-buy: the set re-buys 41 % of lines).
Writes benchmarks/results/rerank_demographics.json.

    make bench-rerank-demographics        # ARGS="--households 1500"
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import PeakRss, write_results  # noqa: E402
from recipe_choice import load_purchases  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "rerank_demographics.json"
DATA = ROOT.parent / "shared" / "data" / "complete-journey"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--options", default="popularity,repeat_buy")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    from personaflow.ingest.customers import customer_mapping, read_customers
    from personaflow.training.choice import RERANK, RERANK_DEMOGRAPHICS, choose
    from personaflow.training.data.features import purchases_source
    from personaflow.training.data.purchases import split_purchases
    from personaflow.training.evaluation.baselines import popularity_ranking
    from personaflow.training.evaluation.metrics import evaluate
    from personaflow.training.evaluation.rebuy import decide_exclusion
    from personaflow.training.recipe import Recipe
    from personaflow.training.registry.loading import LoadedModel

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(os.cpu_count() or 1)
    load = os.getloadavg()[0]
    purchases = load_purchases("complete-journey", DATA)
    households = np.sort(purchases["user_id"].unique())
    rng = np.random.default_rng(args.seed)
    picked = set(rng.choice(households, size=min(args.households, len(households)), replace=False))
    purchases = purchases[purchases["user_id"].isin(picked)].reset_index(drop=True)
    customers, _ = read_customers(
        DATA / "demographics.parquet", customer_mapping("complete-journey-customers")
    )
    products = pd.read_parquet(DATA / "products.parquet", columns=["product_id", "department", "brand"])
    catalogue = pd.DataFrame(
        {"category": products["department"].to_numpy(), "brand": products["brand"].to_numpy()},
        index=products["product_id"].astype(str),
    )
    split = split_purchases(purchases, args.test_days)
    exclude, rate = decide_exclusion(split)
    base = Recipe(epochs=20, dim=64, seed=args.seed, val_days=args.test_days, exclude_bought=exclude)
    options = tuple(args.options.split(","))
    started, cpu = time.perf_counter(), time.process_time()
    with PeakRss() as rss:
        choice = choose(split, base, purchases_source(catalogue), options=options, customers=customers)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    served = LoadedModel.of(choice.built.exported, split.maps, popularity_ranking(split))
    test = evaluate(served.scores, split)
    rows, comparisons = choice.report["options"], choice.report["comparisons"]
    demo = comparisons.get(RERANK_DEMOGRAPHICS, {})
    out: dict[str, object] = {
        "data": "The Complete Journey 2.0 (complete-journey/), a household subsample",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "measured_at": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine_idle": load < 0.5 * (os.cpu_count() or 1),
        "load_avg_1m_at_start": round(load, 2),
        "households_in_set": len(households),
        "households_sampled": len(picked),
        "households_sampled_with_demographics": len(picked & set(customers["user_id"])),
        "sample_seed": args.seed,
        "protocol": f"time cut: last {args.test_days} days test, the {args.test_days} before them validation",
        "retrieval_options": ",".join(options),
        "repeat_rate": round(rate, 4),
        **{k: v for k, v in split.sizes().items()},
        "val_users": choice.report["val_users"],
        "rule": "demographics kept only if the paired bootstrap 95% interval of the validation NDCG@10 gain "
        "of the re-ranker with them over it without them is above 0 (and the gain above 0.002)",
        "chosen": choice.report["chosen"],
        "reason": choice.report["reason"],
        "demographics_pay": bool(demo.get("pays", False)),
        "chosen_test_ndcg_at_10": round(test["ndcg_at_10"], 4),
        "choose_wall_s": round(wall, 1),
        "choose_cpu_s": round(cpu, 1),
        "peak_rss_mb": round(rss.peak, 1),
    }
    for name, row in rows.items():
        key = name.replace("+", "_with_")
        out[f"{key}_status"] = row["status"]
        score = row["val_ndcg_at_10"]
        out[f"{key}_val_ndcg_at_10"] = None if score is None else round(score, 4)
        out[f"{key}_fit_wall_s"] = row["fit_wall_s"]
        if row.get("note"):
            out[f"{key}_note"] = row["note"]
    for k, v in demo.items():
        if k != "pays":
            out[f"demographics_{k.replace('vs_rerank_', 'val_ndcg_at_10_')}"] = (
                round(v, 4) if isinstance(v, float) else v
            )
    for k, v in comparisons.get(RERANK, {}).items():
        out[f"rerank_{k}"] = round(v, 4) if isinstance(v, float) else v
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
