"""Feast definitions: users and items, and the profile features the dbt marts compute for them.

The sources are Parquet snapshots of `marts.user_features` / `marts.item_features`, one per nightly
run, stamped with the end of the run's as-of day (`feature_ts`); that stamp is what makes training
sets point-in-time correct.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from personaflow.settings import load

_FEATURES_DIR = Path(load().features_dir)
# Long enough that a profile stays servable between rare visits; the nightly run refreshes it.
_TTL = timedelta(days=400)

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A shop customer")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalogue item")

user_source = FileSource(
    name="user_features_source",
    path=str(_FEATURES_DIR / "user_features.parquet"),
    timestamp_field="feature_ts",
    created_timestamp_column="created_ts",
)
item_source = FileSource(
    name="item_features_source",
    path=str(_FEATURES_DIR / "item_features.parquet"),
    timestamp_field="feature_ts",
    created_timestamp_column="created_ts",
)

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
    ],
    source=item_source,
    online=True,
    tags={"mart": "marts.item_features"},
)

recommender_features = FeatureService(name="recommender_features", features=[user_profile, item_stats])

DEFINITIONS = [user, item, user_source, item_source, user_profile, item_stats, recommender_features]
