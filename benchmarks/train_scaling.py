"""Benchmark (issue 21, part 1): how the `train` stage's recommender parts grow with the shop.

Synthetic shops (personaflow.ingest.generate, a tenth as many items as users, 60 days at the default
session rate: ~44 events and ~5 purchases a user) of 5k, 20k and 80k users. Each measured step runs
in its own child process on purchases cached as Parquet, so its CPU seconds (process time, all
threads) and peak RSS (os.wait4, minus the child's RSS before the step: `_extra_mb`) are its own:
- `tifu_neighbours_<search>`: TIFU-KNN's neighbour search for every user (neighbour_mean, 300
  neighbours), the ANN path (training/evaluation/tifu.py: NeighbourSearch) and, where affordable, the
  exact one, plus the ANN's tie-aware recall@300 against exact on 1,000 sampled users;
- `tifu_fit`: the whole TIFU-KNN fit as the nightly run does it: tune_tifu on the validation view (3
  decays x 3 alphas) then tifu_parts on the split, ANN search forced (so every size runs the same path);
- `rerank_pools`: the re-ranker's candidate pools over every user (CandidateBuilder.chunks) over a
  fitted TIFU-KNN retrieval, as the serving export builds them, without the DeepFMs (their training
  lists are a fixed budget): from its sparse rows (SparseScores, what the recipe hands over) and, where
  affordable, `rerank_pools_dense`, the same scores as a dense ScoresFn (the whole catalogue per user).
The cost exponent is the least-squares slope of log(CPU s) over log(users).
On Online Retail (retail-30d) TIFU-KNN is tuned once (exact search) and scored on the test window
with exact and ANN neighbours: `online_retail_tifu_ndcg_at_10_exact` / `_ann`, and the paired gain's
95% interval. Writes benchmarks/results/train_scaling.json.

    make bench-train-scaling
    python benchmarks/train_scaling.py --sizes 5000 20000 --exact-max 20000 --parts neighbours
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *sys.path]

from benchmarks._common import PeakRss, merge_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_scaling.json"
PARTS = ("neighbours", "fit", "pools", "retail")
DAYS, TEST_DAYS, NEIGHBOURS = 60, 14, 300
KEYS = {
    "neighbours_ann": "tifu_neighbours_ann",
    "neighbours_exact": "tifu_neighbours_exact",
    "fit": "tifu_fit",
    "pools": "rerank_pools",
    "pools_dense": "rerank_pools_dense",
}
POOL = (150, 75, 75, 75)  # the nightly re-ranker's quotas (reranker.RerankConfig; importing it loads torch)


def _purchases(users: int, work: Path) -> Path:
    path = work / f"purchases_{users}.parquet"
    if not path.exists():
        from personaflow.ingest.generate import generate_shop
        from personaflow.training.data.purchases import purchases_from_events

        shop = generate_shop(users=users, items=max(users // 10, 10), days=DAYS, seed=21)
        frame = purchases_from_events(shop.events)
        frame.attrs = {}
        frame.to_parquet(path)
        (work / f"events_{users}.json").write_text(json.dumps({"events": len(shop.events)}))
    return path


def _split(users: int, work: Path):
    import pandas as pd

    from personaflow.training.data.purchases import split_purchases

    return split_purchases(pd.read_parquet(_purchases(users, work)), TEST_DAYS)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(step: str, users: int, work: Path) -> dict:
    """One measured step in this process: CPU s, wall s, peak RSS over the RSS before the step."""
    import faiss  # noqa: F401  (imports are not the step's memory)
    import sklearn.utils.extmath  # noqa: F401

    from personaflow.training.evaluation import tifu
    from personaflow.training.rerank.candidates import CandidateBuilder, Quotas

    split = _split(users, work)
    if step.startswith("pools"):  # the pools' retrieval, fitted before the measured pass
        from personaflow.training.evaluation.baselines import SparseScores

        matrix, fill = tifu.tifu_parts(split, tifu.TifuParams(search="ann"))
        # SparseScores as recipe.fit_baseline hands TIFU-KNN over; pools_dense: the same scores seen as a
        # dense ScoresFn, the whole catalogue per user
        retrieval = SparseScores(matrix, fill)
        if step == "pools_dense":
            retrieval = lambda u: matrix[np.asarray(u)].toarray() + fill  # noqa: E731
    before = _rss_mb()
    out: dict[str, float] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    with PeakRss() as peak:
        if step.startswith("neighbours_"):
            search = step.removeprefix("neighbours_")
            r = tifu.personal_vectors(split, 0.9)
            tifu.neighbour_mean(r, NEIGHBOURS, search=search)
        elif step == "fit":
            from personaflow.training.models.fit import validation_view

            params, _ = tifu.tune_tifu(validation_view(split, TEST_DAYS), search="ann")
            tifu.tifu_parts(split, params)
        elif step in ("pools", "pools_dense"):
            builder = CandidateBuilder(split, retrieval, Quotas(*POOL))
            n = sum(c.users.size for c in builder.chunks(np.arange(split.maps.n_users)))
            assert n == split.maps.n_users and builder.sparse == (step == "pools")
        else:
            raise SystemExit(f"unknown step {step}")
    out.update(
        cpu_s=time.process_time() - cpu,
        wall_s=time.perf_counter() - wall,
        extra_mb=peak.peak - before,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        users=split.maps.n_users,
        items=split.maps.n_items,
        purchases=len(split.train),
    )
    return out


def _run_child(step: str, users: int, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--sizes", str(users), "--work", str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{step} at {users} users failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def recall_vs_exact(users: int, work: Path, sample: int = 1000) -> float:
    """Tie-aware recall@NEIGHBOURS of the ANN neighbours against the exact ones, on sampled users."""
    import scipy.sparse as sp

    from personaflow.training.evaluation import tifu

    r = tifu.personal_vectors(_split(users, work), 0.9)
    rng = np.random.default_rng(0)
    q = np.sort(rng.choice(r.shape[0], size=min(sample, r.shape[0]), replace=False))
    norms = np.sqrt(np.asarray(r.multiply(r).sum(axis=1)).ravel())
    unit = (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ r).tocsr()
    sim = (unit[q] @ unit.T).toarray()
    sim[np.arange(q.size), q] = -np.inf
    exact = tifu.NeighbourSearch(r, NEIGHBOURS, "exact").query(q)
    ann = tifu.NeighbourSearch(r, NEIGHBOURS, "ann").query(q)
    kth = np.take_along_axis(sim, exact, axis=1).min(axis=1)
    hits = (np.take_along_axis(sim, np.maximum(ann, 0), axis=1) >= kth[:, None] - 1e-12) & (ann >= 0)
    return float(hits.mean())


def retail(path: Path) -> dict:
    from dataclasses import replace

    from personaflow.training.data.purchases import load_online_retail, split_purchases
    from personaflow.training.evaluation.bootstrap import paired_bootstrap
    from personaflow.training.evaluation.metrics import per_user_metrics
    from personaflow.training.evaluation.tifu import tifu, tune_tifu
    from personaflow.training.models.fit import validation_view

    split = split_purchases(load_online_retail(path), 30)
    params, _ = tune_tifu(validation_view(split, 30), search="exact")
    out: dict[str, object] = {
        "online_retail_tifu_params": f"{params.decay}/{params.neighbours}/{params.alpha}"
    }
    per_user = {}
    for search in ("exact", "ann"):
        cpu = time.process_time()
        per_user[search] = per_user_metrics(tifu(split, replace(params, search=search)), split)["ndcg_at_10"]
        out[f"online_retail_tifu_fit_cpu_s_{search}"] = round(time.process_time() - cpu, 2)
        out[f"online_retail_tifu_ndcg_at_10_{search}"] = round(float(per_user[search].mean()), 4)
    gain = paired_bootstrap(per_user["ann"], per_user["exact"])
    out["online_retail_tifu_ndcg_at_10_ann_minus_exact"] = round(gain["gain"], 4)
    out["online_retail_tifu_ndcg_at_10_ann_minus_exact_ci_low"] = round(gain["gain_ci_low"], 4)
    out["online_retail_tifu_ndcg_at_10_ann_minus_exact_ci_high"] = round(gain["gain_ci_high"], 4)
    out["online_retail_test_users"] = int(per_user["exact"].size)
    return out


def exponent(sizes: list[int], costs: list[float]) -> float:
    return round(float(np.polyfit(np.log(sizes), np.log(costs), 1)[0]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[5_000, 20_000, 80_000])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--exact-max", type=int, default=20_000,
                        help="largest shop for the exact search and the dense pools")  # fmt: skip
    parser.add_argument("--retail", type=Path, default=ROOT.parent / "shared" / "data" / "online-retail")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "personaflow-train-scaling"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file the figures merge into")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child, args.sizes[0], args.work)))
        return
    load = os.getloadavg()[0]
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "loadavg_at_start": round(load, 2),
        "machine_idle": load < 0.5 * (os.cpu_count() or 1),
        "neighbours": NEIGHBOURS,
        "shop_days": DAYS,
        "sizes_users": " ".join(map(str, args.sizes)),
    }
    steps = {"neighbours": ["neighbours_ann"], "fit": ["fit"], "pools": ["pools"]}
    exact_steps = {"neighbours": ["neighbours_exact"], "pools": ["pools_dense"]}
    costs: dict[str, list[tuple[int, float]]] = {}
    for users in args.sizes:
        _purchases(users, args.work)
        events = json.loads((args.work / f"events_{users}.json").read_text())["events"]
        result[f"events_{users}_users"] = events
        for part in [p for p in args.parts if p in steps]:
            names = steps[part] + (exact_steps.get(part, []) if users <= args.exact_max else [])
            result[f"loadavg_before_{part}_{users}_users"] = round(os.getloadavg()[0], 2)
            for step in names:
                got = _run_child(step, users, args.work)
                key = KEYS[step]
                result[f"{key}_cpu_s_{users}_users"] = round(got["cpu_s"], 2)
                result[f"{key}_wall_s_{users}_users"] = round(got["wall_s"], 2)
                result[f"{key}_extra_mb_{users}_users"] = round(got["extra_mb"], 1)
                result[f"{key}_peak_rss_mb_{users}_users"] = round(got["peak_rss_mb"], 1)
                costs.setdefault(key, []).append((users, got["cpu_s"]))
                result[f"items_{users}_users"] = got["items"]
                result[f"train_purchases_{users}_users"] = got["purchases"]
                print(key, users, round(got["cpu_s"], 2), "CPU-s", round(got["extra_mb"]), "MB", flush=True)
            if part == "neighbours" and users <= args.exact_max:
                result[f"tifu_ann_recall_at_{NEIGHBOURS}_{users}_users"] = round(
                    recall_vs_exact(users, args.work), 4
                )
        merge_results(args.results, result)
    for key, points in costs.items():
        if len(points) >= 2:
            name = "tifu_cost_exponent" if key == "tifu_fit" else f"{key.removesuffix('_ann')}_cost_exponent"
            result[name] = exponent([u for u, _ in points], [c for _, c in points])
    if "retail" in args.parts and args.retail.exists():
        result.update(retail(args.retail))
    result["loadavg_at_end"] = round(os.getloadavg()[0], 2)
    merge_results(args.results, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
