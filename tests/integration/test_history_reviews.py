"""`personaflow history FOLDER` on real reviews: a slice of the Amazon All Beauty 5-core set (the reviews
of 2018, read from ../shared/data and written to a temporary folder, never into the repo) through the
shipped manifest `amazon-all-beauty-shop` (--no-train). The set has reviews only, so each review is a
view event of its reviewer; the exact repeats are dropped once, counted, and never become events; the
review marts, Feast's review view and /profile's review fields are filled for every reviewer, and
their segments say that none of them bought (not RFM's "New Customers")."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from personaflow.core.settings import REPO_ROOT

SOURCE = REPO_ROOT.parent / "shared" / "data" / "reviews" / "amazon-all-beauty" / "All_Beauty_5.json.gz"


def _slice(folder: Path) -> list[dict]:
    """The 2018 reviews of the real file, as they came (one JSON line each), in a folder of their own."""
    folder.mkdir()
    lines = [line for line in gzip.open(SOURCE, "rt", encoding="utf-8") if line.strip()]
    start = datetime(2018, 1, 1, tzinfo=UTC).timestamp()
    kept = [line for line in lines if json.loads(line)["unixReviewTime"] >= start]
    with gzip.open(folder / "All_Beauty_5.json.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(kept)
    return [json.loads(line) for line in kept]


def test_real_reviews_in_a_history_folder_fill_the_marts_feast_and_the_profile(tmp_path: Path) -> None:
    records = _slice(tmp_path / "beauty")
    key = pd.DataFrame(records)[["reviewerID", "asin", "unixReviewTime", "reviewText"]].astype(str)
    repeats = int(key.duplicated().sum())
    reviews = len(records) - repeats
    per_reviewer = key.drop_duplicates().groupby("reviewerID").size()
    assert repeats > 0 and len(per_reviewer) > 50  # the slice holds real repeats and many reviewers

    home = tmp_path / "home"
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
           "PERSONAFLOW_SMTP_PORT": "1"}  # fmt: skip
    args = [sys.executable, "-m", "personaflow.cli", "history", str(tmp_path / "beauty"),
            "--manifest", "amazon-all-beauty-shop", "--no-train"]  # fmt: skip
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    table = summary["tables"]["reviews"]
    assert (table["records"], table["repeats_dropped"], table["rows"]) == (len(records), repeats, reviews)
    assert summary["events_from_reviews"]["events"] == reviews and summary["rows"] == reviews
    assert summary["customers"] == len(per_reviewer) and summary["failed_days"] == []

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        marts = dict(con.execute("select user_id, n_reviews from marts.customer_reviews").fetchall())
        views = dict(con.execute("select user_id, n_views from marts.user_features").fetchall())
        # /profile answers a customer the nightly features hold with a segment (serving/profile.py)
        unsegmented = con.execute(
            "select count(*) from marts.user_features where rfm_segment is null"
        ).fetchone()[0]
        types = con.execute("select distinct event_type from raw.events").fetchall()
        rfm = con.execute("select distinct rfm_segment from marts.user_features").fetchall()
    assert marts == per_reviewer.to_dict()  # every reviewer, each review once
    assert {u: views[u] for u in marts} == marts and types == [("view",)]  # one view per review, no sale
    assert unsegmented == 0
    # nobody bought: /profile's `segment` (RFM) and `segment_label` (K-means) say so, not "New Customers"
    assert rfm == [("No Purchase Yet",)]
    segments = pd.read_parquet(home / "features" / "user_segments.parquet")
    assert set(segments["user_id"]) == set(per_reviewer.index)
    labels = set(segments["segment_label"])
    assert labels and all("reviewers, no purchase yet" in label for label in labels), labels
    assert set(segments["persona"]) == {"not yet buyers"}

    feast = pd.read_parquet(home / "features" / "user_reviews.parquet")
    assert set(feast["user_id"]) == set(per_reviewer.index)
    assert feast["mean_sentiment"].notna().all() and feast["n_reviews"].sum() == reviews

    # /profile: the service answers a reviewer (the nightly row exists) with their review fields
    from personaflow.serving.reviews import ReviewSummaries

    busiest = per_reviewer.idxmax()
    fields = ReviewSummaries(home / "features").get(busiest)
    assert fields is not None and fields["n_reviews"] == per_reviewer[busiest]
    ratings = [r["overall"] for r in records if r["reviewerID"] == busiest]
    assert fields["mean_rating"] == pytest.approx(
        pd.DataFrame(records).drop_duplicates(["reviewerID", "asin", "unixReviewTime", "reviewText"])
        .query("reviewerID == @busiest")["overall"].mean()
    ) and min(ratings) <= fields["mean_rating"] <= max(ratings)  # fmt: skip
    assert fields["last_review_sentiment"] in ("negative", "positive")
