"""The nightly stages as functions of (date, settings): what both the Airflow DAG and the CLI call.

Each wrapper only resolves paths from settings and hands them to the stage's own pure-ish function.
Stage modules are imported inside the functions so that parsing the DAG file stays cheap.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from personaflow.settings import Settings, export_tool_env


def ingest(batch_date: date, s: Settings, max_rejects: int = 0) -> dict[str, Any]:
    """Load the day's batch (and the latest users/items snapshot) into the raw layer."""
    from ingest.load import load_batch, load_dimensions

    dims = load_dimensions(s.warehouse, s.landing_dir)
    return {**load_batch(s.warehouse, s.landing_dir, batch_date, max_rejects=max_rejects), **dims}


def ingest_history(through: date, s: Settings, since: date | None = None) -> list[dict[str, Any]]:
    """Catch up every landed batch in [since, through] that was never loaded, or whose file changed
    since it was (first install, replay, backfill of a date range)."""
    from ingest.load import load_dimensions, load_pending

    load_dimensions(s.warehouse, s.landing_dir)
    return load_pending(s.warehouse, s.landing_dir, through, since=since)


def import_events(
    path: Path,
    source_format: str,
    s: Settings,
    mapping: str | None = None,
    load: bool = True,
    through: date | None = None,
    max_rejects: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Land a shop export as daily batch files; with `load`, load its days (up to `through`) too.

    Without `load` the files wait for the nightly DAG to load and validate them day by day.
    """
    from ingest.formats import parse_mapping
    from ingest.landing import import_events as land
    from ingest.landing import imported_days

    report = land(path, source_format, s.landing_dir, parse_mapping(mapping), max_rejects, overwrite)
    days = imported_days(report)
    if load and days:
        last = min(through or days[1], days[1])
        loaded = ingest_history(last, s, since=days[0])
        report["loaded"] = {
            "through": last.isoformat(),
            "batches": len(loaded),
            "rows": sum(int(b["rows"]) for b in loaded),
            # Loaded before from the same file (a replay of the import), or quarantined: left as they are.
            "skipped": (last - days[0]).days + 1 - len(loaded),
        }
    return report


def _smtp(s: Settings):
    from quality.validate import SmtpConfig

    return SmtpConfig(host=s.smtp_host, port=s.smtp_port, sender=s.alert_from, recipients=list(s.alert_to))


def validate_batch(batch_date: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the raw batch; a failure quarantines it, emails and raises."""
    from quality.validate import validate_batch as run

    return run(s.warehouse, batch_date, s.quarantine_dir, s.reports_dir, _smtp(s))


def transform(as_of: date, s: Settings, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build`: staging views and marts, each tested right after it is built. Incremental marts
    process the new day; `full_refresh` rebuilds them from all of raw (once after a model change)."""
    from personaflow.transform import run_dbt

    export_tool_env(s)
    return run_dbt(s.warehouse, as_of, s.dbt_project_dir, s.home / "dbt", full_refresh=full_refresh)


def validate_marts(as_of: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the marts; a failure emails and raises before features and training."""
    from quality.validate import validate_marts as run

    return run(s.warehouse, as_of, s.reports_dir, _smtp(s))


def features(as_of: date, s: Settings) -> dict[str, Any]:
    """Export marts to Feast, materialize the new interval, write the point-in-time training set."""
    from personaflow.features import build_features

    return build_features(s.warehouse, s.features_dir, s.feature_repo_dir, as_of)


def train(s: Settings, epochs: int = 20, dim: int = 64) -> dict[str, Any]:
    """Fit the recommender on a time-based split; save it as a candidate with its metrics."""
    export_tool_env(s)
    from training.pipeline import train_candidate

    return train_candidate(
        s.warehouse, s.holdout_days, s.seed, epochs=epochs, dim=dim, reports_dir=s.reports_dir / "training",
        pointer_path=s.production_pointer,
    )


def promote(tag: str, s: Settings, report: str | None = None) -> dict[str, Any]:
    """Move the production pointer to `tag` only if it passes the gate; the verdict goes into the
    candidate's run report when its path is given."""
    export_tool_env(s)
    from training.pipeline import promote_candidate

    return promote_candidate(tag, s.production_pointer, report=report)


def _read_mart(warehouse: Path, sql: str, params: list[Any]):
    import duckdb

    # read-only and short-lived: DuckDB allows one writer process, and the DAG may be loading
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params).df()
    except duckdb.CatalogException as exc:
        first_line = exc.args[0].splitlines()[0]
        raise ValueError(f"{warehouse}: {first_line} (build the marts: personaflow transform)") from exc
    finally:
        con.close()


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def segments(as_of: date, s: Settings) -> dict[str, Any]:
    """K-means user segments over marts.user_features as of the day -> features_dir/user_segments.parquet."""
    from training.segments import fit_segments

    profile = _read_mart(s.warehouse, "select * from marts.user_features where as_of_date = ?", [as_of])
    if profile.empty:
        raise ValueError(f"marts.user_features has no rows as of {as_of}: run `personaflow transform`")
    result = fit_segments(profile, seed=s.seed)
    out = result.assignments.assign(as_of_date=as_of)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "user_segments.parquet"
    out.to_parquet(path, index=False)
    report = {
        "as_of": as_of.isoformat(), "k": result.k, "criterion": result.criterion,
        "silhouettes": result.silhouettes, "segments": result.segments, "users": len(out),
    }  # fmt: skip
    report_path = _write_json(s.reports_dir / "segments" / f"segments_{as_of.isoformat()}.json", report)
    return {**report, "parquet": str(path), "report": str(report_path)}


def churn(as_of: date, s: Settings, horizon_days: int | None = None) -> dict[str, Any]:
    """Churn classifier on marts.churn_labels -> features_dir/churn_scores.parquet (latest cut-off).

    The horizon is fixed when dbt builds the mart (var churn_horizon_days); `horizon_days` only
    checks that the mart was built with the horizon the caller expects."""
    import pandas as pd

    from training.churn import train_churn

    labels = _read_mart(s.warehouse, "select * from marts.churn_labels", [])
    if horizon_days is not None and not labels.empty:
        built = sorted(int(h) for h in labels["horizon_days"].unique())
        if built != [horizon_days]:
            raise ValueError(
                f"marts.churn_labels was built with horizon_days={built}, not {horizon_days}: rebuild it "
                f"with dbt var churn_horizon_days={horizon_days}"
            )
    result = train_churn(labels, seed=s.seed)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "churn_scores.parquet"
    result.scores.assign(as_of_date=as_of).to_parquet(path, index=False)
    report = {
        "as_of": as_of.isoformat(), "split": result.split, "metrics": result.metrics,
        "calibration": result.calibration, "users_scored": len(result.scores),
        "latest_cutoff": str(pd.Timestamp(result.scores["cutoff_date"].max()).date()),
    }  # fmt: skip
    report_path = _write_json(s.reports_dir / "churn" / f"churn_{as_of.isoformat()}.json", report)
    return {**report, "parquet": str(path), "report": str(report_path)}
