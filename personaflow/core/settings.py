"""The one config surface: environment variables with documented defaults.

Every path, URL and address the project uses is read here and nowhere else. Values are read when
`load()` is called, not at import, so a test or a DAG run can point a whole run elsewhere by setting
environment variables first. README's "Settings" table lists the same names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _path(name: str, default: Path) -> Path:
    return Path(_env(name, str(default))).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_dir: Path
    quarantine_dir: Path
    warehouse: Path
    features_dir: Path
    reports_dir: Path
    bentoml_home: Path
    production_pointer: Path
    airflow_home: Path
    dbt_project_dir: Path
    feature_repo_dir: Path
    smtp_host: str
    smtp_port: int
    alert_from: str
    alert_to: tuple[str, ...]
    holdout_days: int
    seed: int
    serve_host: str
    serve_port: int
    serve_max_in_flight: int
    api_tokens: tuple[str, ...] = ()
    api_token_file: Path = REPO_ROOT / ".personaflow" / "secrets" / "api_token"
    api_protect_reads: bool = False
    serve_body_timeout: float = 5.0
    serve_header_timeout: float = 10.0
    serve_max_per_client: int = 64
    api_allowed_hosts: tuple[str, ...] = ()
    airflow_host: str = "127.0.0.1"
    airflow_port: int = 8080
    airflow_user: str = "admin"
    airflow_password: str = ""
    airflow_schedule: bool = True
    churn_horizon_days: int = 90
    model: str = "tifu"
    hybrid: bool = True
    rerank: bool = True
    batch_wait_hours: float = 6.0
    keep_candidates: int = 5
    warehouse_url: str = ""
    redis_url: str = ""
    serve_workers: int = 1
    airflow_db_url: str = ""
    airflow_executor: str = "local"
    celery_workers: int = 2
    celery_concurrency: int = 1
    celery_broker_url: str = ""
    forget_key: str = ""
    forget_key_file: Path | None = None


def load() -> Settings:
    """Read the settings from the environment (defaults keep everything under `.personaflow/`)."""
    home = _path("PERSONAFLOW_HOME", REPO_ROOT / ".personaflow")
    return Settings(
        home=home,
        landing_dir=_path("PERSONAFLOW_LANDING_DIR", home / "landing"),
        quarantine_dir=_path("PERSONAFLOW_QUARANTINE_DIR", home / "quarantine"),
        warehouse=_path("PERSONAFLOW_WAREHOUSE", home / "warehouse.duckdb"),
        features_dir=_path("PERSONAFLOW_FEATURES_DIR", home / "features"),
        reports_dir=_path("PERSONAFLOW_REPORTS_DIR", home / "reports"),
        bentoml_home=_path("BENTOML_HOME", home / "bentoml"),
        production_pointer=_path("PERSONAFLOW_PRODUCTION_POINTER", home / "registry" / "production.json"),
        airflow_home=_path("AIRFLOW_HOME", home / "airflow"),
        dbt_project_dir=_path("PERSONAFLOW_DBT_PROJECT_DIR", REPO_ROOT / "dbt_project"),
        feature_repo_dir=_path("PERSONAFLOW_FEATURE_REPO_DIR", REPO_ROOT / "feature_repo"),
        smtp_host=_env("PERSONAFLOW_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(_env("PERSONAFLOW_SMTP_PORT", "8025")),
        alert_from=_env("PERSONAFLOW_ALERT_FROM", "personaflow@localhost"),
        alert_to=tuple(
            a.strip() for a in _env("PERSONAFLOW_ALERT_TO", "data-team@localhost").split(",") if a.strip()
        ),
        holdout_days=int(_env("PERSONAFLOW_HOLDOUT_DAYS", "7")),
        seed=int(_env("PERSONAFLOW_SEED", "42")),
        serve_host=_env("PERSONAFLOW_SERVE_HOST", "127.0.0.1"),
        serve_port=int(_env("PERSONAFLOW_SERVE_PORT", "3000")),
        # Requests past this many in flight get 503 at once instead of queueing without bound.
        serve_max_in_flight=int(_env("PERSONAFLOW_SERVE_MAX_IN_FLIGHT", "256")),
        # Bearer tokens for the API's state-changing calls (POST /events), comma separated; without
        # any, the token in PERSONAFLOW_API_TOKEN_FILE (generated 0600 on the server's first start).
        api_tokens=tuple(t.strip() for t in _env("PERSONAFLOW_API_TOKENS", "").split(",") if t.strip()),
        api_token_file=_path("PERSONAFLOW_API_TOKEN_FILE", home / "secrets" / "api_token"),
        # true: the read endpoints (/recommend, /similar_items, /profile, /metadata) need a token too.
        api_protect_reads=_env("PERSONAFLOW_API_PROTECT_READS", "false").lower() in ("1", "true", "yes"),
        # A request body not complete within this many seconds answers 408 (slow clients, slowloris).
        serve_body_timeout=float(_env("PERSONAFLOW_SERVE_BODY_TIMEOUT", "5")),
        # A connection whose request headers are not in within this many seconds is closed.
        serve_header_timeout=float(_env("PERSONAFLOW_SERVE_HEADER_TIMEOUT", "10")),
        # Requests at once from one client address; past it 429 (one client cannot take every slot).
        serve_max_per_client=int(_env("PERSONAFLOW_SERVE_MAX_PER_CLIENT", "64")),
        # Host names the API answers to (DNS rebinding); empty: loopback names when serving on loopback,
        # any name when PERSONAFLOW_SERVE_HOST is not a loopback address. `*`: any.
        api_allowed_hosts=tuple(
            h.strip().lower() for h in _env("PERSONAFLOW_API_ALLOWED_HOSTS", "").split(",") if h.strip()
        ),
        airflow_host=_env("PERSONAFLOW_AIRFLOW_HOST", "127.0.0.1"),
        airflow_port=int(_env("PERSONAFLOW_AIRFLOW_PORT", "8080")),
        airflow_user=_env("PERSONAFLOW_AIRFLOW_USER", "admin"),
        # Empty: `personaflow up` writes a random one (0600) into AIRFLOW_HOME's SimpleAuthManager passwords
        # file before Airflow starts, and prints the file's path, not the password.
        airflow_password=_env("PERSONAFLOW_AIRFLOW_PASSWORD", ""),
        # false: the scheduler runs only manual runs and backfills (demos on old data, tests)
        airflow_schedule=_env("PERSONAFLOW_AIRFLOW_SCHEDULE", "true").lower() in ("1", "true", "yes"),
        # churn = no order within this many days after a cut-off: the dbt var churn_horizon_days that
        # marts.churn_labels is built with. The log must span more than it before churn can train.
        churn_horizon_days=int(_env("PERSONAFLOW_CHURN_HORIZON_DAYS", "90")),
        # The nightly recommender: bpr | two_tower | sasrec | gru (personaflow/training/models/fit.py),
        # blended with the
        # repeat-buy baseline when PERSONAFLOW_HYBRID is true (weight tuned on a validation window), or a
        # baseline: tifu | repeat_buy | popularity. Default by measurement (benchmarks/recommenders.py on
        # retail-30d): DeepFM re-ranking TIFU-KNN + history + co-purchase candidates; the gate serves
        # the best baseline instead whenever that does not clearly win.
        model=_env("PERSONAFLOW_MODEL", "tifu"),
        hybrid=_env("PERSONAFLOW_HYBRID", "true").lower() in ("1", "true", "yes"),
        # DeepFM re-ranks each user's candidates (retrieval + history + co-purchase) over the features.
        rerank=_env("PERSONAFLOW_RERANK", "true").lower() in ("1", "true", "yes"),
        # How long after a batch day ends the nightly run waits for its file before it reports the
        # night as missing data (personaflow/pipeline/arrival.py).
        batch_wait_hours=float(_env("PERSONAFLOW_BATCH_WAIT_HOURS", "6")),
        # Model versions kept besides production and its rollback history
        # (personaflow/training/registry/retention.py).
        keep_candidates=int(_env("PERSONAFLOW_KEEP_CANDIDATES", "5")),
        # The scale path. A postgresql:// URL moves the warehouse (ingest, dbt, GX, features, training
        # reads) to PostgreSQL; empty: the DuckDB file above (personaflow/core/warehouse.py).
        warehouse_url=_env("PERSONAFLOW_WAREHOUSE_URL", ""),
        # A redis:// URL moves Feast's online store and the API's live counters to Redis; empty: SQLite.
        redis_url=_env("PERSONAFLOW_REDIS_URL", ""),
        # BentoML worker processes; more than one needs the Redis online store (nothing shared in-process).
        serve_workers=int(_env("PERSONAFLOW_SERVE_WORKERS", "1")),
        # Airflow's metadata DB: a postgresql:// URL (driven by psycopg 3); empty: SQLite in AIRFLOW_HOME.
        airflow_db_url=_env("PERSONAFLOW_AIRFLOW_DB_URL", ""),
        # local: LocalExecutor (tasks are children of the scheduler); celery: CeleryExecutor, with
        # PERSONAFLOW_CELERY_WORKERS `airflow celery worker` processes started by `personaflow up`.
        # celery needs the Postgres metadata DB (also the result backend) and a Redis broker.
        airflow_executor=_env("PERSONAFLOW_AIRFLOW_EXECUTOR", "local").lower(),
        celery_workers=int(_env("PERSONAFLOW_CELERY_WORKERS", "2")),
        # Task slots per worker (one task = a few hundred MB; the `gpu` pool still allows one training).
        celery_concurrency=int(_env("PERSONAFLOW_CELERY_CONCURRENCY", "1")),
        # The Celery broker; empty: PERSONAFLOW_REDIS_URL.
        celery_broker_url=_env("PERSONAFLOW_CELERY_BROKER_URL", ""),
        # The key of the forgotten-id pseudonyms (personaflow/core/forgotten.py), kept apart from them:
        # the key itself (from a secret manager), else this file; default: a 0600 file in a 0700
        # folder beside the home, not in it (a copy of the home carries no key).
        forget_key=_env("PERSONAFLOW_FORGET_KEY", ""),
        forget_key_file=_path(
            "PERSONAFLOW_FORGET_KEY_FILE", home.parent / f"{home.name}-secrets" / "forget_key"
        ),
    )


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


def export_tool_env(settings: Settings) -> None:
    """Point the tools that read their own variables (dbt profile, BentoML, Airflow) at our paths."""
    os.environ["PERSONAFLOW_WAREHOUSE"] = str(settings.warehouse)
    if settings.warehouse_url:
        os.environ.update(postgres_env(settings.warehouse_url))
    os.environ["BENTOML_HOME"] = str(settings.bentoml_home)
    os.environ["AIRFLOW_HOME"] = str(settings.airflow_home)
    os.environ["PERSONAFLOW_FEATURES_DIR"] = str(settings.features_dir)
    os.environ["PERSONAFLOW_PRODUCTION_POINTER"] = str(settings.production_pointer)
    # BentoML otherwise posts usage statistics on every model save; this machine has no network.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
