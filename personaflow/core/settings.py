"""The one config surface: environment variables with documented defaults, read by a pydantic-settings model.

`Settings` is the only reader of `PERSONAFLOW_*` (plus the two tool homes it owns, BENTOML_HOME and
AIRFLOW_HOME). Values are read when `load()` is called, not at import, so a test or a DAG run can point
a whole run elsewhere by setting environment variables first. README's "Settings" table lists the
same names. An empty variable means its default. The tools' own variables (dbt profile, Feast yaml,
BentoML, Airflow) are written once, at the process edge, by personaflow/core/tool_env.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

# A comma-separated variable (not JSON, which is what pydantic-settings expects of a tuple otherwise).
CommaList = Annotated[tuple[str, ...], NoDecode]
# Paths left unset here are derived from `home` after validation (see `_derived_paths`).
_UNDER_HOME = {
    "landing_dir": ("landing",),
    "quarantine_dir": ("quarantine",),
    "warehouse": ("warehouse.duckdb",),
    "features_dir": ("features",),
    "reports_dir": ("reports",),
    "bentoml_home": ("bentoml",),
    "production_pointer": ("registry", "production.json"),
    "airflow_home": ("airflow",),
    "api_token_file": ("secrets", "api_token"),
    "spark_dir": ("spark",),
}
_PATHS = (*_UNDER_HOME, "home", "dbt_project_dir", "feature_repo_dir", "forget_key_file")


def _unset() -> Any:
    return Field(default=None, validate_default=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERSONAFLOW_",
        env_ignore_empty=True,  # PERSONAFLOW_X= (empty) means the default, as before
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
    )

    home: Path = REPO_ROOT / ".personaflow"
    landing_dir: Path = _unset()
    quarantine_dir: Path = _unset()
    warehouse: Path = _unset()
    features_dir: Path = _unset()
    reports_dir: Path = _unset()
    # BentoML's and Airflow's own homes: read under the tools' names, exported back under them.
    bentoml_home: Path = Field(default=None, validate_default=False, validation_alias="BENTOML_HOME")
    production_pointer: Path = _unset()
    airflow_home: Path = Field(default=None, validate_default=False, validation_alias="AIRFLOW_HOME")
    dbt_project_dir: Path = REPO_ROOT / "dbt_project"
    feature_repo_dir: Path = REPO_ROOT / "feature_repo"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    alert_from: str = "personaflow@localhost"
    alert_to: CommaList = ("data-team@localhost",)
    holdout_days: int = 7
    seed: int = 42
    serve_host: str = "127.0.0.1"
    serve_port: int = 3000
    # Requests past this many in flight in a worker get 429 at once (BentoML's traffic.max_concurrency)
    # instead of queueing without bound.
    serve_max_in_flight: int = 256
    # Bearer tokens for the API's state-changing calls (POST /events), comma separated; without
    # any, the token in PERSONAFLOW_API_TOKEN_FILE (generated 0600 on the server's first start).
    api_tokens: CommaList = ()
    api_token_file: Path = _unset()
    # true: the read endpoints (/recommend, /similar_items, /profile, /metadata) need a token too.
    api_protect_reads: bool = False
    # Slow headers, slow bodies and connections per client address are the reverse proxy's limits
    # (deploy/nginx/personaflow.conf): no in-process code sees a request before its headers are in.
    # Host names the API answers to (DNS rebinding); empty: loopback names when serving on loopback,
    # any name when PERSONAFLOW_SERVE_HOST is not a loopback address. `*`: any.
    api_allowed_hosts: CommaList = ()
    airflow_host: str = "127.0.0.1"
    airflow_port: int = 8080
    airflow_user: str = "admin"
    # Empty: `personaflow up` writes a random one (0600) into AIRFLOW_HOME's SimpleAuthManager passwords
    # file before Airflow starts, and prints the file's path, not the password.
    airflow_password: str = ""
    # false: the scheduler runs only manual runs and backfills (demos on old data, tests)
    airflow_schedule: bool = True
    # single: dbt is one Airflow task; models: one task per dbt model, from the dbt manifest.
    dbt_tasks: Literal["single", "models"] = "single"
    # churn = no order within this many days after a cut-off: the dbt var churn_horizon_days that
    # marts.churn_labels is built with. The log must span more than it before churn can train.
    churn_horizon_days: int = 90
    # The nightly recommender. auto (default): chosen each night on the shop's own validation window
    # among popularity, repeat-buy, TIFU-KNN, item-kNN, SASRec and the DeepFM re-ranker over the best of
    # them (personaflow/training/choice.py; the cheaper option wins a tie). Or one recipe: bpr |
    # two_tower | sasrec | gru (personaflow/training/models/fit.py), blended with the repeat-buy baseline
    # when PERSONAFLOW_HYBRID is true, item_knn, or a baseline: tifu | repeat_buy | popularity. The gate
    # serves the best baseline instead whenever the candidate does not clearly win.
    model: str = "auto"
    hybrid: bool = True
    # DeepFM re-ranks each user's candidates (retrieval + history + co-purchase) over the features
    # (with auto: the re-ranker is an option, kept only when it beats its retrieval on validation).
    rerank: bool = True
    # How long after a batch day ends the nightly run waits for its file before it reports the
    # night as missing data (personaflow/pipeline/arrival.py).
    batch_wait_hours: float = 6.0
    # Model versions kept besides production and its rollback history
    # (personaflow/training/registry/retention.py).
    keep_candidates: int = 5
    # The scale path. A postgresql:// URL moves the warehouse (ingest, dbt, GX, features, training
    # reads) to PostgreSQL; `spark` moves it to Spark tables (raw events as Parquet partitioned by day,
    # dbt through dbt-spark: docs/guides/spark.md); empty: the DuckDB file above
    # (personaflow/core/warehouse.py).
    warehouse_url: str = ""
    # With PERSONAFLOW_WAREHOUSE_URL=spark: the Spark master (local[*]: this machine's cores, in this
    # process; yarn, k8s://https://host:443, spark://host:7077 on a cluster).
    spark_master: str = "local[*]"
    # Spark's warehouse dir (the tables' Parquet files: spark_dir/warehouse) and Derby metastore
    # (spark_dir/metastore_db); a cluster points spark.sql.warehouse.dir at shared storage through
    # PERSONAFLOW_SPARK_CONF instead.
    spark_dir: Path = _unset()
    # Further Spark confs, comma separated key=value (spark.executor.memory=8g,spark.executor.cores=4):
    # what a shop passes to spark-submit --conf. They win over the defaults personaflow/core/spark.py sets.
    spark_conf: CommaList = ()
    # The Spark driver JVM's heap (spark.driver.memory: 4g, 3072m), set when the session starts its JVM.
    # In local mode that JVM runs the executors' tasks too, so it is all the memory Spark computes in;
    # empty: there a quarter of this machine's memory (its cgroup limit if lower), at least 1g and at most
    # 8g (personaflow/core/spark.py: default_driver_memory), and on a cluster Spark's own default (the
    # driver only plans and collects). A `spark.driver.memory` in PERSONAFLOW_SPARK_CONF wins over it.
    spark_driver_memory: str = ""
    # A redis:// URL moves Feast's online store and the API's live counters to Redis; empty: SQLite.
    redis_url: str = ""
    # BentoML worker processes; more than one needs the Redis online store (nothing shared in-process).
    serve_workers: int = 1
    # Airflow's metadata DB: a postgresql:// URL (driven by psycopg 3); empty: SQLite in AIRFLOW_HOME.
    airflow_db_url: str = ""
    # local: LocalExecutor (tasks are children of the scheduler); celery: CeleryExecutor, with
    # PERSONAFLOW_CELERY_WORKERS `airflow celery worker` processes started by `personaflow up`.
    # celery needs the Postgres metadata DB (also the result backend) and a Redis broker.
    airflow_executor: str = "local"
    celery_workers: int = 2
    # Task slots per worker (one task = a few hundred MB; the `gpu` pool still allows one training).
    celery_concurrency: int = 1
    # The Celery broker; empty: PERSONAFLOW_REDIS_URL.
    celery_broker_url: str = ""
    # The OS user a local PostgreSQL runs as when we are root (personaflow/ops/local_servers.py).
    pg_os_user: str = "nobody"
    # Set by `personaflow up` for each `airflow celery worker` it starts: the worker's Celery node name.
    worker_name: str = ""
    # true: CLI failures show the traceback instead of one line (same as --debug).
    debug: bool = False
    # The key of the forgotten-id pseudonyms (personaflow/core/forgotten.py), kept apart from them:
    # the key itself (from a secret manager), else this file; default: a 0600 file in a 0700 folder
    # beside the home, not in it (a copy of the home carries no key).
    forget_key: str = ""
    forget_key_file: Path | None = _unset()

    @field_validator("alert_to", "api_tokens", "api_allowed_hosts", "spark_conf", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_allowed_hosts", mode="after")
    @classmethod
    def _lower_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.lower() for h in value)

    @field_validator("spark_conf", mode="after")
    @classmethod
    def _key_values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [part for part in value if "=" not in part or not part.split("=", 1)[0].strip()]
        if bad:
            raise ValueError(f"PERSONAFLOW_SPARK_CONF entries must be key=value, got {', '.join(bad)}")
        return value

    @field_validator("spark_driver_memory", mode="after")
    @classmethod
    def _jvm_size(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not re.fullmatch(r"[1-9][0-9]*[kmgt]?", value):
            raise ValueError(f"PERSONAFLOW_SPARK_DRIVER_MEMORY must be a JVM size (4g, 3072m), got {value!r}")
        return value

    @field_validator("airflow_executor", "dbt_tasks", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(*_PATHS, mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @model_validator(mode="after")
    def _derived_paths(self) -> Settings:
        """Paths not set one by one live under `home` (PERSONAFLOW_HOME)."""
        for name, parts in _UNDER_HOME.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.home.joinpath(*parts))
        if self.forget_key_file is None:
            key_file = self.home.parent / f"{self.home.name}-secrets" / "forget_key"
            object.__setattr__(self, "forget_key_file", key_file)
        return self


def load() -> Settings:
    """Read the settings from the environment (defaults keep everything under `.personaflow/`)."""
    return Settings()


def postgres_env(url: str) -> dict[str, str]:
    """What the dbt profile's `postgres` output reads (dbt_project/profiles.yml), from a postgresql:// URL:
    PERSONAFLOW_PG_HOST / _PORT / _USER / _PASSWORD / _DBNAME, and _SCHEMA (dbt's own schema; the models
    write staging, intermediate and marts whatever it is)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"PERSONAFLOW_WAREHOUSE_URL must start with postgresql://, got {parts.scheme}://")
    query = parse_qs(parts.query)
    return {
        "PERSONAFLOW_PG_HOST": parts.hostname or "127.0.0.1",
        "PERSONAFLOW_PG_PORT": str(parts.port or 5432),
        "PERSONAFLOW_PG_USER": unquote(parts.username or ""),
        "PERSONAFLOW_PG_PASSWORD": unquote(parts.password or ""),
        "PERSONAFLOW_PG_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "PERSONAFLOW_PG_SCHEMA": query.get("schema", ["public"])[0],
    }
