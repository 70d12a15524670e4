"""The process edge: the one module that reads or writes `os.environ` besides the settings model.

The project's own values travel as a `Settings` object (personaflow/core/settings.py, the only reader
of PERSONAFLOW_*). The tools we drive read their own variables instead: the dbt profile
(PERSONAFLOW_WAREHOUSE, PERSONAFLOW_PG_*), Feast's feature_store.yaml (PERSONAFLOW_FEATURES_DIR),
BentoML (BENTOML_HOME, BENTOML_DO_NOT_TRACK) and Airflow (AIRFLOW_HOME). `export_tool_env` writes them
once, at the process edge: the CLI's entry, an Airflow task's start, the API server's start, a
benchmark's main. Child processes get their environment from `child_env`, and the few tool variables
we read back (Airflow's own settings a child was started with) come through `tool_variable`.
tests/unit/test_config_channel.py fails on any other use of the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from personaflow.core.settings import Settings, postgres_env


def tool_vars(settings: Settings) -> dict[str, str]:
    """The tools' own variables for `settings` (a dict: for a child process's environment too)."""
    env = {
        "PERSONAFLOW_WAREHOUSE": str(settings.warehouse),  # the dbt profile's DuckDB path
        "BENTOML_HOME": str(settings.bentoml_home),
        "AIRFLOW_HOME": str(settings.airflow_home),
        "PERSONAFLOW_FEATURES_DIR": str(settings.features_dir),  # feature_repo/feature_store.yaml
        "PERSONAFLOW_PRODUCTION_POINTER": str(settings.production_pointer),
    }
    if settings.warehouse_url.startswith(("postgresql://", "postgres://")):
        env.update(postgres_env(settings.warehouse_url))  # the dbt profile's PostgreSQL output
    return env


def export_tool_env(settings: Settings) -> None:
    """Point the tools that read their own variables (dbt profile, Feast, BentoML, Airflow) at our paths.
    Called at the process edges only: the CLI's entry, an Airflow task's start, the API server's start."""
    os.environ.update(tool_vars(settings))
    # BentoML otherwise posts usage statistics on every model save; this machine has no network.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    private_files()


def private_files() -> None:
    """Files this process and its children create are the owner's only (0600 files, 0700 folders): the
    home holds customers' events, the warehouse and logs, and another account on the machine has no
    business reading them. A umask, so the tools' own files (dbt, Feast, BentoML, Airflow) follow too."""
    os.umask(0o077)


def spark_local_ip(address: str = "127.0.0.1") -> None:
    """Bind the Spark driver's JVM to `address` before pyspark starts it (personaflow/core/spark.py):
    without SPARK_LOCAL_IP it binds to the machine's external interface whatever the session's confs
    say. A value already set (a cluster's driver host) is kept."""
    os.environ.setdefault("SPARK_LOCAL_IP", address)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this process's, with `extra` on top."""
    return {**os.environ, **(extra or {})}


def tool_variable(name: str, default: str = "") -> str:
    """A tool's own variable as this process was started with it (e.g. AIRFLOW__CORE__PARALLELISM).
    PERSONAFLOW_* are the settings' to read: use `personaflow.core.settings.load()`."""
    if name.upper().startswith("PERSONAFLOW_"):
        raise ValueError(f"{name} is a setting: read it through personaflow.core.settings.load()")
    return os.environ.get(name) or default
