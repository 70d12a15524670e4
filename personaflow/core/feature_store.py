"""The feature store handle every layer shares: Feast opened over `feature_repo/`, the user columns
serving reads, and the profile views the segments and churn stages feed.

The features stage (personaflow/pipeline/features.py) writes what Feast reads; training and serving only
open the store through here, so neither depends on the stage.
"""

from __future__ import annotations

import contextlib
import importlib.util
import urllib.parse
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType

from personaflow.core.spark import SparkWarehouse

# The variable feature_repo/feature_store.yaml names its folder by (what `feast` run by hand expands;
# open_store puts the value in itself).
FEATURES_DIR_VARIABLE = "PERSONAFLOW_FEATURES_DIR"
USER_COLUMNS = [
    "user_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment",
    "n_views", "n_carts", "n_purchases", "n_sessions", "last_event_ts",
]  # fmt: skip
# Feast sources the segments and churn stages append to (file = view name), with their typed columns.
# A night that skipped a stage adds no rows: the online store keeps the last values.
PROFILE_SOURCES = {
    "user_segment": {
        "user_id": "string", "segment_id": "int64", "segment_label": "string", "persona_id": "int64",
        "persona": "string",
    },
    "user_churn": {"user_id": "string", "churn_score": "float64"},
}
# The review marts' summaries (marts.customer_reviews / product_reviews), snapshotted each night like the
# profile marts: empty typed files for a shop without reviews. Item names are prefixed: feature names
# must be unique across a feature service.
REVIEW_SOURCES = {
    "user_reviews": {
        "user_id": "string", "n_reviews": "int64", "mean_rating": "float64", "mean_sentiment": "float64",
        "share_negative": "float64", "last_review_sentiment_label": "string",
    },
    "item_reviews": {
        "item_id": "string", "item_n_reviews": "int64", "item_mean_rating": "float64",
        "item_mean_sentiment": "float64", "item_share_negative": "float64",
    },
}  # fmt: skip
REVIEW_MARTS = {"user_reviews": "customer_reviews", "item_reviews": "product_reviews"}
# Every source's declared column types (what the Feast views read), so that the day files of one
# source (personaflow/pipeline/features.py writes one per night) share one schema.
_INTS = ("recency_days", "frequency", "r_score", "f_score", "m_score", "n_views", "n_carts", "n_purchases",
         "n_sessions", "item_n_views", "item_n_purchases", "item_n_buyers", "popularity_rank")  # fmt: skip
SNAPSHOT_TYPES = {
    "user_features": {
        "user_id": "string", "monetary": "float64", "rfm_segment": "string", "last_event_ts": "string",
        **dict.fromkeys(_INTS[:9], "int64"),
    },
    "item_features": {
        "item_id": "string", "category": "string", "brand": "string", "price": "float64",
        "description": "string", "is_product": "bool", **dict.fromkeys(_INTS[9:], "int64"),
    },
    "user_purchases": {"user_id": "string", "purchased_items": "list<string>"},
    **PROFILE_SOURCES,
    **REVIEW_SOURCES,
}  # fmt: skip


def day_end(as_of: date) -> datetime:
    """Features computed from a day's data become valid at the end of that day."""
    return datetime(as_of.year, as_of.month, as_of.day) + timedelta(days=1) - timedelta(seconds=1)


def load_definitions(
    repo_dir: Path, features_dir: Path, spark_queries: dict[str, str] | None = None
) -> ModuleType:
    """The repo's features.py, its sources under `features_dir` (set as FEATURES_DIR before it runs);
    with `spark_queries` (a Spark warehouse) every source is a SparkSource reading that query."""
    spec = importlib.util.spec_from_file_location("personaflow_feature_definitions", repo_dir / "features.py")
    module = importlib.util.module_from_spec(spec)
    module.FEATURES_DIR = Path(features_dir)
    if spark_queries is not None:
        module.SPARK_QUERIES = dict(spark_queries)
    spec.loader.exec_module(module)
    return module


def feast_redis_connection(url: str) -> str:
    """A redis:// URL (PERSONAFLOW_REDIS_URL) as Feast's redis `connection_string`
    (`host:port,db=N,password=...`): Feast does not take URLs, and one URL is the project's setting."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"PERSONAFLOW_REDIS_URL={url!r}: expected redis://[user:password@]host[:port][/db]")
    out = [f"{parts.hostname}:{parts.port or 6379}"]
    db = parts.path.strip("/")
    if db:
        if not db.isdigit():
            raise ValueError(f"PERSONAFLOW_REDIS_URL={url!r}: the database {db!r} is not a number")
        out.append(f"db={int(db)}")
    if parts.username:
        out.append(f"username={urllib.parse.unquote(parts.username)}")
    if parts.password:
        password = urllib.parse.unquote(parts.password)
        if "," in password:  # Feast splits its connection string on commas
            raise ValueError("PERSONAFLOW_REDIS_URL: Feast cannot pass a password containing ','")
        out.append(f"password={password}")
    if parts.scheme == "rediss":
        out.append("ssl=true")
    return ",".join(out)


def spark_offline_store(where: SparkWarehouse, staging: Path | None = None) -> dict[str, object]:
    """Feast's Spark offline store config for the warehouse's session. Feast takes the process's active
    SparkSession (personaflow/core/spark.py starts it with the Hive catalog the `features` tables live
    in); the confs are what Feast would start one with if none ran, the same session as `spark.session`.

    `staging`: a folder for the store's `staging_location`. With it a retrieval job's `to_arrow` (what
    Feast's materialization reads a view's interval through, and what the features stage reads its
    point-in-time rows through) has Spark write the rows as Parquet there and reads the files with
    pyarrow; without it `to_arrow` is a `toPandas`, which gathers every partition's Arrow batches in the
    driver JVM's heap before Python sees one ("serve-Arrow" OutOfMemoryError at 10 M events, issue 24).
    Feast never removes what it writes there: give a scratch folder that is removed afterwards (on a
    cluster one on shared storage, as the features dir)."""
    from personaflow.core.spark import confs

    conf = confs(where) | {"spark.master": where.master, "spark.sql.catalogImplementation": "hive"}
    store: dict[str, object] = {"type": "spark", "spark_conf": conf}
    if staging is not None:
        store["staging_location"] = str(Path(staging).resolve())  # Feast takes only absolute local paths
    return store


@contextlib.contextmanager
def feast_on_spark(where: SparkWarehouse) -> Iterator[None]:
    """The process's SparkSession started for Feast's Spark offline store, and the one session conf
    Feast sets on every call (`spark.sql.parser.quotedRegexColumnNames=true`: a backquoted name in a
    select list becomes a regex) put back afterwards, so dbt's and the loaders' SQL keep their meaning."""
    from personaflow.core import spark

    session = spark.session(where)
    key = "spark.sql.parser.quotedRegexColumnNames"
    before = session.conf.get(key, "false")
    try:
        yield
    finally:
        session.conf.set(key, before)


def open_store(
    repo_dir: Path,
    features_dir: Path,
    redis_url: str | None = None,
    registry_dir: Path | None = None,
    offline: SparkWarehouse | None = None,
    staging_dir: Path | None = None,
):
    """A FeatureStore over our repo, its registry and SQLite online store under `features_dir`.

    The config is built here from the repo's feature_store.yaml with `${PERSONAFLOW_FEATURES_DIR}` put
    in as `features_dir` (the value is passed in; the environment is not read or written). With a Redis
    URL (default: the PERSONAFLOW_REDIS_URL setting) the online store is Feast's redis store; the yaml
    keeps the embedded SQLite default (a yaml variable cannot switch the store's type and its fields
    together). With `offline` (a Spark warehouse) the offline store is Feast's Spark store on its
    session: the registry the features stage applied there holds SparkSources, which only it reads;
    `staging_dir` is its staging folder (`spark_offline_store`)."""
    import yaml
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    features_dir.mkdir(parents=True, exist_ok=True)
    if redis_url is None:
        from personaflow.core.settings import load

        redis_url = load().redis_url
    text = (Path(repo_dir) / "feature_store.yaml").read_text()
    raw = yaml.safe_load(text.replace("${" + FEATURES_DIR_VARIABLE + "}", str(features_dir)))
    if registry_dir is not None:  # a scratch registry over the same online store (the features stage)
        raw["registry"]["path"] = str(Path(registry_dir) / "registry.db")
    if offline is not None:
        raw["offline_store"] = spark_offline_store(offline, staging_dir)
    if redis_url:
        raw["online_store"] = {"type": "redis", "connection_string": feast_redis_connection(redis_url)}
    config = RepoConfig(**raw)
    config.repo_path = Path(repo_dir)
    return FeatureStore(repo_path=str(repo_dir), config=config)


def online_profile(repo_dir: Path, features_dir: Path, user_ids: list[str]) -> list[dict[str, object]]:
    """Read users' profiles back from the online store (what serving sees)."""
    store = open_store(repo_dir, features_dir)
    refs = [f"user_profile:{name}" for name in USER_COLUMNS[1:]]
    rows = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    return [{key: rows[key][i] for key in rows} for i in range(len(user_ids))]
