"""Which recipe the nightly choice (personaflow/training/choice.py) picks on real shops, and why.

On Online Retail (the retail-30d protocol: the last 30 days are the test window, the 30 before them
the validation window) and, with `--data complete-journey`, on The Complete Journey (grocery, the same
protocol), it fits every option (popularity, repeat-buy, TIFU-KNN, item-kNN, SASRec, and the DeepFM
re-ranker over the best retrieval), scores each on the validation window, applies the rules and
records per option the validation NDCG@10, fit CPU and wall seconds and status; then the chosen
recipe's NDCG@10 on the test window (never used by the choice) beside the baselines' for context.

Writes benchmarks/results/recipe_choice.json (merged: one data set's run keeps the other's keys):
`<data>_chosen`, `<data>_reason`, `<data>_<option>_val_ndcg_at_10`, `<data>_<option>_fit_cpu_s`,
`<data>_<option>_fit_wall_s`, `<data>_<option>_status`, `<data>_chosen_test_ndcg_at_10`,
`<data>_<baseline>_test_ndcg_at_10`, `<data>_choose_wall_s`, `<data>_choose_cpu_s`, sizes, `cores`,
`torch_threads`, `load_avg_1m_before`, `machine_idle` (that load below half the cores).

    make bench-recipe                                   # Online Retail
    make bench-recipe ARGS="--data complete-journey"    # The Complete Journey
    make bench-recipe ARGS="--options popularity,repeat_buy,tifu,item_knn"   # without SASRec (slow)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import merge_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "recipe_choice.json"
PATHS = {
    "online-retail": ROOT.parent / "shared" / "data" / "online-retail",
    "complete-journey": ROOT.parent / "shared" / "data" / "complete-journey",
}


def load_purchases(data: str, path: Path):
    """(user_id, item_id, ts) purchase rows of a real shop."""
    import pandas as pd

    from personaflow.training.data.purchases import load_online_retail

    if data == "online-retail":
        return load_online_retail(path)
    lines = pd.read_parquet(
        path / "transactions.parquet",
        columns=["household_id", "product_id", "quantity", "transaction_timestamp"],
    )
    lines = lines[lines["quantity"] > 0]
    return pd.DataFrame(
        {
            "user_id": lines["household_id"].astype(str),
            "item_id": lines["product_id"].astype(str),
            "ts": lines["transaction_timestamp"],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", choices=sorted(PATHS), default="online-retail")
    parser.add_argument(
        "--path", type=Path, default=None, help="the data folder (default: ../shared/data/...)"
    )
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20, help="most epochs per learned option")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-rerank", action="store_true", help="leave the re-ranker option out")
    parser.add_argument(
        "--options", default=None, help="comma list of options to fit (default: all of choice.OPTIONS)"
    )
    args = parser.parse_args()

    import torch

    from personaflow.training.choice import OPTIONS, choose
    from personaflow.training.data.features import purchases_source
    from personaflow.training.data.purchases import split_purchases
    from personaflow.training.evaluation.baselines import popularity_ranking
    from personaflow.training.evaluation.metrics import evaluate
    from personaflow.training.evaluation.rebuy import decide_exclusion
    from personaflow.training.recipe import BASELINES, Recipe, build
    from personaflow.training.registry.loading import LoadedModel

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    split = split_purchases(load_purchases(args.data, args.path or PATHS[args.data]), args.test_days)
    exclude, rate = decide_exclusion(split)
    base = Recipe(epochs=args.epochs, dim=64, seed=args.seed, val_days=args.test_days, exclude_bought=exclude)
    cpu, wall = time.process_time(), time.perf_counter()
    options = tuple(args.options.split(",")) if args.options else OPTIONS
    choice = choose(split, base, purchases_source(None), rerank=not args.no_rerank, options=options)
    choose_cpu, choose_wall = time.process_time() - cpu, time.perf_counter() - wall
    popular = popularity_ranking(split)

    def test_ndcg(exported) -> float:
        return evaluate(LoadedModel.of(exported, split.maps, popular).scores, split)["ndcg_at_10"]

    key = args.data.replace("-", "_")
    result: dict[str, object] = {
        f"{key}_chosen": choice.report["chosen"],
        f"{key}_reason": choice.report["reason"],
        f"{key}_chosen_test_ndcg_at_10": round(test_ndcg(choice.built.exported), 4),
        f"{key}_choose_wall_s": round(choose_wall, 1),
        f"{key}_choose_cpu_s": round(choose_cpu, 1),
        f"{key}_val_users": choice.report["val_users"],
        f"{key}_repeat_rate": round(rate, 4),
        f"{key}_exclude_bought": exclude,
        f"{key}_budget_cpu_s": choice.report["budget_cpu_s"],
        f"{key}_options_fitted": ",".join(options),
        **{f"{key}_{k}": v for k, v in split.sizes().items()},
    }
    for name, row in choice.report["options"].items():
        result[f"{key}_{name}_status"] = row["status"]
        result[f"{key}_{name}_val_ndcg_at_10"] = (
            None if row["val_ndcg_at_10"] is None else round(row["val_ndcg_at_10"], 4)
        )
        result[f"{key}_{name}_fit_cpu_s"] = row["fit_cpu_s"]
        result[f"{key}_{name}_fit_wall_s"] = row["fit_wall_s"]
        for part in ("serve_fit_cpu_s", "serve_fit_wall_s"):  # the re-ranker's serving fit, once kept
            if part in row:
                result[f"{key}_{name}_{part}"] = row[part]
        if row.get("note"):
            result[f"{key}_{name}_note"] = row["note"]
    for name in BASELINES:  # context on the test window: what the gate will compare the choice with
        built = build(Recipe(name, val_days=args.test_days, exclude_bought=exclude), split)
        result[f"{key}_{name}_test_ndcg_at_10"] = round(test_ndcg(built.exported), 4)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    shops = sorted({*str(previous.get("data", "")).split(", "), args.data} - {""})
    result.update(
        data=", ".join(shops),
        protocol=f"time cut: last {args.test_days} days test, the {args.test_days} before them validation",
        cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        load_avg_1m_before=round(load_before, 2),
        machine_idle=load_before < 0.5 * (os.cpu_count() or 1),  # other jobs' load below half the cores
    )
    print(json.dumps(result, indent=2))
    # this shop's keys are this run's alone: an option left out of it (--options) or a row without a note
    # this time must not keep an earlier run's figures beside the new ones
    merge_results(RESULTS, result, replacing=(f"{key}_",))


if __name__ == "__main__":
    main()
