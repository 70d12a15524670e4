"""The profile stages: K-means segments with behaviour personas, and the churn model over the marts, each
appended to its Feast view. A stage the data cannot support is skipped with the reason, not failed."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.core.warehouse import location
from personaflow.pipeline._common import read_mart, skipped, write_json
from personaflow.pipeline.transform import built_rows, state_dir


def segments(as_of: date, s: Settings) -> dict[str, Any]:
    """K-means user segments over marts.user_features as of the day, and behaviour personas of the buyers
    over the usable purchase lines (intermediate.int_events_as_of, which the same transform built for the
    same day) -> features_dir/user_segments.parquet, and a snapshot for the Feast view `user_segment`
    (segment_id, segment_label, persona_id, persona; a user who bought no product is persona -1, "not
    yet buyers"). Too few users: {"status": "skipped", "reason"}. Memory: O(users × features) here, the
    behaviour aggregation runs in the warehouse (personaflow/profiles/personas.py)."""
    from personaflow.pipeline.features import append_profile
    from personaflow.profiles.personas import (
        NO_PURCHASE,
        NO_PURCHASE_ID,
        NO_PURCHASE_TEXT,
        behaviour_sql,
        fit_personas,
    )
    from personaflow.profiles.segments import TooFewUsers, fit_segments

    profile = read_mart(location(s), "select * from marts.user_features where as_of_date = $1", [as_of])
    if profile.empty:
        raise ValueError(f"marts.user_features has no rows as of {as_of}: run `personaflow transform`")
    profile = _with_review_counts(location(s), profile)
    try:
        result = fit_segments(profile, seed=s.seed)
    except TooFewUsers as exc:
        return skipped("segments", as_of, s, str(exc))
    started = time.perf_counter()
    behaviour = read_mart(location(s), behaviour_sql(engine=engine_of(location(s))), [])
    # in user_id order: the warehouse returns rows in no set order, and K-means' seeded starts pick rows
    # by position (a re-run must write the same personas)
    behaviour = behaviour.loc[behaviour["user_id"].isin(profile["user_id"])].sort_values("user_id")
    behaviour = behaviour.reset_index(drop=True)
    personas = fit_personas(behaviour, seed=s.seed)
    personas_s = round(time.perf_counter() - started, 2)
    assignments = result.assignments.merge(personas.assignments, "left", "user_id")
    assignments["persona_id"] = assignments["persona_id"].fillna(NO_PURCHASE_ID).astype("int64")
    assignments["persona"] = assignments["persona"].fillna(NO_PURCHASE)
    result.assignments = assignments
    out = result.assignments.assign(as_of_date=as_of)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "user_segments.parquet"
    out.to_parquet(path, index=False)
    feast_rows = append_profile(s.features_dir, "user_segment", result.assignments, as_of)
    report = {
        "as_of": as_of.isoformat(), "status": "ok", "k": result.k, "criterion": result.criterion,
        "silhouettes": result.silhouettes, "segments": result.segments, "users": len(out),
        "personas": {
            "k": personas.k, "criterion": personas.criterion, "per_k": personas.per_k,
            "buyers": len(behaviour),
            "not_yet_buyers": int((assignments["persona_id"] == NO_PURCHASE_ID).sum()),
            "personas": personas.personas,
        },
    }  # fmt: skip
    report_path = write_json(s.reports_dir / "segments" / f"segments_{as_of.isoformat()}.json", report)
    # what each persona means, for /profile (personaflow/serving/personas.py): once per persona
    texts = [{k: p[k] for k in ("persona_id", "name", "description", "action") if k in p}
             for p in personas.personas] + [NO_PURCHASE_TEXT]  # fmt: skip
    write_json(s.features_dir / "personas.json", {"as_of": as_of.isoformat(), "personas": texts})
    # the fit time stays out of the written report: a re-run of the night must write the same file
    report["personas"] = {**report["personas"], "seconds": personas_s}
    return {**report, "parquet": str(path), "feast_source_rows": feast_rows, "report": str(report_path)}


def _with_review_counts(warehouse: wh.Location, profile: Any) -> Any:
    """`profile` with each user's review count (marts.customer_reviews), so a segment of reviewers who
    never bought is named for what they did (profiles/segments.py); unchanged where the shop has no
    reviews. Memory: O(reviewers)."""
    try:
        with wh.connect(warehouse, read_only=True) as con:
            counts = con.execute("select user_id, n_reviews from marts.customer_reviews").df()
    except wh.MISSING_TABLE:
        return profile
    if counts.empty:
        return profile
    counts["user_id"] = counts["user_id"].astype(str)
    return profile.merge(counts, "left", "user_id")


# Today's features in the shape of marts.churn_labels' (the model was fitted at past cut-offs).
# Only buyers: churn_labels only has users who bought before a cut-off, so the model knows no others.
# Days between two dates: an integer on DuckDB and PostgreSQL, an interval on Spark (hence datediff).
_CHURN_FEATURES_NOW = """
    select user_id, recency_days, frequency, monetary, {days_since_first} as days_since_first_purchase,
        n_orders_90d from marts.user_features where as_of_date = $1 and frequency > 0
"""
_DAYS_SINCE_FIRST = {
    "duckdb": "as_of_date - cast(first_purchase_ts as date)",
    "postgres": "as_of_date - cast(first_purchase_ts as date)",
    "spark": "datediff(as_of_date, cast(first_purchase_ts as date))",
}


def engine_of(where: wh.Location) -> str:
    """The dialect a warehouse location speaks: duckdb, postgres or spark (a connection's `engine`)."""
    return "spark" if wh.is_spark(where) else "postgres" if wh.is_postgres(where) else "duckdb"


def churn_features_sql(engine: str) -> str:
    return _CHURN_FEATURES_NOW.format(days_since_first=_DAYS_SINCE_FIRST[engine])


def _log_span(warehouse: wh.Location, as_of: date) -> str:
    import pandas as pd

    first = read_mart(warehouse, "select min(event_date) as d from marts.interactions", [])["d"].iloc[0]
    if pd.isna(first):
        return "no events"
    first = pd.Timestamp(first).date()
    return f"{first} .. {as_of}, {(as_of - first).days + 1} days"


def _customer_versions(warehouse: wh.Location):
    """Every version of the shop's customer table (raw.customers), or None when it has none."""
    with wh.connect(warehouse, read_only=True) as con:
        if not con.table_exists("raw.customers"):
            return None
        return con.execute(
            "select user_id, age, income, household_size, kids_count, valid_from from raw.customers"
        ).df()


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
    from personaflow.profiles.churn import CannotTrain, score_users, train_churn, with_demographics

    expected = horizon_days or s.churn_horizon_days
    if wh.is_spark(location(s)) and built_rows(state_dir(s), "marts.churn_labels", as_of) == 0:
        # Tonight's dbt build left the mart empty (its record, transform.BUILT_ROWS): on Spark, reading it
        # would start a JVM (and wait for the metastore, held by segments beside this task) only to
        # skip. DuckDB and PostgreSQL cost nothing to ask, and name the log's span in the reason.
        reason = (
            f"marts.churn_labels is empty (0 rows after the dbt build as of {as_of}): the event log is not "
            f"longer than the {expected}-day churn horizon, so no cut-off has an observed outcome yet"
        )
        return skipped("churn", as_of, s, reason)
    labels = read_mart(location(s), "select * from marts.churn_labels", [])
    if labels.empty:
        reason = (
            f"marts.churn_labels is empty: the event log ({_log_span(location(s), as_of)}) is not longer "
            f"than the {expected}-day churn horizon, so no cut-off has an observed outcome yet"
        )
        return skipped("churn", as_of, s, reason)
    built = sorted(int(h) for h in labels["horizon_days"].unique())
    if built != [expected]:
        raise ValueError(
            f"marts.churn_labels was built with horizon_days={built}, not {expected}: rebuild it "
            f"with dbt var churn_horizon_days={expected} (setting PERSONAFLOW_CHURN_HORIZON_DAYS)"
        )
    customers = _customer_versions(location(s))  # demographics: tried as features, kept if they pay
    try:
        result = train_churn(with_demographics(labels, customers), seed=s.seed)
    except CannotTrain as exc:
        return skipped("churn", as_of, s, str(exc))
    now_sql = churn_features_sql(engine_of(location(s)))
    today = with_demographics(read_mart(location(s), now_sql, [as_of]), customers, when=as_of)
    now = score_users(result.model, today, result.features)
    s.features_dir.mkdir(parents=True, exist_ok=True)
    path = s.features_dir / "churn_scores.parquet"
    result.scores.assign(as_of_date=as_of).to_parquet(path, index=False)
    feast_rows = append_profile(s.features_dir, "user_churn", now, as_of) if len(now) else 0
    report = {
        "as_of": as_of.isoformat(), "status": "ok", "split": result.split, "metrics": result.metrics,
        "calibration": result.calibration, "users_scored": len(result.scores),
        "model": result.model_name, "candidates": result.candidates, "choice": result.choice,
        "features": list(result.features),
        "calibration_by_recency": result.calibration_by_recency,
        "latest_cutoff": str(pd.Timestamp(result.scores["cutoff_date"].max()).date()),
        "users_scored_as_of": len(now),
        "mean_churn_score_as_of": round(float(now["churn_score"].mean()), 4) if len(now) else None,
    }  # fmt: skip
    report_path = write_json(s.reports_dir / "churn" / f"churn_{as_of.isoformat()}.json", report)
    return {**report, "parquet": str(path), "feast_source_rows": feast_rows, "report": str(report_path)}
