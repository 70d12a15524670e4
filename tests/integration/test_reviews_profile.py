"""Reviews in a tiny shop, through the nightly path: events and a reviews export imported, the nightly
`dbt build` makes marts.customer_reviews / product_reviews (a review dated after the night is not
seen yet), the audiences stage picks "customers whose last review was negative" and writes the
summaries /profile answers from, and `personaflow forget` leaves no byte of the reviewer behind."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from personaflow.core import settings as config
from personaflow.core.feature_store import day_end, open_store
from personaflow.ingest.generate import generate_shop, write_shop
from personaflow.pipeline import features as features_stage
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline import transform as transform_stage
from personaflow.pipeline.audiences import refresh_saved, run_audience
from personaflow.pipeline.forget import forget_user
from personaflow.pipeline.reviews import import_reviews, reviews_of
from personaflow.profiles.audiences import AudienceSpec
from personaflow.serving.reviews import ReviewSummaries
from personaflow.serving.schemas import ReviewSummary

GOOD = ["Love it, soft and flattering, great quality", "Perfect fit, beautiful colour, so comfortable",
        "Gorgeous, I wear it all the time", "Excellent, exactly as pictured, very happy"]  # fmt: skip
BAD = ["Runs very small and the fabric is cheap and itchy", "Poor quality, ripped after one wash, returned",
       "Terrible fit, way too tight, disappointed", "Cheap thin material, not worth the price"]  # fmt: skip


@pytest.fixture()
def shop(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path / "home"))
    for name in ("WAREHOUSE", "LANDING_DIR", "REPORTS_DIR", "WAREHOUSE_URL"):
        monkeypatch.delenv(f"PERSONAFLOW_{name}", raising=False)
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "home" / "features"))
    s = config.load()
    generated = generate_shop(users=150, items=30, days=8, seed=3)
    write_shop(generated, s.landing_dir)
    last = generated.events["event_ts"].max().date()
    ingest_stage.ingest_history(last, s)
    buyers = sorted(generated.events["user_id"].unique())
    return s, last, buyers


def _review(user: str, item: str, stars: int, text: str, when: datetime) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "overall": stars, "reviewText": text,
                       "summary": "", "unixReviewTime": int(when.timestamp())})  # fmt: skip


def test_reviews_reach_marts_audiences_and_profile_and_forget_erases_them(shop, tmp_path):
    s, last, buyers = shop
    angry, happy, later = buyers[0], buyers[1], buyers[2]
    night = datetime.combine(last, datetime.min.time())
    lines = []
    for i, user in enumerate(buyers[3:63]):  # the shop's other reviews: enough stars of both kinds to learn
        good = i % 2 == 0
        text = (GOOD if good else BAD)[(i // 2) % 4]
        lines.append(_review(user, f"i{i % 7:05d}", 5 if good else 1, text, night - timedelta(days=3)))
    lines += [
        _review(angry, "i00001", 5, GOOD[0], night - timedelta(days=5)),
        _review(angry, "i00002", 1, BAD[0], night - timedelta(days=1)),  # their newest: negative
        _review(happy, "i00002", 2, BAD[2], night - timedelta(days=6)),
        _review(happy, "i00003", 5, GOOD[1], night - timedelta(days=2)),  # their newest: positive
        _review(later, "i00004", 1, BAD[3], night + timedelta(days=3)),  # after the night: not seen yet
    ]
    lines.append(lines[-1])  # an exact repeat
    export = tmp_path / "reviews.jsonl"
    export.write_text("\n".join(lines) + "\n")

    imported = import_reviews(export, "amazon-all-beauty", s, marts=False)
    assert imported["repeats_dropped"] == 1 and imported["rows"] == 65
    assert imported["sentiment"]["amazon-all-beauty"]["model_kind"] == "ratings"
    again = import_reviews(export, "amazon-all-beauty", s, score=False, marts=False)
    assert again["replay"] and again["source_rows"] == 65  # a re-run changes nothing

    built = transform_stage.transform(last, s)  # the nightly dbt build, reviews models included
    assert built["rows"]["marts.customer_reviews"] == 62  # 60 + angry + happy; `later` not yet
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        row = con.execute(
            "select n_reviews, mean_rating, share_negative, last_review_sentiment_label, "
            "top_complaint_aspects "
            "from marts.customer_reviews where user_id = ?",
            [angry],
        ).fetchone()
        assert row[:4] == (2, 3.0, 0.5, "negative") and "size" in row[4]
        assert con.execute(
            "select count(*) from marts.customer_reviews where user_id = ?", [later]
        ).fetchone() == (0,)
        assert (
            con.execute("select n_reviews from marts.product_reviews where item_id = 'i00002'").fetchone()[0]
            >= 2
        )

    refresh_saved(s)  # the nightly audiences stage: also writes the review summaries /profile reads
    picked = run_audience(AudienceSpec(last_review_sentiment="negative"), s, show=100)
    members = {m["user_id"] for m in picked["first"]}
    assert angry in members and happy not in members and picked["size"] == len(members)
    summary = ReviewSummaries(s.features_dir).get(angry)
    answer = ReviewSummary(**summary)  # what /profile carries under `reviews`
    assert answer.n_reviews == 2 and answer.last_review_sentiment == "negative"
    assert "size" in answer.top_complaint_aspects
    assert ReviewSummaries(s.features_dir).get("nobody") is None

    # In Feast too (issue 23): the features stage snapshots the review marts as of the night; online the
    # mart's values, and point in time nothing before the night's stamp
    features_stage.features(last, s)
    store = open_store(s.feature_repo_dir, s.features_dir)
    online = store.get_online_features(
        features=["user_reviews:n_reviews", "user_reviews:mean_rating", "user_reviews:share_negative",
                  "user_reviews:last_review_sentiment_label"],
        entity_rows=[{"user_id": angry}, {"user_id": later}],
    ).to_dict()  # fmt: skip
    assert online["n_reviews"] == [2, None] and online["mean_rating"] == [3.0, None]
    assert online["share_negative"][0] == 0.5 and online["last_review_sentiment_label"][0] == "negative"
    item = store.get_online_features(features=["item_reviews:item_n_reviews"],
                                     entity_rows=[{"item_id": "i00002"}]).to_dict()  # fmt: skip
    assert item["item_n_reviews"][0] >= 2
    when = pd.to_datetime([day_end(last) - timedelta(days=1), day_end(last) + timedelta(hours=1)])
    entity = pd.DataFrame({"user_id": [angry] * 2, "event_timestamp": when.tz_localize("UTC")})
    joined = store.get_historical_features(entity_df=entity, features=["user_reviews:n_reviews"]).to_df()
    by_time = joined.set_index(joined["event_timestamp"].dt.tz_convert("UTC"))["n_reviews"]
    assert pd.isna(by_time.get(entity["event_timestamp"][0])) and by_time[entity["event_timestamp"][1]] == 2

    theirs = reviews_of(angry, s)  # what an own-data export carries of their reviews
    assert [r["rating"] for r in theirs["reviews"]] == [5.0, 1.0]
    assert theirs["reviews"][1]["raw_record"]["reviewText"] == BAD[0]  # as it came
    assert "size" in theirs["reviews"][1]["complaint_aspects"] and theirs["summary"]["n_reviews"] == 2

    result = forget_user(angry, s)
    assert result["still_holding"] == []
    # dbt's target folder is the project compiled (its unit tests' fixtures use the same ids): shipped,
    # never data, never rewritten (personaflow/pipeline/forget.py)
    shipped = s.home / "dbt" / "target"
    left = [str(p) for p in s.home.rglob("*")
            if p.is_file() and shipped not in p.parents and angry.encode() in p.read_bytes()]  # fmt: skip
    assert left == []
    assert ReviewSummaries(s.features_dir).get(angry) is None
    assert reviews_of(angry, s)["reviews"] == []
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.reviews where user_id = ?", [angry]).fetchone() == (0,)
        assert con.execute("select count(*) from raw.reviews").fetchone() == (63,)
