"""Benchmark: customer segments and churn on a synthetic shop whose log spans more than the churn horizon.

The stages the nightly DAG runs (personaflow.pipeline.profiles: segments / churn) over marts built the nightly
way (generate -> ingest -> dbt): the segment table (size, share, mean RFM, top categories, readable label;
k by silhouette) and churn ROC AUC / PR AUC / Brier with the horizon (90 days by default) on the
held-out cut-offs. Writes benchmarks/results/profiles.json (flat keys; segments as segment_<i>_<what>).

    make bench-profiles
    python benchmarks/profiles.py --users 4000 --days 240
    make bench-profiles ARGS="--data online-retail"   # the real log (keys prefixed online_retail_)

Personas (personaflow/profiles/personas.py, run inside the segments stage): k chosen, each k's admissibility,
smallest share and silhouette, and each persona's name, size, share, distinguishing features, description and
action (personas_*, persona_<i>_*). `--stages segments` leaves the churn keys as they are.
`--data complete-journey` runs the personas alone on The Complete Journey's transactions (no import: the
transactions are shaped like the marts' usable lines here, and the same warehouse SQL runs on them in DuckDB);
keys complete_journey_personas_*.

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
    data = ["synthetic", "online-retail", "complete-journey", "scale"]
    parser.add_argument("--data", choices=data, default="synthetic")
    parser.add_argument("--stages", choices=["all", "segments"], default="all")
    parser.add_argument("--buyers", type=int, default=100_000, help="--data scale: synthetic buyers")
    args = parser.parse_args()
    if args.data == "scale":
        merge_results(RESULTS, personas_at_scale(args.buyers, args.seed))
        return
    if args.data == "complete-journey":
        merge_results(RESULTS, complete_journey_personas(args.seed))
        return
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
    churn = profiles_stage.churn(last, s) if args.stages == "all" else {"status": "not run"}
    if args.stages == "all":
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
        out.update(persona_keys(seg["personas"]))
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
    elif churn["status"] == "skipped":
        out["churn_skipped"] = churn["reason"]
    if args.data == "online-retail":
        out = {f"online_retail_{k}": v for k, v in out.items() if k != "cores"} | {"cores": out["cores"]}
    merge_results(RESULTS, out)


def persona_keys(personas: dict) -> dict[str, object]:
    """Flat keys of the segments stage's `personas` report, printed as a table too."""
    out: dict[str, object] = {
        "personas_k": personas["k"], "personas_criterion": personas["criterion"],
        "personas_buyers": personas["buyers"], "personas_not_yet_buyers": personas.get("not_yet_buyers", 0),
        "personas_fit_s": personas["seconds"],
    }  # fmt: skip
    print(f"personas: k={personas['k']} over {personas['buyers']:,} buyers ({personas['criterion']})")
    for k, row in personas["per_k"].items():
        out[f"personas_k{k}_admissible"] = row["admissible"]
        out[f"personas_k{k}_silhouette"] = row["silhouette"]
        out[f"personas_k{k}_smallest_share"] = row["smallest_share"]
        print(f"  k={k}: silhouette {row['silhouette']:.3f}, smallest {row['smallest_share']:.1%}, "
              f"{'admissible' if row['admissible'] else row['why_not']}")  # fmt: skip
    for p in personas["personas"]:
        i = p["persona_id"]
        for key in ("name", "size", "share", "description", "action"):
            out[f"persona_{i}_{key}"] = p[key]
        apart = p["distinguishing"]
        out[f"persona_{i}_distinguishing"] = ", ".join(f"{d['feature']} {d['z']:+.2f} sd" for d in apart)
        print(f"{i:>3} {p['name']} ({p['size']:,}, {p['share']:.1%}): {p['description']}")
        print(f"      -> {p['action']}")
    return out


def personas_at_scale(buyers: int, seed: int) -> dict[str, object]:
    """fit_personas alone on `buyers` synthetic buyers (four planted ways of shopping, noise on every
    feature): time and the k found, to show the clustering stays linear (keys scale_<buyers>_*)."""
    import numpy as np
    import pandas as pd

    from personaflow.profiles.personas import fit_personas

    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4, buyers)
    noise = lambda scale: rng.lognormal(0, scale, buyers)  # noqa: E731
    frame = pd.DataFrame(
        {
            "user_id": np.arange(buyers).astype(str),
            "basket_items": np.where(kind == 1, 4, 18) * noise(0.4),
            "basket_value": np.where(kind == 2, 500, 200) * noise(0.4),
            "basket_categories": np.where(kind == 1, 2, 5) * noise(0.3),
            "units_per_line": np.where(kind == 1, 40, 6) * noise(0.4),
            "unit_price": 2.0 * noise(0.3),
            "rebuy_share": np.clip(np.where(kind == 1, 0.45, 0.18) + rng.normal(0, 0.08, buyers), 0, 1),
            "return_rate": np.clip(rng.normal(0.02, 0.02, buyers), 0, 1),
            "weekend_share": np.clip(np.where(kind == 3, 0.8, 0.1) + rng.normal(0, 0.1, buyers), 0, 1),
            "evening_share": np.clip(rng.normal(0.05, 0.05, buyers), 0, 1),
            "n_orders": rng.integers(1, 20, buyers),
            "mean_gap_days": 40 * noise(0.5),
        }
    )
    machine_idle = os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1)
    started = time.perf_counter()
    result = fit_personas(frame, seed=seed)
    seconds = round(time.perf_counter() - started, 2)
    print(f"{buyers:,} buyers: k={result.k} in {seconds} s ({[p['name'] for p in result.personas]})")
    key = f"scale_{buyers}"
    return {f"{key}_buyers": buyers, f"{key}_personas_k": result.k, f"{key}_personas_fit_s": seconds,
            f"{key}_machine_idle": machine_idle, "cores": os.cpu_count()}  # fmt: skip


def complete_journey_personas(seed: int) -> dict[str, object]:
    """Personas of The Complete Journey's households from its transactions (one basket = one order; the
    department is the category; fuel and fees are not products; discounts are not a feature yet)."""
    import duckdb
    import pandas as pd

    from personaflow.profiles.personas import behaviour_sql, fit_personas

    folder = ROOT.parent / "shared" / "data" / "complete-journey"
    tx = pd.read_parquet(folder / "transactions.parquet")
    products = pd.read_parquet(folder / "products.parquet", columns=["product_id", "department"])
    machine_idle = os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1)
    started = time.perf_counter()
    tx = tx.loc[(tx["quantity"] > 0) & (tx["sales_value"] > 0)]
    events = pd.DataFrame(
        {
            "user_id": tx["household_id"].astype(str), "order_key": tx["basket_id"].astype(str),
            "item_id": tx["product_id"].astype(str), "event_ts": tx["transaction_timestamp"],
            "event_type": "purchase", "quantity": tx["quantity"], "revenue": tx["sales_value"],
            "return_value": 0.0, "is_product": True,
        }
    )  # fmt: skip
    # fuel (quantity in thousandths of a gallon) and MISCELLANEOUS (fees, up to 36,140 units a line) are
    # the grocery's service lines, as POST and fees are Online Retail's: not products, out of the personas
    department = tx["product_id"].map(products.set_index("product_id")["department"])
    events["is_product"] = ~department.isin(["FUEL", "MISCELLANEOUS"]).to_numpy()
    items = pd.DataFrame({"item_id": products["product_id"].astype(str), "category": products["department"]})
    with duckdb.connect() as con:
        con.register("ev", events)
        con.register("it", items)
        features = con.execute(behaviour_sql("ev", "it")).df()
    sql_s = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    result = fit_personas(features, seed=seed)
    report = {"k": result.k, "criterion": result.criterion, "per_k": result.per_k, "buyers": len(features),
              "seconds": round(time.perf_counter() - started, 2), "personas": result.personas}  # fmt: skip
    out = {"data": "shared/data/complete-journey/transactions.parquet", "lines": len(events),
           "machine_idle": machine_idle, "features_sql_s": sql_s, **persona_keys(report)}  # fmt: skip
    return {f"complete_journey_{k}": v for k, v in out.items()} | {"cores": os.cpu_count()}


if __name__ == "__main__":
    main()
