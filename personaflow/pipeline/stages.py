"""The nightly stages as functions of (date, settings): what both the Airflow DAG and the CLI call.

Each wrapper only resolves paths from settings and hands them to the stage's own pure-ish function.
Stage modules are imported inside the functions so that parsing the DAG file stays cheap.
Every stage gets the warehouse as `location(s)`: the PostgreSQL URL when PERSONAFLOW_WAREHOUSE_URL is
set, else the DuckDB file.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings, export_tool_env
from personaflow.core.warehouse import location

log = logging.getLogger(__name__)


def ingest(batch_date: date, s: Settings, max_rejects: int = 0) -> dict[str, Any]:
    """Load the day's batch (and the latest users/items snapshot) into the raw layer."""
    from personaflow.core.forgotten import keep_table, scrub_landing
    from personaflow.ingest.generate import batch_path
    from personaflow.ingest.load import load_batch, load_dimensions

    scrub_landing([batch_path(s.landing_dir, batch_date)], s)
    dims = load_dimensions(location(s), s.landing_dir)
    keep = lambda table: keep_table(table, s)  # noqa: E731 - forgotten customers never load again
    return {**load_batch(location(s), s.landing_dir, batch_date, max_rejects=max_rejects, keep=keep), **dims}


def ingest_history(through: date, s: Settings, since: date | None = None) -> list[dict[str, Any]]:
    """Catch up every landed batch in [since, through] that was never loaded, or whose file changed
    since it was (first install, replay, backfill of a date range)."""
    from personaflow.core.forgotten import keep_table, scrub_landing
    from personaflow.ingest.generate import batch_dates, batch_path
    from personaflow.ingest.load import load_dimensions, load_pending

    days = [d for d in batch_dates(s.landing_dir) if d <= through and (since is None or d >= since)]
    scrub_landing([batch_path(s.landing_dir, d) for d in days], s)
    load_dimensions(location(s), s.landing_dir)
    return load_pending(location(s), s.landing_dir, through, since=since, keep=lambda t: keep_table(t, s))


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
    from personaflow.core.forgotten import drop_forgotten
    from personaflow.ingest.formats import parse_mapping
    from personaflow.ingest.landing import import_events as land
    from personaflow.ingest.landing import import_warnings, imported_days

    report = land(
        path, source_format, s.landing_dir, parse_mapping(mapping), max_rejects, overwrite,
        keep=lambda frame: drop_forgotten(frame, s),
    )  # fmt: skip
    for warning in import_warnings(report):  # stderr (CLI) and the task log (Airflow)
        log.warning(warning)
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
    from personaflow.quality.validate import SmtpConfig

    return SmtpConfig(host=s.smtp_host, port=s.smtp_port, sender=s.alert_from, recipients=list(s.alert_to))


def validate_batch(batch_date: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the raw batch; a failure quarantines it, emails and raises."""
    from personaflow.quality.validate import validate_batch as run

    return run(location(s), batch_date, s.quarantine_dir, s.reports_dir, _smtp(s))


def validate_history(first: date, last: date, s: Settings, progress=None) -> dict[str, Any]:
    """The batch suite over every loaded day in [first, last] in one process (an imported history)."""
    from personaflow.quality.history import validate_history as run

    return run(location(s), first, last, s.quarantine_dir, s.reports_dir, _smtp(s), progress=progress)


def transform(as_of: date, s: Settings, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build`: staging views and marts, each tested right after it is built. Incremental marts
    process the new day; `full_refresh` rebuilds them from all of raw (once after a model change)."""
    from personaflow.pipeline.transform import run_dbt

    export_tool_env(s)
    return run_dbt(
        location(s), as_of, s.dbt_project_dir, s.home / "dbt", full_refresh=full_refresh,
        dbt_vars=dbt_vars(s),
    )  # fmt: skip


def dbt_vars(s: Settings) -> dict[str, Any]:
    """Project vars that come from our settings (every dbt run of a night must pass the same ones)."""
    return {"churn_horizon_days": s.churn_horizon_days}


def validate_marts(as_of: date, s: Settings) -> dict[str, Any]:
    """Great Expectations over the marts; a failure emails and raises before features and training."""
    from personaflow.quality.validate import validate_marts as run

    return run(location(s), as_of, s.reports_dir, _smtp(s))


def features(as_of: date, s: Settings) -> dict[str, Any]:
    """Export marts to Feast, materialize the new interval, write the point-in-time training set."""
    from personaflow.pipeline.features import build_features

    return build_features(location(s), s.features_dir, s.feature_repo_dir, as_of)


def train(
    s: Settings,
    epochs: int = 20,
    dim: int = 64,
    model: str | None = None,
    hybrid: bool | None = None,
    rerank: bool | None = None,
) -> dict[str, Any]:
    """Fit the recommender (settings' model unless given) on a time-based split; save it as a candidate
    with its metrics and the gate's evidence."""
    export_tool_env(s)
    from personaflow.training.data.features import nightly_source
    from personaflow.training.pipeline import train_candidate

    catalogue = _read_mart(location(s), "select item_id, category, brand, price from marts.item_features", [])
    return train_candidate(
        location(s), s.holdout_days, s.seed, epochs=epochs, dim=dim, reports_dir=s.reports_dir / "training",
        pointer_path=s.production_pointer, model=model or s.model,
        hybrid=s.hybrid if hybrid is None else hybrid, rerank=s.rerank if rerank is None else rerank,
        features=nightly_source(s.feature_repo_dir, s.features_dir, catalogue.set_index("item_id")),
    )  # fmt: skip


def promote(tag: str, s: Settings, report: str | None = None, force: bool = False) -> dict[str, Any]:
    """Move the production pointer to `tag` only if it passes the gate on today's split (re-measured
    unless the candidate's evidence is from today's cut and production); `force` overrides, logged.
    The verdict goes into the candidate's run report when its path is given."""
    export_tool_env(s)
    from personaflow.training.pipeline import promote_candidate

    return promote_candidate(
        tag, s.production_pointer, report=report, warehouse=location(s), holdout_days=s.holdout_days,
        force=force,
    )  # fmt: skip


def _read_mart(warehouse: wh.Location, sql: str, params: list[Any]):
    if not wh.is_postgres(warehouse) and not Path(warehouse).is_file():
        raise ValueError(f"warehouse {warehouse} does not exist: load data first (personaflow history PATH, "
                         "or personaflow ingest)")  # fmt: skip
    # read-only and short-lived: DuckDB allows one writer process, and the DAG may be loading
    con = wh.connect(warehouse, read_only=True)
    try:
        return con.execute(sql, params).df()
    except wh.MISSING_TABLE as exc:
        first_line = str(exc).splitlines()[0]
        raise ValueError(
            f"{wh.describe(warehouse)}: {first_line} (build the marts: personaflow transform)"
        ) from exc
    finally:
        con.close()


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def _skipped(stage: str, as_of: date, s: Settings, reason: str) -> dict[str, Any]:
    """A stage that cannot run on this data (not an error): say why, in the result and a report."""
    report = {"as_of": as_of.isoformat(), "status": "skipped", "reason": reason}
    path = _write_json(s.reports_dir / stage / f"{stage}_{as_of.isoformat()}.json", report)
    return {**report, "report": str(path)}


def segments(as_of: date, s: Settings) -> dict[str, Any]:
    """K-means user segments over marts.user_features as of the day -> features_dir/user_segments.parquet,
    and a snapshot for the Feast view `user_segment`. Too few users: {"status": "skipped", "reason"}."""
    from personaflow.pipeline.features import append_profile
    from personaflow.profiles.segments import TooFewUsers, fit_segments

    profile = _read_mart(location(s), "select * from marts.user_features where as_of_date = ?", [as_of])
    if profile.empty:
        raise ValueError(f"marts.user_features has no rows as of {as_of}: run `personaflow transform`")
    try:
        result = fit_segments(profile, seed=s.seed)
    except TooFewUsers as exc:
        return _skipped("segments", as_of, s, str(exc))
    out = result.assignments.assign(as_of_date=as_of)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "user_segments.parquet"
    out.to_parquet(path, index=False)
    feast_rows = append_profile(s.features_dir, "user_segment", result.assignments, as_of)
    report = {
        "as_of": as_of.isoformat(), "status": "ok", "k": result.k, "criterion": result.criterion,
        "silhouettes": result.silhouettes, "segments": result.segments, "users": len(out),
    }  # fmt: skip
    report_path = _write_json(s.reports_dir / "segments" / f"segments_{as_of.isoformat()}.json", report)
    return {**report, "parquet": str(path), "feast_source_rows": feast_rows, "report": str(report_path)}


# Today's features in the shape of marts.churn_labels' (the model was fitted at past cut-offs).
# Only buyers: churn_labels only has users who bought before a cut-off, so the model knows no others.
_CHURN_FEATURES_NOW = """
    select user_id, recency_days, frequency, monetary,
        as_of_date - cast(first_purchase_ts as date) as days_since_first_purchase,
        n_orders_90d from marts.user_features where as_of_date = ? and frequency > 0
"""


def _log_span(warehouse: wh.Location, as_of: date) -> str:
    import pandas as pd

    first = _read_mart(warehouse, "select min(event_date) as d from marts.interactions", [])["d"].iloc[0]
    if pd.isna(first):
        return "no events"
    first = pd.Timestamp(first).date()
    return f"{first} .. {as_of}, {(as_of - first).days + 1} days"


def churn(as_of: date, s: Settings, horizon_days: int | None = None) -> dict[str, Any]:
    """Churn classifier on marts.churn_labels; scores today's buyers (marts.user_features as of the
    day) into a snapshot for the Feast view `user_churn`; the latest cut-off's scores (what the
    metrics are about) go to features_dir/churn_scores.parquet. Labels that cannot train a model
    (a log not longer than the horizon, one class): {"status": "skipped", "reason"}.

    The horizon is fixed when dbt builds the mart (var churn_horizon_days, from the setting
    PERSONAFLOW_CHURN_HORIZON_DAYS); the mart must have been built with `horizon_days` (default: the
    setting)."""
    import pandas as pd

    from personaflow.pipeline.features import append_profile
    from personaflow.profiles.churn import CannotTrain, score_users, train_churn

    expected = horizon_days or s.churn_horizon_days
    labels = _read_mart(location(s), "select * from marts.churn_labels", [])
    if labels.empty:
        reason = (
            f"marts.churn_labels is empty: the event log ({_log_span(location(s), as_of)}) is not longer "
            f"than the {expected}-day churn horizon, so no cut-off has an observed outcome yet"
        )
        return _skipped("churn", as_of, s, reason)
    built = sorted(int(h) for h in labels["horizon_days"].unique())
    if built != [expected]:
        raise ValueError(
            f"marts.churn_labels was built with horizon_days={built}, not {expected}: rebuild it "
            f"with dbt var churn_horizon_days={expected} (setting PERSONAFLOW_CHURN_HORIZON_DAYS)"
        )
    try:
        result = train_churn(labels, seed=s.seed)
    except CannotTrain as exc:
        return _skipped("churn", as_of, s, str(exc))
    now = score_users(result.model, _read_mart(location(s), _CHURN_FEATURES_NOW, [as_of]))
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "churn_scores.parquet"
    result.scores.assign(as_of_date=as_of).to_parquet(path, index=False)
    feast_rows = append_profile(s.features_dir, "user_churn", now, as_of) if len(now) else 0
    report = {
        "as_of": as_of.isoformat(), "status": "ok", "split": result.split, "metrics": result.metrics,
        "calibration": result.calibration, "users_scored": len(result.scores),
        "latest_cutoff": str(pd.Timestamp(result.scores["cutoff_date"].max()).date()),
        "users_scored_as_of": len(now),
        "mean_churn_score_as_of": round(float(now["churn_score"].mean()), 4) if len(now) else None,
    }  # fmt: skip
    report_path = _write_json(s.reports_dir / "churn" / f"churn_{as_of.isoformat()}.json", report)
    return {**report, "parquet": str(path), "feast_source_rows": feast_rows, "report": str(report_path)}
