"""Benchmark: do demographics pay as churn features on The Complete Journey (../shared/data/complete-journey)?

The nightly way, on the real log: the transactions imported as events and the demographics (801 of 2,469
households) as the shipped manifest maps them (personaflow/ingest/mappings/complete-journey.toml), the
nightly dbt build, then the churn stage (personaflow.pipeline.profiles.churn),
which tries logistic regression and monotone gradient boosting each with and without the demographics as of
each cut-off, and keeps demographics only where the out-of-time validation says they pay (a paired
bootstrap 95 % interval of the ROC AUC gain above 0). Writes benchmarks/results/churn_demographics.json:
every candidate's validation ROC AUC, the gain interval, the chosen model and feature set, its held-out
ROC AUC / PR AUC, and the held-out figures of the same churn without the customer table.

    make bench-churn-demographics
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from _common import PeakRss, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "complete-journey"
RESULTS = ROOT / "benchmarks" / "results" / "churn_demographics.json"


def main() -> None:
    import pandas as pd

    idle = os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1)  # load before the timed work
    home = Path(tempfile.mkdtemp(prefix="personaflow-bench-churn-demo-"))
    os.environ.update({"PERSONAFLOW_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")})
    from personaflow.core import settings
    from personaflow.ingest.shop_folder import read_folder
    from personaflow.pipeline import ingest as ingest_stage
    from personaflow.pipeline import profiles as profiles_stage
    from personaflow.pipeline import transform as transform_stage
    from personaflow.pipeline.shop_tables import import_table

    s = settings.load()
    out: dict[str, object] = {
        "data": "The Complete Journey 2.0 (complete-journey/)", "cores": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%d", time.gmtime()), "machine_idle": idle,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "churn_horizon_days": s.churn_horizon_days,
    }  # fmt: skip
    started = time.perf_counter()
    with PeakRss() as rss:
        # the events and the customer table as the shipped manifest maps them (complete-journey.toml)
        shop = read_folder(DATA, "complete-journey", home / "mappings")
        events = shop.events
        imported = ingest_stage.import_events(events.path, events.format or "parquet", s,
                                              mapping=events.mapping, load=True,
                                              constants=events.constants)  # fmt: skip
        out["events"], out["users"] = imported["rows"], imported["customers"]
        table = next(t for t in shop.tables if t.kind == "customers")
        customers = import_table("customers", table.path, str(table.mapping), s)
        out["households_with_demographics"] = customers["customers"]
        last = pd.Timestamp(imported["batches"]["last_day"]).date()
        transform_stage.transform(last, s)
        out["import_and_transform_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        churn = profiles_stage.churn(last, s)
        out["churn_s"] = round(time.perf_counter() - started, 1)
    out["peak_rss_mb"] = round(rss.peak, 1)
    if churn["status"] != "ok":
        raise SystemExit(f"churn skipped: {churn['reason']}")
    for name, cand in churn["candidates"].items():
        key = name.replace("+", "_with_")
        out[f"{key}_val_roc_auc"], out[f"{key}_fit_s"] = cand["val_roc_auc"], cand["fit_s"]
        if "gain_low" in cand:
            out[f"{key}_val_gain_low"], out[f"{key}_val_gain_high"] = cand["gain_low"], cand["gain_high"]
    out["chosen_model"] = churn["model"]
    out["chosen_uses_demographics"] = "has_demographics" in churn["features"]
    out["choice"] = churn["choice"]
    out.update({f"test_{k}": round(v, 4) if isinstance(v, float) else v for k, v in churn["metrics"].items()})
    out["split"] = churn["split"]
    # the same split without the customer table: what the shop would get if it had none
    from personaflow.core.warehouse import location
    from personaflow.pipeline._common import read_mart
    from personaflow.profiles.churn import train_churn

    plain = train_churn(read_mart(location(s), "select * from marts.churn_labels", []), seed=s.seed)
    out["without_table_model"] = plain.model_name
    out["without_table_test_roc_auc"] = round(plain.metrics["roc_auc"], 4)
    out["without_table_test_pr_auc"] = round(plain.metrics["pr_auc"], 4)
    print(f"churn: {churn['choice']}; test ROC AUC {churn['metrics']['roc_auc']:.3f}")
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
