"""Every baseline and every model of ours on one time-cut split: one table, one JSON.

    python benchmarks/recommenders.py                      # the synthetic shop (retail-30d protocol)
    python benchmarks/recommenders.py --data online-retail [--path ../shared/data/online-retail]
    python benchmarks/recommenders.py --data synthetic-norebuy --users 2500 --items 500  # nobody re-buys
    python benchmarks/recommenders.py --data given --train train.csv --test test.csv    # your own split

Writes benchmarks/results/recommenders.json with flat keys `<data>_<model>_<metric>` (ndcg_at_10,
recall_at_10, mrr_at_10 and their _ci_low/_ci_high, coverage, fit_s, peak_rss_mb) plus split sizes and
the machine's cores; a run replaces every key of its data set. Peak RSS is the process's resident-set
peak sampled while that model fits.
Baselines: popularity, repeat_buy (own history by count, recency ties), tifu (TIFU-KNN-style, tuned on
the validation view), item_knn, als. Every other row has its paired bootstrap gain over the best
baseline of the run (`vs_best_baseline_*`, which baseline in `<data>_best_baseline`) and over repeat-buy.
`<model>_deepfm` rows: a DeepFM re-ranker (personaflow/training/rerank/reranker.py) over that model's
candidates (--rerank-on, default the first of --models), with its candidate recall on validation and test;
`tifu_deepfm` is the same re-ranker over TIFU-KNN + history + co-purchase candidates.
Learned fits early-stop on the validation view (`val_users` users buying in the last `--test-days`
before the training cut) and stop at `--budget` seconds of epochs at the latest, counted as this
process's CPU time per torch thread (personaflow/training/models/fit.py `_clock`): `fit_s` is wall time, which
other jobs on shared cores inflate, `cpu_s` the process's CPU seconds.
`given`: a split the shop brings (benchmarks/_datasets.py: --train/--test files, or --purchases with
--cuts, one cut time per user), the same split `personaflow evaluate` reads.
`synthetic-norebuy`: the generator with rebuy=False (and its item -> successor structure). Each data
set's repeat rate is measured (`<data>_repeat_rate`, personaflow/training/evaluation/rebuy.py); below
REBUY_MIN,
bought items are ranked last by every row alike: baselines masked, models fitted with exclude_bought.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

from _common import PeakRss
from _datasets import DATA, load_split, owner, rerank_features

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "recommenders.json"


# --- DeepFM re-ranking section (rows `<model>_deepfm`) ---
RERANK_EXTRAS = ("candidate_recall_val", "candidate_recall_test", "train_rows", "positive_rate", "best_epoch")


BASELINE_ROWS = ("popularity", "repeat_buy", "tifu", "item_knn", "als")


def make_baselines(split, test_days: int) -> dict:
    """name -> () -> ScoresFn, fitted on the split's training rows (tifu tuned on the validation view)."""
    from personaflow.training.evaluation import baselines
    from personaflow.training.evaluation.tifu import tifu, tune_tifu
    from personaflow.training.models.fit import validation_view

    def tuned_tifu():
        params, _ = tune_tifu(validation_view(split, test_days))
        return tifu(split, params)

    made = {
        "popularity": lambda: baselines.popularity(split),
        "repeat_buy": lambda: baselines.own_history(split),
        "tifu": tuned_tifu,
        "item_knn": lambda: baselines.item_knn(split),
        "als": lambda: baselines.als(split),
    }
    if importlib.util.find_spec("implicit") is None:  # a benchmark-only extra: say so, run the rest
        print("  als: skipped, `implicit` is not installed (make bench-models installs it)", flush=True)
        del made["als"]
    return made


def _versus(m: dict) -> str:
    """The paired gain over the best baseline with its interval, or "" for the baselines."""
    key = "vs_best_baseline_ndcg_at_10_gain"
    if key not in m:
        return ""
    return f"{m[key]:+.4f} [{m[key + '_ci_low']:+.4f}, {m[key + '_ci_high']:+.4f}]"


def run(args: argparse.Namespace) -> dict:
    import torch

    from personaflow.training.evaluation.bootstrap import paired_bootstrap
    from personaflow.training.evaluation.protocol import score
    from personaflow.training.evaluation.rebuy import bought_matrix, decide_exclusion, excluding
    from personaflow.training.models.config import FitConfig
    from personaflow.training.models.fit import fit_model
    from personaflow.training.rerank.hybrid import hybrid

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    split = load_split(args)
    prefix = args.data.replace("-", "_")
    exclude, rate = decide_exclusion(split)
    bought = bought_matrix(split)

    def shown(fn):  # what the shop would show: bought items last where nobody re-buys
        return excluding(fn, bought) if exclude else fn

    out: dict = {f"{prefix}_{k}": v for k, v in split.sizes().items()}
    out.update(
        {
            "cores": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            f"{prefix}_test_days": args.test_days,
            f"{prefix}_repeat_rate": round(rate, 4),
            f"{prefix}_exclude_bought": exclude,
        }
    )
    if args.threads:
        out[f"{prefix}_torch_threads"] = args.threads
    rows = []

    per_user_of: dict = {}

    def record(name: str, scores_fn, fit_s: float, peak: float, extra: dict | None = None) -> None:
        metrics, per_user = score(shown(scores_fn), split, n_boot=args.boot)
        metrics.update(fit_s=round(fit_s, 2), peak_rss_mb=round(peak, 1))
        per_user_of[name] = per_user["ndcg_at_10"]
        if name not in BASELINE_ROWS:
            # paired over the same test users: is the gain over a baseline more than resampling noise?
            for other, label in (
                (out[f"{prefix}_best_baseline"], "best_baseline"),
                ("repeat_buy", "repeat_buy"),
            ):
                paired = paired_bootstrap(per_user["ndcg_at_10"], per_user_of[other], args.boot)
                metrics.update({f"vs_{label}_ndcg_at_10_{k}": v for k, v in paired.items()})
        out.update({f"{prefix}_{name}_{k}": v for k, v in metrics.items() if k != "n_test_users"})
        out.update({f"{prefix}_{name}_{k}": v for k, v in (extra or {}).items()})
        rows.append((name, metrics))
        versus = f"  vs best baseline {_versus(metrics)}" if _versus(metrics) else ""
        print(f"  {name:<18} ndcg@10 {metrics['ndcg_at_10']:.4f}  ({fit_s:.1f}s){versus}", flush=True)

    for name, make in make_baselines(split, args.test_days).items():
        with PeakRss() as mem:
            started = time.perf_counter()
            scores_fn = make()
            fit_s = time.perf_counter() - started
        record(name, scores_fn, fit_s, mem.peak)
    best = max((n for n in BASELINE_ROWS if n in per_user_of), key=lambda n: per_user_of[n].mean())
    out[f"{prefix}_best_baseline"] = best

    features = rerank_features(args)  # two_tower's user/item features (point in time per split)
    for name in args.models:
        cfg = FitConfig(
            epochs=args.epochs, lr=3e-3, seed=args.seed, val_days=args.test_days, budget_s=args.budget,
            exclude_bought=exclude,
        )  # fmt: skip
        with PeakRss() as mem:
            started, cpu = time.perf_counter(), time.process_time()
            fitted = fit_model(name, split, cfg, features=features)
            fit_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu
        val_users = len(fitted.val_split.test_truth)
        extra = {"best_epoch": fitted.best_epoch, "val_users": val_users, "cpu_s": round(cpu_s, 1)}
        record(name, fitted.scores_fn, fit_s, mem.peak, extra)
        started = time.perf_counter()
        blended, info = hybrid(split, fitted.scores_fn, fitted.val_split, fitted.val_scores_fn, exclude)
        record(
            f"{name}_hybrid",
            blended,
            fit_s + time.perf_counter() - started,
            mem.peak,
            {"blend_weight": info["weight"]},
        )
        if name in (args.models[:1] if args.rerank_on is None else args.rerank_on):
            from personaflow.training.rerank.reranker import RerankConfig, fit_reranker

            with PeakRss() as rr_mem:
                started = time.perf_counter()
                rr_cfg = RerankConfig(model=replace(RerankConfig().model, seed=args.seed))
                reranked, rr_info = fit_reranker(split, fitted, features, rr_cfg)
                rr_s = time.perf_counter() - started
            extra = {k: rr_info[k] for k in RERANK_EXTRAS} | {"rerank_s": round(rr_s, 2)}
            record(f"{name}_deepfm", reranked, fit_s + rr_s, max(mem.peak, rr_mem.peak), extra)
            print(f"  {'':<18} candidate recall val {extra['candidate_recall_val']:.3f} "
                  f"test {extra['candidate_recall_test']:.3f} (pool {rr_info['pool_size']})")  # fmt: skip

    if args.tifu_rerank:  # the nightly default's recipe: DeepFM over TIFU-KNN + history + co-purchase
        from personaflow.training.recipe import fit_baseline
        from personaflow.training.rerank.reranker import RerankConfig, fit_reranker

        with PeakRss() as mem:
            started, cpu = time.perf_counter(), time.process_time()
            fitted, *_ = fit_baseline("tifu", split, args.test_days)
            rr_cfg = RerankConfig(model=replace(RerankConfig().model, seed=args.seed))
            reranked, rr_info = fit_reranker(split, fitted, features, rr_cfg)
            fit_s = time.perf_counter() - started
            cpu_s = round(time.process_time() - cpu, 1)
        extra = {k: rr_info[k] for k in RERANK_EXTRAS} | {"val_users": len(fitted.val_split.test_truth)}
        extra["cpu_s"] = cpu_s
        record("tifu_deepfm", reranked, fit_s, mem.peak, extra)

    print(f"\n{args.data}: {split.sizes()}  cores={out['cores']} device={out['device']} best baseline={best}")
    header = (
        f"{'model':<18}{'NDCG@10 [95% CI]':<26}{'Recall@10':>10}{'MRR@10':>9}{'cover':>8}{'fit s':>8}"
        f"{'RSS MB':>8}  vs best baseline ({best}): gain [95% CI]"
    )
    print(header + "\n" + "-" * len(header))
    for name, m in sorted(rows, key=lambda r: -r[1]["ndcg_at_10"]):
        ci = f"{m['ndcg_at_10']:.4f} [{m['ndcg_at_10_ci_low']:.3f},{m['ndcg_at_10_ci_high']:.3f}]"
        print(
            f"{name:<18}{ci:<26}{m['recall_at_10']:>10.4f}{m['mrr_at_10']:>9.4f}{m['coverage']:>8.3f}"
            f"{m['fit_s']:>8.1f}{m['peak_rss_mb']:>8.0f}  {_versus(m)}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, default="synthetic")
    parser.add_argument(
        "--path", default=os.environ.get("PERSONAFLOW_RETAIL_PATH", "../shared/data/online-retail")
    )
    parser.add_argument("--train", type=Path, help="--data given: training purchases (with --test)")
    parser.add_argument("--test", type=Path, help="--data given: test purchases (with --train)")
    parser.add_argument("--purchases", type=Path, help="--data given: all purchases (with --cuts)")
    parser.add_argument("--cuts", type=Path, help="--data given: user_id, cut_ts (with --purchases)")
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="CPU seconds per thread of epochs per learned fit at most (default: the nightly run's cap, "
        "training.recipe.FIT_BUDGET_S, so every fit stays under a minute; early stopping ends most first)",
    )
    parser.add_argument("--no-tifu-rerank", dest="tifu_rerank", action="store_false")
    parser.add_argument(
        "--models", nargs="*", default=["bpr", "gru", "sasrec", "two_tower"],
        help="learned models to fit (none: the baselines and tifu_deepfm only)",
    )  # fmt: skip
    parser.add_argument(
        "--rerank-on", nargs="*", default=None,
        help="models whose candidates DeepFM re-ranks (default: the first of --models; none: no re-ranking)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.budget is None:
        from personaflow.training.recipe import FIT_BUDGET_S

        args.budget = FIT_BUDGET_S
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", message="OpenBLAS is configured")
    result = run(args)
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged = {k: v for k, v in merged.items() if owner(k) != args.data}  # this run replaces its data's rows
    merged.update(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
