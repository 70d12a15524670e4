"""Does a repurchase cadence pay (issue 21, item 4; personaflow/training/evaluation/cadence.py)?

On a real shop, the retail-30d protocol (the last 30 days test, the 30 before them validation):
1. the cheap retrieval: repeat_cadence (repeat-buy x (1 + weight x due), the weight chosen on the
   validation view) against repeat-buy, validation and test NDCG@10 overall, on repeat items and on
   explore items, with the paired bootstrap 95 % interval of the per-user gain, and the fit's CPU s;
   then (unless `--no-choose`) the nightly choice (training/choice.py) over popularity, repeat_buy and
   repeat_cadence (`--choose-options` adds tifu, item_knn): which it picks and why.
2. (`--rerank`) the re-ranker over TIFU-KNN (or `--retrieval repeat_buy`) with and without the cadence
   cross features in its pools, trained at the validation cut and scored on the validation view (what
   the choice compares), and trained as the night does and scored on the test window. `--ensemble`
   lowers the DeepFMs averaged (the night's default is 5; the figures say which was used) to keep the
   comparison affordable.

The validation figures of repeat_cadence use the weight tuned on that same view (as TIFU-KNN's are in the
choice): they are the choice's numbers, optimistic for the tuned model; the test window decides.

Writes benchmarks/results/cadence.json (merged: one shop's run keeps the other's keys), flat keys
`<shop>_<model>_<val|test>_<ndcg|repeat_ndcg|explore_ndcg>_at_10`,
`<shop>_<model>_fit_cpu_s`, `<shop>_cadence_<val|test>_gain_ndcg_at_10[_ci_low|_ci_high]`,
`<shop>_cadence_w<weight>_<val|test>_ndcg_at_10` (every weight of the grid, `0_5` = 0.5),
`<shop>_rerank_cadence_...` with `--rerank`, sizes, `cores`, `load_avg_1m_before`, `machine_idle`.

    make bench-cadence                                  # Online Retail
    make bench-cadence ARGS="--data complete-journey"   # The Complete Journey (grocery)
    make bench-cadence ARGS="--rerank --ensemble 1 --no-choose"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import merge_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cadence.json"
RETAIL = ROOT.parent / "shared" / "data" / "online-retail"
N_BOOT = 1000


def load(data: str):
    from _datasets import CJ_MIN_HOUSEHOLDS, load_complete_journey

    from personaflow.training.data.purchases import load_online_retail

    if data == "online-retail":
        return load_online_retail(RETAIL), "UCI Online Retail, cleaned (data/purchases.py load_online_retail)"
    kept = f"products bought by >= {CJ_MIN_HOUSEHOLDS} households (benchmarks/_datasets.py)"
    return load_complete_journey(), f"The Complete Journey, {kept}"


def _parts(per_user: dict, prefix: str) -> dict[str, float]:
    import numpy as np

    out = {}
    for name in ("ndcg", "repeat_ndcg", "explore_ndcg"):
        values = per_user[f"{name}_at_10"]
        scored = ~np.isnan(values)
        out[f"{prefix}_{name}_at_10"] = round(float(values[scored].mean()), 4) if scored.any() else None
    return out


def _gain(with_: dict, without: dict, prefix: str, seed: int) -> dict[str, float]:
    from personaflow.training.evaluation.bootstrap import paired_bootstrap

    gain = paired_bootstrap(with_["ndcg_at_10"], without["ndcg_at_10"], n_boot=N_BOOT, seed=seed)
    return {
        f"{prefix}_gain_ndcg_at_10": round(gain["gain"], 4),
        f"{prefix}_gain_ndcg_at_10_ci_low": round(gain["gain_ci_low"], 4),
        f"{prefix}_gain_ndcg_at_10_ci_high": round(gain["gain_ci_high"], 4),
    }


def _write(result: dict, args: argparse.Namespace, key: str, started: float, load_before: float) -> None:
    import torch

    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    shops = sorted({*str(previous.get("data", "")).split(", "), args.data} - {""})
    result.update(
        {
            f"{key}_wall_s": round(time.perf_counter() - started, 1),
            "data": ", ".join(shops),
            "protocol": f"time cut: last {args.test_days} days test, the {args.test_days} before them "
            "validation",
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            f"{key}_load_avg_1m_before": round(load_before, 2),
            # other jobs' load below half the cores when the run started
            f"{key}_machine_idle": load_before < 0.5 * (os.cpu_count() or 1),
        }
    )
    print(json.dumps(result, indent=2))
    merge_results(RESULTS, result)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", choices=("online-retail", "complete-journey"), default="online-retail")
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-choose", action="store_true", help="skip the choice over sparse options")
    parser.add_argument(
        "--choose-options", default="popularity,repeat_buy,repeat_cadence",
        help="the choice's options (add tifu,item_knn for the whole sparse set: minutes more)",
    )
    parser.add_argument("--rerank", action="store_true", help="also the re-ranker with and without cadence")
    parser.add_argument(
        "--retrieval", default="tifu", choices=("tifu", "repeat_buy"),
        help="the re-ranker's retrieval in --rerank (the night's on Online Retail: tifu)",
    )
    parser.add_argument("--ensemble", type=int, default=1, help="DeepFMs averaged in --rerank (night: 5)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from personaflow.training.evaluation.baselines import SparseScores, popularity_ranking
    from personaflow.training.evaluation.cadence import WEIGHTS, cadence_parts, cadence_table
    from personaflow.training.evaluation.metrics import evaluate, per_user_metrics
    from personaflow.training.evaluation.rebuy import bought_matrix, decide_exclusion, excluding
    from personaflow.training.models.fit import validation_view
    from personaflow.training.recipe import Recipe, build
    from personaflow.training.registry.loading import LoadedModel

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    purchases, described = load(args.data)
    from personaflow.training.data.purchases import split_purchases

    split = split_purchases(purchases, args.test_days)
    exclude, rate = decide_exclusion(split)
    val = validation_view(split, args.test_days)
    bought = bought_matrix(val) if exclude else None
    popular = popularity_ranking(split)
    key = args.data.replace("-", "_")
    result: dict[str, object] = {
        f"{key}_data": described,
        f"{key}_repeat_rate": round(rate, 4),
        f"{key}_exclude_bought": exclude,
        f"{key}_val_users": len(val.test_truth),
        **{f"{key}_{k}": v for k, v in split.sizes().items()},
    }
    cad = cadence_table(split)
    result.update(
        {
            f"{key}_bought_pairs": int(cad.n_days.size),
            f"{key}_pairs_with_rhythm_share": round(float((cad.n_days >= 2).mean()), 4),
            f"{key}_median_interval_days": round(float(np.nanmedian(cad.interval)), 1),
            f"{key}_cadence_sigma_log_days": round(cad.sigma, 4),
            f"{key}_cadence_horizon_days": round(cad.horizon, 2),
        }
    )

    per_user: dict[str, dict[str, dict]] = {}
    for name in ("repeat_buy", "repeat_cadence"):
        cpu, wall = time.process_time(), time.perf_counter()
        built = build(Recipe(name, val_days=args.test_days, exclude_bought=exclude), split)
        result[f"{key}_{name}_fit_cpu_s"] = round(time.process_time() - cpu, 2)
        result[f"{key}_{name}_fit_wall_s"] = round(time.perf_counter() - wall, 2)
        val_fn = built.fitted.val_scores_fn
        val_fn = val_fn if bought is None else excluding(val_fn, bought)
        test_fn = LoadedModel.of(built.exported, split.maps, popular).scores
        per_user[name] = {"val": per_user_metrics(val_fn, val), "test": per_user_metrics(test_fn, split)}
        for part in ("val", "test"):
            result.update(_parts(per_user[name][part], f"{key}_{name}_{part}"))
        if name == "repeat_cadence":
            result[f"{key}_cadence_weight"] = built.extra["cadence_weight"]
            for weight, ndcg in built.extra["cadence_val_ndcg_curve"].items():  # flat keys, one per weight
                result[f"{key}_cadence_w{weight.replace('.', '_')}_val_ndcg_at_10"] = round(ndcg, 4)
    for part in ("val", "test"):
        with_, without = per_user["repeat_cadence"][part], per_user["repeat_buy"][part]
        result.update(_gain(with_, without, f"{key}_cadence_{part}", args.seed))
    # the test window at every weight of the grid (never read by the choice): would another have paid?
    test_cadence = cadence_table(split)
    for w in WEIGHTS:
        ndcg = evaluate(SparseScores(*cadence_parts(split, w, test_cadence)), split)["ndcg_at_10"]
        result[f"{key}_cadence_w{str(w).replace('.', '_')}_test_ndcg_at_10"] = round(ndcg, 4)
    _write(result, args, key, started, load_before)  # each phase's figures are kept if a later one stops

    if not args.no_choose:
        from personaflow.training.choice import choose

        options = tuple(args.choose_options.split(","))
        base = Recipe(epochs=1, dim=64, seed=args.seed, val_days=args.test_days, exclude_bought=exclude)
        cpu = time.process_time()
        choice = choose(split, base, None, rerank=False, options=options)
        result[f"{key}_choose_cpu_s"] = round(time.process_time() - cpu, 1)
        result[f"{key}_choose_options"] = ",".join(options)
        result[f"{key}_chosen"] = choice.report["chosen"]
        result[f"{key}_chosen_reason"] = choice.report["reason"]
        for name, row in choice.report["options"].items():
            if row["status"] == "not tried":  # the re-ranker (switched off here)
                continue
            if row["val_ndcg_at_10"] is not None:
                result[f"{key}_choice_{name}_val_ndcg_at_10"] = round(row["val_ndcg_at_10"], 4)
            result[f"{key}_choice_{name}_fit_cpu_s"] = row["fit_cpu_s"]
        test_fn = LoadedModel.of(choice.built.exported, split.maps, popular).scores
        result.update(_parts(per_user_metrics(test_fn, split), f"{key}_chosen_test"))
        tifu = choice.fits.get("tifu")
        _write(result, args, key, started, load_before)
    else:
        tifu = None

    if args.rerank:
        from personaflow.training.choice import _rerank_at_validation
        from personaflow.training.data.features import purchases_source
        from personaflow.training.rerank.reranker import RerankConfig, fit_reranker

        features = purchases_source(None)
        retrieval = args.retrieval
        base = Recipe(model=retrieval, seed=args.seed, val_days=args.test_days, exclude_bought=exclude)
        tifu = tifu if retrieval == "tifu" and tifu is not None else build(base, split)
        plain_cfg = RerankConfig(ensemble=args.ensemble, model=replace(RerankConfig().model, seed=args.seed))
        result[f"{key}_rerank_ensemble"] = args.ensemble
        result[f"{key}_rerank_retrieval"] = retrieval
        cadence_cfg = replace(plain_cfg, quotas=replace(plain_cfg.quotas, cadence=True))
        runs: dict[str, dict] = {"plain": {}, "cadence": {}}
        # the test window first (trained as the night trains it), then the validation view (trained one
        # cut earlier, as the choice compares them); each figure is written as soon as it exists
        for part in ("test", "val"):
            for label, cfg in (("plain", plain_cfg), ("cadence", cadence_cfg)):
                cpu = time.process_time()
                if part == "val":
                    at_val = _rerank_at_validation(tifu, val, base, features, cfg)
                    runs[label][part] = per_user_metrics(
                        at_val if bought is None else excluding(at_val, bought), val
                    )
                else:
                    scores_fn, info = fit_reranker(split, tifu.fitted, features, cfg)
                    runs[label][part] = per_user_metrics(scores_fn, split)
                    recall = round(info["candidate_recall_test"], 4)
                    result[f"{key}_rerank_{label}_candidate_recall_test"] = recall
                result[f"{key}_rerank_{label}_{part}_fit_cpu_s"] = round(time.process_time() - cpu, 1)
                result.update(_parts(runs[label][part], f"{key}_rerank_{label}_{part}"))
                _write(result, args, key, started, load_before)
            result.update(_gain(runs["cadence"][part], runs["plain"][part], f"{key}_rerank_cadence_{part}",
                                args.seed))  # fmt: skip

    _write(result, args, key, started, load_before)


if __name__ == "__main__":
    main()
