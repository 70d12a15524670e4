"""Benchmark: customer segments and churn on a synthetic shop whose log spans more than the churn horizon.

The stages the nightly DAG runs (personaflow.pipeline.profiles: segments / churn) over marts built the nightly
way (generate -> ingest -> dbt): the segment table (size, share, mean RFM, top categories, readable label;
k by silhouette) and churn ROC AUC / PR AUC / Brier with the horizon (90 days by default) on the
held-out cut-offs. Writes benchmarks/results/profiles.json (flat keys; segments as segment_<i>_<what>).

    make bench-profiles
    python benchmarks/profiles.py --users 4000 --days 240
    make bench-profiles ARGS="--data online-retail"   # the real log (keys prefixed online_retail_)

Churn reports every candidate model's out-of-time validation ROC AUC and fit time, the chosen one,
and the held-out calibration by recency band (churn_band_<lo>_n / _predicted / _observed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "profiles.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", choices=["synthetic", "online-retail"], default="synthetic")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="personaflow-bench-profiles-"))
    os.environ.update({"PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")})

    from personaflow.core import settings
    from personaflow.ingest.generate import generate_shop, write_shop
    from personaflow.pipeline import ingest as ingest_stage
    from personaflow.pipeline import profiles as profiles_stage
    from personaflow.pipeline import transform as transform_stage

    s = settings.load()
    if args.data == "online-retail":
        from datetime import date

        real = ROOT.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
        imported = ingest_stage.import_events(real, "online-retail", s, load=True)
        last = date.fromisoformat(imported["batches"]["last_day"])
        transform_stage.transform(last, s)
        out: dict[str, object] = {
            "cores": os.cpu_count(), "data": str(real.relative_to(ROOT.parent)), "events": imported["rows"],
            "users": imported["customers"], "churn_horizon_days": s.churn_horizon_days,
        }  # fmt: skip
    else:
        shop = generate_shop(users=args.users, items=args.items, days=args.days, seed=args.seed)
        write_shop(shop, s.landing_dir)
        last = shop.events["event_ts"].max().date()
        ingest_stage.ingest_history(last, s)
        transform_stage.transform(last, s)
        out = {
            "cores": os.cpu_count(), "data": "synthetic", "users": args.users, "items": args.items,
            "days": args.days, "events": len(shop.events), "churn_horizon_days": s.churn_horizon_days,
        }  # fmt: skip
    out["machine_idle"] = os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1)  # load before the timed stages

    started = time.perf_counter()
    seg = profiles_stage.segments(last, s)
    out["segments_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    churn = profiles_stage.churn(last, s)
    out["churn_s"] = round(time.perf_counter() - started, 2)
    if seg["status"] == "ok":
        out.update(segments_k=seg["k"], segments_criterion=seg["criterion"], segments_users=seg["users"])
        out["segments_silhouette"] = round(seg["silhouettes"][seg["k"]], 4)
        print(f"segments: k={seg['k']} ({seg['criterion']})")
        print(
            f"{'id':>3} {'size':>6} {'share':>6} {'recency':>8} {'freq':>6} {'monetary':>9}  "
            "label / top categories"
        )
        for row in seg["segments"]:
            i = row["segment_id"]
            for key in ("size", "share", "mean_recency_days", "mean_frequency", "mean_monetary", "label"):
                out[f"segment_{i}_{key}"] = row[key]
            out[f"segment_{i}_top_categories"] = ",".join(row["top_categories"])
            print(
                f"{i:>3} {row['size']:>6} {row['share']:>6.1%} {row['mean_recency_days']:>8.1f} "
                f"{row['mean_frequency']:>6.2f} {row['mean_monetary']:>9.2f}  {row['label']} / "
                f"{', '.join(row['top_categories'])}"
            )
    else:
        out["segments_skipped"] = seg["reason"]
    if churn["status"] == "ok":
        metrics = churn["metrics"]
        out.update({f"churn_{k}": round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        out["churn_split"] = churn["split"]
        out["churn_model"], out["churn_choice"] = churn["model"], churn["choice"]
        for name, cand in (churn["candidates"] or {}).items():
            out[f"churn_{name}_val_roc_auc"], out[f"churn_{name}_fit_s"] = cand["val_roc_auc"], cand["fit_s"]
        for band in churn["calibration_by_recency"]:
            if band["n"]:
                key = f"churn_band_{band['lo']}"
                out[f"{key}_n"] = band["n"]
                out[f"{key}_predicted"] = round(band["mean_predicted"], 4)
                out[f"{key}_observed"] = round(band["observed_rate"], 4)
        print(f"churn model: {churn['choice']}")
        print(
            f"churn ({s.churn_horizon_days}-day horizon, {churn['split']}): "
            f"ROC AUC {metrics['roc_auc']:.3f}, PR AUC {metrics['pr_auc']:.3f} "
            f"(base rate {metrics['base_rate']:.3f}), Brier {metrics['brier']:.3f}"
        )
    else:
        out["churn_skipped"] = churn["reason"]
    if args.data == "online-retail":
        out = {f"online_retail_{k}": v for k, v in out.items() if k != "cores"} | {"cores": out["cores"]}
    merge_results(RESULTS, out)


if __name__ == "__main__":
    main()
