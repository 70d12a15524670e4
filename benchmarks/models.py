"""The field's protocols and peers side by side: every baseline, every peer and the nightly default, on
retail-30d and on each user's last basket, with the repeat/explore split. One JSON, flat keys.

    python benchmarks/models.py --data online-retail
    python benchmarks/models.py --data complete-journey
    python benchmarks/models.py --data synthetic-norebuy --users 2500 --items 500

Protocols (personaflow/training/data/purchases.py):
- `retail_30d`: a global cut 30 days before the log's end; test users bought before and after it,
  their truth every item bought after it; validation the same cut 30 days earlier inside training.
- `last_basket`: users with >= 3 baskets (an invoice, one timestamp; a user-day in the synthetic shop,
  which has no invoice); the truth is each one's last basket, validation the basket before, training the
  rest (and every row of users with fewer baskets).
Rows:
- baselines (ours): popularity, repeat_buy, p_topfreq, gp_topfreq, item_knn, tifu (tuned on validation);
- peers (benchmarks/_peers.py, benchmark-only extras): cornac_tifuknn, cornac_upcf, implicit_als,
  implicit_bpr, implicit_item_knn_bm25, each tuned on the same validation cut over a small grid
  (`<row>_params`, `<row>_grid_points`, `<row>_val_ndcg_at_10`);
- `nightly_default`: what the nightly train serves: training/choice.py choose() with the Settings
  defaults, picking on the protocol's own validation cut among the baselines, item-kNN, SASRec and the
  re-ranker over the best retrieval (`<row>_chosen`, `<row>_reason`, every option's validation NDCG@10
  and fit seconds as `<row>_option_<name>_...`, the slowest option's `<row>_max_option_fit_wall_s`).
Metrics per row: ndcg_at_10, recall_at_10 (with _ci_low/_ci_high), mrr_at_10, repeat_/explore_ ndcg and
recall at 10 (users without that part left out), coverage, fit_s (wall), cpu_s, peak_rss_mb; per
protocol: test users, repeat_user_share, explore_user_share; paired 95 % intervals of every row's gain
over the best baseline and over the best peer (`vs_best_baseline_ndcg_at_10_gain`, `..._ci_low`, ...),
on NDCG@10 and Recall@10, repeat and explore NDCG@10 (over the users that have that part).
Where the shop hardly re-buys (repeat rate < REBUY_MIN), bought items are ranked last by every row alike.
Keys: `<data>_<protocol>_<row>_<metric>`; a run replaces its data set's keys of the protocols it ran in
benchmarks/results/models.json (`--protocols last_basket` re-runs one).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import PeakRss, code_commit, merge_results
from _datasets import load_purchases, rerank_features

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "models.json"
DATA = ("online-retail", "complete-journey", "synthetic-norebuy")
PROTOCOLS = ("retail_30d", "last_basket")
VAL_DAYS = 30
BASELINES = ("popularity", "repeat_buy", "p_topfreq", "gp_topfreq", "item_knn", "tifu")
PAIRED = ("ndcg_at_10", "recall_at_10", "repeat_ndcg_at_10", "explore_ndcg_at_10")


def make_split(purchases, protocol: str, by_day: bool):
    from personaflow.training.data.purchases import last_basket_split, split_purchases

    if protocol == "retail_30d":
        return split_purchases(purchases, VAL_DAYS)
    return last_basket_split(purchases, min_baskets=3, by_day=by_day)


def our_baselines(split, val) -> dict:
    """name -> () -> (ScoresFn, info)."""
    from personaflow.training.evaluation import baselines
    from personaflow.training.evaluation.tifu import tifu, tune_tifu

    def tuned_tifu():
        params, curve = tune_tifu(val)
        return tifu(split, params), {"params": params.__dict__, "val_curve": curve}

    return {
        "popularity": lambda: (baselines.popularity(split), {}),
        "repeat_buy": lambda: (baselines.own_history(split), {}),
        "p_topfreq": lambda: (baselines.p_topfreq(split), {}),
        "gp_topfreq": lambda: (baselines.gp_topfreq(split), {}),
        "item_knn": lambda: (baselines.item_knn(split), {}),
        "tifu": tuned_tifu,
    }


def nightly_default(split, features, seed: int, exclude: bool):
    """The nightly recipe as `personaflow train` fits it: training/choice.py choose() with the Settings
    defaults (model auto, rerank on, epochs 20, dim 64, the seed), picking on this protocol's own
    validation cut (VAL_DAYS before the test cut; the basket before the last under last_basket).
    No customer table is passed (the benchmark's shops are read from purchase logs), so demographics
    are not tried. Returns (the exported model's scores, the choice's report flattened)."""
    from personaflow.core.settings import Settings
    from personaflow.training.choice import choose
    from personaflow.training.evaluation.baselines import popularity_ranking
    from personaflow.training.recipe import Recipe
    from personaflow.training.registry.loading import LoadedModel

    settings = Settings()
    base = Recipe(epochs=20, dim=64, seed=seed, val_days=VAL_DAYS, exclude_bought=exclude)
    choice = choose(split, base, features, rerank=settings.rerank)
    report = choice.report
    info: dict = {"chosen": report["chosen"], "reason": report["reason"], "val_users": report["val_users"]}
    walls = []
    for name, row in report["options"].items():
        key = name.replace("+", "_")
        info[f"option_{key}_status"] = row["status"]
        if row["val_ndcg_at_10"] is not None:
            info[f"option_{key}_val_ndcg_at_10"] = round(row["val_ndcg_at_10"], 4)
        for k in ("fit_wall_s", "fit_cpu_s", "serve_fit_wall_s", "serve_fit_cpu_s"):
            if k in row:
                info[f"option_{key}_{k}"] = row[k]
        walls.append(row["fit_wall_s"])
    # the bar is per fit: the slowest option's (the re-ranker's counts its validation fit and
    # scoring and, when kept, its serving fit as well: `..._serve_fit_wall_s` is that part)
    info["max_option_fit_wall_s"] = max(walls)
    extra = choice.built.extra
    for k in ("rerank_train_lists", "rerank_pool_size", "rerank_lambdarank_rounds", "rerank_fit_s"):
        if k in extra:
            info[k] = ",".join(map(str, extra[k])) if isinstance(extra[k], list) else extra[k]
    scores = LoadedModel.of(choice.built.exported, split.maps, popularity_ranking(split)).scores
    return scores, info


def _flat(prefix: str, info: dict) -> dict:
    out = {}
    if "params" in info:
        out[f"{prefix}_params"] = ", ".join(f"{k}={v}" for k, v in info["params"].items())
    if "val_curve" in info:
        out[f"{prefix}_grid_points"] = len(info["val_curve"])
        out[f"{prefix}_val_ndcg_at_10"] = round(max(info["val_curve"].values()), 4)
    for k, v in info.items():
        if k not in ("params", "val_curve"):
            out[f"{prefix}_{k}"] = v
    return out


def run_protocol(args, data_prefix: str, purchases, protocol: str, features) -> dict:
    import _peers

    from personaflow.training.evaluation.bootstrap import paired_bootstrap
    from personaflow.training.evaluation.protocol import score
    from personaflow.training.evaluation.rebuy import bought_matrix, decide_exclusion, excluding
    from personaflow.training.models.fit import validation_view

    split = make_split(purchases, protocol, by_day=args.data == "synthetic-norebuy")
    val = validation_view(split, VAL_DAYS)
    prefix = f"{data_prefix}_{protocol}"
    exclude, rate = decide_exclusion(split)
    bought = bought_matrix(split)
    out: dict = {f"{prefix}_{k}": v for k, v in split.sizes().items()}
    out.update({f"{prefix}_val_users": len(val.test_truth), f"{prefix}_repeat_rate": round(rate, 4)})
    out[f"{prefix}_exclude_bought"] = exclude
    print(f"\n== {args.data} {protocol}: {split.sizes()} val users {len(val.test_truth)}", flush=True)

    per_user: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    kinds: dict[str, str] = {}

    def record(name: str, kind: str, make) -> None:
        with PeakRss() as mem:
            started, cpu = time.perf_counter(), time.process_time()
            fn, info = make()
            fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        shown = excluding(fn, bought) if exclude else fn
        sample = info.pop("_sample", None)
        target = split if sample is None else replace(split, test_truth=sample)
        metrics, users = score(shown, target, n_boot=args.boot)
        metrics.update(fit_s=round(fit_s, 2), cpu_s=round(cpu_s, 1), peak_rss_mb=round(mem.peak, 1))
        rows[name], per_user[name], kinds[name] = metrics, users, kind
        out.update({f"{prefix}_{name}_{k}": v for k, v in metrics.items() if k != "n_test_users"})
        out.update(_flat(f"{prefix}_{name}", info))
        out[f"{prefix}_{name}_kind"] = kind
        if sample is not None:
            out[f"{prefix}_{name}_scored_users"] = len(sample)
        _write(args.data, [protocol], out)  # row by row: a run cut short keeps what it measured
        print(
            f"  {name:<24} ndcg@10 {metrics['ndcg_at_10']:.4f} recall@10 {metrics['recall_at_10']:.4f} "
            f"repeat {metrics['repeat_ndcg_at_10']:.4f} explore {metrics['explore_ndcg_at_10']:.4f} "
            f"({fit_s:.1f}s){'  ' + out.get(f'{prefix}_{name}_params', '') if 'params' in info else ''}",
            flush=True,
        )

    for name, make in our_baselines(split, val).items():
        record(name, "baseline", make)
    peers = _peers.make_peers(split, val)
    for name in args.peers:
        record(name, "peer", peers[name])
    if not args.no_default:
        sample = None
        if args.default_users and len(split.test_truth) > args.default_users:
            rng = np.random.default_rng(args.seed)
            picked = rng.choice(sorted(split.test_truth), size=args.default_users, replace=False)
            sample = {str(u): split.test_truth[str(u)] for u in picked}

        def default():
            fn, info = nightly_default(split, features, args.seed, exclude)
            return fn, info | ({"_sample": sample} if sample is not None else {})

        record("nightly_default", "ours", default)

    best_baseline = max((n for n in rows if kinds[n] == "baseline"), key=lambda n: rows[n]["ndcg_at_10"])
    peer_rows = [n for n in rows if kinds[n] == "peer"]
    best_peer = max(peer_rows, key=lambda n: rows[n]["ndcg_at_10"], default=None)
    out[f"{prefix}_best_baseline"], out[f"{prefix}_best_peer"] = best_baseline, best_peer
    out[f"{prefix}_repeat_user_share"] = rows[best_baseline]["repeat_user_share"]
    out[f"{prefix}_explore_user_share"] = rows[best_baseline]["explore_user_share"]
    for name in rows:
        for ref, label in ((best_baseline, "best_baseline"), (best_peer, "best_peer")):
            if ref is None or ref == name:
                continue
            mine, theirs = per_user[name], per_user[ref]
            # the same users (a sampled row: its users only), paired
            pos = {u: i for i, u in enumerate(theirs["users"])}
            idx = np.array([pos[u] for u in mine["users"]], dtype=np.int64)
            for metric in PAIRED:
                a, b = mine[metric], theirs[metric][idx]
                scored = ~np.isnan(a) & ~np.isnan(b)
                paired = paired_bootstrap(a[scored], b[scored], args.boot, args.seed)
                out.update({f"{prefix}_{name}_vs_{label}_{metric}_{k}": v for k, v in paired.items()})
    _table(args.data, protocol, rows, kinds, out, prefix, best_baseline, best_peer)
    return out


def _table(data, protocol, rows, kinds, out, prefix, best_baseline, best_peer) -> None:
    print(f"\n{data} {protocol}: best baseline {best_baseline}, best peer {best_peer}")
    head = f"{'row':<24}{'kind':<9}{'NDCG@10':>8}{'Rec@10':>8}{'rep NDCG':>9}{'exp NDCG':>9}{'exp Rec':>8}"
    print(head + f"{'fit s':>7}  vs best baseline | vs best peer (NDCG@10 gain [95% CI])")
    for name, m in sorted(rows.items(), key=lambda r: -r[1]["ndcg_at_10"]):
        gains = []
        for label in ("best_baseline", "best_peer"):
            key = f"{prefix}_{name}_vs_{label}_ndcg_at_10"
            if key + "_gain" not in out:
                gains.append("-")
                continue
            low, high = out[key + "_gain_ci_low"], out[key + "_gain_ci_high"]
            gains.append(f"{out[key + '_gain']:+.4f} [{low:+.4f},{high:+.4f}]")
        print(
            f"{name:<24}{kinds[name]:<9}{m['ndcg_at_10']:>8.4f}{m['recall_at_10']:>8.4f}"
            f"{m['repeat_ndcg_at_10']:>9.4f}{m['explore_ndcg_at_10']:>9.4f}{m['explore_recall_at_10']:>8.4f}"
            f"{m['fit_s']:>7.1f}  {gains[0]} | {gains[1]}"
        )


def main() -> None:
    import _peers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, default="online-retail")
    parser.add_argument(
        "--path", default=os.environ.get("PERSONAFLOW_RETAIL_PATH", "../shared/data/online-retail")
    )
    parser.add_argument("--cj-path", default=None, help="Complete Journey folder")
    parser.add_argument("--protocols", nargs="*", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--peers", nargs="*", default=list(_peers.make_peers(None, None)))
    parser.add_argument("--no-default", action="store_true", help="leave the nightly default out")
    parser.add_argument(
        "--default-users", type=int, default=0,
        help="score the nightly default on this many sampled test users (0: all); reported in the JSON",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    purchases = load_purchases(args)
    data_prefix = args.data.replace("-", "_")
    out: dict = {
        "cores": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        f"{data_prefix}_purchase_rows": len(purchases),
        f"{data_prefix}_load_avg_1m_at_start": round(load_start, 2),
        f"{data_prefix}_machine_idle": load_start < 0.5,
        f"{data_prefix}_code_commit": code_commit(),
    }
    if args.data == "complete-journey":
        from _datasets import CJ_MIN_HOUSEHOLDS

        out[f"{data_prefix}_min_item_households"] = CJ_MIN_HOUSEHOLDS
    if args.data == "synthetic-norebuy":
        out.update({f"{data_prefix}_users": args.users, f"{data_prefix}_items": args.items})
        out[f"{data_prefix}_days"] = args.days
    if "cornac_upcf" in args.peers:
        from personaflow.training.data.purchases import split_purchases

        out[f"{data_prefix}_cornac_upcf_check_top10_agreement"] = _peers.check_upcf(
            split_purchases(purchases, VAL_DAYS)
        )
    features = rerank_features(args)
    for protocol in args.protocols:
        out.update(run_protocol(args, data_prefix, purchases, protocol, features))
        out[f"{data_prefix}_{protocol}_code_commit"] = out[f"{data_prefix}_code_commit"]
        _write(args.data, args.protocols, out)
    out[f"{data_prefix}_{'_'.join(args.protocols)}_run_s"] = round(time.perf_counter() - started, 1)
    _write(args.data, args.protocols, out)


def _write(data: str, protocols: list[str], result: dict) -> None:
    """Merge `result` into the JSON: the run replaces its data set's keys of the protocols it ran (and
    its own data-level keys), so one protocol can be re-run alone."""
    prefixes = tuple(f"{data.replace('-', '_')}_{p}_" for p in protocols)
    merge_results(RESULTS, result, replacing=prefixes, sort_keys=True)


if __name__ == "__main__":
    main()
