"""Feast definitions: users and items, and the profile features the dbt marts compute for them.

The sources are Parquet snapshots of `marts.user_features` / `marts.item_features`, one per nightly
run, stamped with the end of the run's as-of day (`feature_ts`); that stamp is what makes training
sets point-in-time correct.

Two more views serve the API: `user_purchases` (items each user bought, from marts.interactions, for
"do not recommend what they already bought") and `user_live`, fed by the `user_live_events` push
source: the serving API pushes a user's live activity since the last nightly run there (per UTC day,
as JSON), so the next /profile and /recommend see an event at once; the nightly run absorbs it later.
With the Redis online store (PERSONAFLOW_REDIS_URL) live activity is kept in Redis counters beside
Feast's keys instead (personaflow/serving/live_counters.py: atomic, shared by every worker); the view stays
defined, so both stores serve the same feature services.
`user_segment` and `user_churn` hold the segments and churn stages' outputs, `user_reviews` and
`item_reviews` the review marts' summaries (see below).
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float64, Int64, String

from personaflow.core.settings import load

# personaflow.core.feature_store.load_definitions sets FEATURES_DIR before running this file; run by
# `feast` itself, the settings say where.
_FEATURES_DIR = Path(globals().get("FEATURES_DIR") or load().features_dir)
# Long enough that a profile stays servable between rare visits; the nightly run refreshes it.
_TTL = timedelta(days=400)


# On a Spark warehouse (PERSONAFLOW_WAREHOUSE_URL=spark) the features stage sets SPARK_QUERIES before
# running this file: each source's Spark SQL (source name -> query), read by Feast's Spark offline store
# (personaflow/pipeline/features.py writes them). Unset (DuckDB, PostgreSQL, `feast` by hand): Parquet
# files read by the dask offline store.
_SPARK_QUERIES: dict[str, str] | None = globals().get("SPARK_QUERIES")


def _spark_source(table: str, timestamp_field: str, created: str | None):
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    return SparkSource(
        name=f"{table}_source" if table != "user_live" else "user_live_batch_source",
        query=_SPARK_QUERIES[table],
        timestamp_field=timestamp_field,
        created_timestamp_column=created,
    )


def _snapshots(table: str):
    """The Parquet file a nightly stage appends its snapshot to, stamped at the end of its as-of day
    (on Spark: the source's query over the `features` table or that file)."""
    if _SPARK_QUERIES is not None:
        return _spark_source(table, "feature_ts", "created_ts")
    return FileSource(
        name=f"{table}_source",
        path=str(_FEATURES_DIR / f"{table}.parquet"),
        timestamp_field="feature_ts",
        created_timestamp_column="created_ts",
    )


user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A shop customer")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalogue item")

user_source = _snapshots("user_features")
item_source = _snapshots("item_features")

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=_TTL,
    schema=[
        Field(name="recency_days", dtype=Int64),
        Field(name="frequency", dtype=Int64),
        Field(name="monetary", dtype=Float64),
        Field(name="r_score", dtype=Int64),
        Field(name="f_score", dtype=Int64),
        Field(name="m_score", dtype=Int64),
        Field(name="rfm_segment", dtype=String),
        Field(name="n_views", dtype=Int64),
        Field(name="n_carts", dtype=Int64),
        Field(name="n_purchases", dtype=Int64),
        Field(name="n_sessions", dtype=Int64),
        Field(name="last_event_ts", dtype=String),
    ],
    source=user_source,
    online=True,
    tags={"mart": "marts.user_features"},
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=_TTL,
    schema=[
        Field(name="category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="price", dtype=Float64),
        Field(name="item_n_views", dtype=Int64),
        Field(name="item_n_purchases", dtype=Int64),
        Field(name="item_n_buyers", dtype=Int64),
        Field(name="popularity_rank", dtype=Int64),
        Field(name="description", dtype=String),
        Field(name="is_product", dtype=Bool),
    ],
    source=item_source,
    online=True,
    tags={"mart": "marts.item_features"},
)

purchases_source = _snapshots("user_purchases")
user_purchases = FeatureView(
    name="user_purchases",
    entities=[user],
    ttl=_TTL,
    schema=[Field(name="purchased_items", dtype=Array(String))],
    source=purchases_source,
    online=True,
    tags={"mart": "marts.interactions"},
)

# The push source's batch source only exists because Feast requires one; the live file of record is
# the landing area's JSONL (see personaflow/ingest/live.py), loaded into raw.events by the nightly run.
live_push = PushSource(
    name="user_live_events",
    batch_source=FileSource(
        name="user_live_batch_source",
        path=str(_FEATURES_DIR / "user_live.parquet"),
        timestamp_field="event_timestamp",
    )
    if _SPARK_QUERIES is None
    else _spark_source("user_live", "event_timestamp", None),
)
user_live = FeatureView(
    name="user_live",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="live_buckets", dtype=String),
        Field(name="live_last_event_ts", dtype=String),
    ],
    source=live_push,
    online=True,
    tags={"source": "POST /events"},
)

# What the nightly segments and churn stages compute (personaflow/profiles/segments.py,
# personaflow/profiles/churn.py): each
# appends one snapshot stamped like the marts' (end of the as-of day) on the nights it runs. A night
# that skips (churn before the log spans the horizon, too few users) adds nothing; the last values stay.
segment_source = _snapshots("user_segment")
user_segment = FeatureView(
    name="user_segment",
    entities=[user],
    ttl=_TTL,
    schema=[
        Field(name="segment_id", dtype=Int64), Field(name="segment_label", dtype=String),
        Field(name="persona_id", dtype=Int64), Field(name="persona", dtype=String),
    ],
    source=segment_source,
    online=True,
    tags={"stage": "segments (K-means over RFM; personas: K-means over behaviour)"},
)
churn_source = _snapshots("user_churn")
user_churn = FeatureView(
    name="user_churn",
    entities=[user],
    ttl=_TTL,
    schema=[Field(name="churn_score", dtype=Float64)],
    source=churn_source,
    online=True,
    tags={"stage": "churn (logistic regression, P(no order within the horizon))"},
)

# The review marts' summaries (marts.customer_reviews / product_reviews), snapshotted by the features
# stage each night; empty for a shop without reviews.
user_reviews_source = _snapshots("user_reviews")
user_reviews = FeatureView(
    name="user_reviews",
    entities=[user],
    ttl=_TTL,
    schema=[Field(name="n_reviews", dtype=Int64), Field(name="mean_rating", dtype=Float64),
            Field(name="mean_sentiment", dtype=Float64), Field(name="share_negative", dtype=Float64),
            Field(name="last_review_sentiment_label", dtype=String)],  # fmt: skip
    source=user_reviews_source,
    online=True,
    tags={"stage": "reviews (sentiment fitted on the shop's own stars), marts.customer_reviews"},
)
item_reviews_source = _snapshots("item_reviews")
item_reviews = FeatureView(
    name="item_reviews",
    entities=[item],
    ttl=_TTL,
    schema=[Field(name="item_n_reviews", dtype=Int64), Field(name="item_mean_rating", dtype=Float64),
            Field(name="item_mean_sentiment", dtype=Float64),
            Field(name="item_share_negative", dtype=Float64)],  # fmt: skip
    source=item_reviews_source,
    online=True,
    tags={"stage": "reviews, marts.product_reviews"},
)

recommender_features = FeatureService(name="recommender_features", features=[user_profile, item_stats])
# What /profile reads (with the purchases and live views, in the same online call).
profile_features = FeatureService(name="profile_features", features=[user_profile, user_segment, user_churn])

DEFINITIONS = [
    user, item, user_source, item_source, purchases_source, live_push, segment_source, churn_source,
    user_reviews_source, item_reviews_source,
    user_profile, item_stats, user_purchases, user_live, user_segment, user_churn, user_reviews, item_reviews,
    recommender_features, profile_features,
]  # fmt: skip
# Views filled by a push, not by materialization from their batch source.
PUSH_FED_VIEWS = ("user_live",)
