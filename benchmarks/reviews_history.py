"""Benchmark: the real Amazon All Beauty 5-core reviews built as a shop through `personaflow history FOLDER`.

`personaflow history ../shared/data/reviews/amazon-all-beauty --manifest amazon-all-beauty-shop --no-train`
(the shipped manifest personaflow/ingest/mappings/amazon-all-beauty-shop.toml: the set has reviews only,
so each review is one view event of its reviewer) as one child process under `/usr/bin/time -v`: wall
time, CPU time, peak RSS, each stage's time; the rows kept and dropped (exact repeats); then what the
review marts, Feast's `user_reviews` snapshot and the /profile review file hold for the reviewers.
No model is trained (`--no-train`: views alone give a recommender nothing to learn from).
The log is sparse (reviews on a few days of its 5,085), so only its days with events become batches
(`--empty-days auto`, personaflow/ingest/landing.py): `nights_run` counts them, `span_days` the range.

Writes benchmarks/results/reviews_history.json (flat keys with units, cores, data size, whether the
machine was idle at the start).

    make bench-reviews-history
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
from _common import write_results
from complete_journey_history import _time_v, _wall_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reviews_history.json"
DATA = ROOT.parent / "shared" / "data" / "reviews" / "amazon-all-beauty"


def main() -> None:
    load = os.getloadavg()[0]
    out: dict[str, object] = {
        "data": "Amazon Review Data (2018), All Beauty 5-core (reviews/amazon-all-beauty/)",
        "cores": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine_idle": load < 0.5 * (os.cpu_count() or 1),
        "load_avg_1m_at_start": round(load, 2),
    }
    with tempfile.TemporaryDirectory(prefix="bench-reviews-history-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "PERSONAFLOW_HOME": str(home),
               "PERSONAFLOW_FEATURES_DIR": str(home / "features"), "PERSONAFLOW_SMTP_PORT": "1"}  # fmt: skip
        args = ["/usr/bin/time", "-v", sys.executable, "-m", "personaflow.cli", "history", str(DATA),
                "--manifest", "amazon-all-beauty-shop", "--no-train"]  # fmt: skip
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"personaflow history failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
        reviews = summary["tables"]["reviews"]
        out.update(
            {
                "history_wall_s": _wall_seconds(
                    _time_v(done.stderr, "Elapsed (wall clock) time (h:mm:ss or m:ss)")
                ),
                "history_peak_rss_mb": round(
                    int(_time_v(done.stderr, "Maximum resident set size (kbytes)")) / 1024, 1
                ),
                "history_user_cpu_s": float(_time_v(done.stderr, "User time (seconds)")),
                "history_system_cpu_s": float(_time_v(done.stderr, "System time (seconds)")),
                "review_records_read": reviews["records"],
                "review_rows_kept": reviews["rows"],
                "review_rows_dropped_exact_repeats": reviews["repeats_dropped"],
                "events_from_reviews": summary["events_from_reviews"]["events"],
                "events_without_reviewer": summary["events_from_reviews"]["without_reviewer"],
                "events_without_time": summary["events_from_reviews"]["without_time"],
                "customers": summary["customers"],
                "products": summary["products"],
                "days": summary["days"],
                "nights_run": summary["days"],  # batches loaded and validated, one per day with events
                "span_days": summary["span_days"],
                "empty_days_not_landed": summary["empty_days_not_landed"],
                "days_failed": len(summary["failed_days"]),
                "as_of": summary["as_of"],
                **{f"stage_{k}_s": v["seconds"] for k, v in summary["stages"].items()},
            }
        )
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
            [(reviewers, n_reviews, negative)] = con.execute(
                "select count(*), sum(n_reviews), sum(case when last_review_sentiment_label = 'negative' "
                "then 1 else 0 end) from marts.customer_reviews"
            ).fetchall()
            [(products,)] = con.execute("select count(*) from marts.product_reviews").fetchall()
        feast = pd.read_parquet(home / "features" / "user_reviews.parquet")
        profile = pd.read_parquet(home / "features" / "customer_reviews.parquet")
        out.update(
            {
                "mart_customer_reviews_rows": int(reviewers),
                "mart_customer_reviews_reviews": int(n_reviews),
                "mart_customers_last_review_negative": int(negative),
                "mart_product_reviews_rows": int(products),
                "feast_user_reviews_customers": int(feast["user_id"].nunique()),
                "profile_review_file_customers": int(profile["user_id"].nunique()),
            }
        )
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
