"""personaflow_nightly: one run per batch day, from raw events to a promoted recommender.

Thin wiring only: every task calls a function in `personaflow.pipeline.stages`, which also runs from the CLI
(`personaflow <stage> --date ...`). The data interval is the batch day, so clearing and re-running a
task for its logical date redoes exactly that day. Heavy imports live inside the tasks.

Task groups follow the stages: `ingest` (load, validate_batch), `transform` (dbt build,
validate_marts), `profiles` (segments, churn: K-means segments and churn scores, in the same night's
Feast materialization; each is *skipped* with its reason when the data cannot support it, e.g. churn
before the log spans its horizon), `features`, `model` (train in the one-slot `gpu` pool, promote). With
PERSONAFLOW_DBT_TASKS=models, `transform.dbt_build` is a task group with one `dbt build --select
<model>` task per dbt model, wired as the precompiled manifest says (read as JSON at parse time).
A failed task emails the data team through the SMTP notifier (connection `smtp_default`); a
data-quality failure also sends its own detailed report and quarantines the batch. The validate
and promote tasks leave notes on their task instance and on the run, so the UI says why a model
was or was not promoted.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    PokeReturnValue,
    TaskGroup,
    chain,
    dag,
    task,
)

from personaflow.core.settings import REPO_ROOT
from personaflow.orchestration.dag_alerts import failure_notifier
from personaflow.orchestration.dag_tasks import (
    batch_day,
    note,
    note_drift,
    run_id,
    skip_or_note,
    stage,
    validate,
)
from personaflow.orchestration.dag_tasks import (
    settings as run_settings,
)
from personaflow.orchestration.dbt_graph import manifest_path, model_graph
from personaflow.orchestration.orchestrate import dbt_tasks_mode

# Lineage the UI shows, and what other DAGs can be scheduled on. RAW_CORRECTED is announced by hand
# (UI "Create Asset Event", `python -m personaflow.orchestration.orchestrate announce D`) after a corrected
# batch file landed, with extra {"batch_date": D}; it starts `personaflow_refresh`. The nightly load
# does not emit it (or every night would run twice).
RAW_CORRECTED = Asset(name="personaflow_raw_corrected", uri="personaflow://warehouse/raw/corrected_batch")
MARTS = Asset(name="personaflow_marts", uri="personaflow://warehouse/marts")
FEATURES = Asset(name="personaflow_features", uri="personaflow://features/feast")

DEFAULT_ARGS = {
    "owner": "personaflow",
    # Transient failures (a locked warehouse file, a busy disk) deserve a retry with back-off;
    # data-quality failures do not, and their tasks set retries=0.
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": failure_notifier(),
}


def _dbt_models() -> dict[str, list[str]] | None:
    """The dbt model graph when per-model tasks are asked for and a manifest exists (a JSON read)."""
    if dbt_tasks_mode() != "models":
        return None
    home = os.environ.get("PERSONAFLOW_HOME") or REPO_ROOT / ".personaflow"  # settings.load()'s default
    return model_graph(manifest_path(home))


@task(task_id="dbt_build")
def dbt_build() -> dict:
    from personaflow.pipeline import transform as transform_stage

    return stage(transform_stage.transform, batch_day(), run_settings())


@task(pool="dbt", pool_slots=1)
def dbt_model(model: str) -> dict:
    """`dbt build --select <model>`: the model, then its tests; same `as_of` var as the single build, so
    incremental models rewrite the same day. One at a time (pool `dbt`): DuckDB takes one writer."""
    from personaflow.core.settings import export_tool_env
    from personaflow.core.warehouse import location
    from personaflow.pipeline.transform import dbt_vars, run_dbt

    s = run_settings()
    export_tool_env(s)
    return run_dbt(
        location(s), batch_day(), s.dbt_project_dir, s.home / "dbt", select=model, dbt_vars=dbt_vars(s)
    )


def _dbt_group(models: dict[str, list[str]] | None):
    """(first tasks, last tasks) of the dbt step: one task, or a group with a task per model."""
    if not models:
        built = dbt_build()
        return [built], [built]
    with TaskGroup("dbt_build", tooltip="dbt build --select <model>, one task per model (manifest)"):
        tasks = {name: dbt_model.override(task_id=name)(name) for name in sorted(models)}
        for name, parents in models.items():
            for parent in parents:
                tasks[parent] >> tasks[name]
    children = {p for parents in models.values() for p in parents}
    return [tasks[n] for n in sorted(models) if not models[n]], [tasks[n] for n in sorted(models)
                                                                   if n not in children]  # fmt: skip


def _pipeline() -> None:
    """The stages as task groups; both DAGs below run the same graph, only their trigger differs."""
    with TaskGroup("ingest", tooltip="Wait for the day's file, load it, check it before anything uses it"):
        # Reschedule mode: a waiting sensor holds no worker slot. Its own deadline (settings) decides
        # when the night is missing data; Airflow's timeout is only a backstop.
        @task.sensor(poke_interval=300, timeout=48 * 3600, mode="reschedule", retries=0)
        def wait_for_batch() -> PokeReturnValue:
            return wait_for_batch()

        @task(task_id="load")
        def ingest() -> dict:
            from personaflow.pipeline import ingest as ingest_stage

            return stage(ingest_stage.ingest, batch_day(), run_settings())

        @task(retries=0)
        def validate_batch() -> dict:
            return validate("batch")

        arrived, loaded, checked = wait_for_batch(), ingest(), validate_batch()
        chain(arrived, loaded, checked)

    with TaskGroup("transform", tooltip="dbt build (staging views, marts, their tests), then GX on marts"):
        first, last = _dbt_group(_dbt_models())

        @task(retries=0, outlets=[MARTS])
        def validate_marts() -> dict:
            return validate("marts")

        marts_ok = validate_marts()
        last >> marts_ok

    with TaskGroup("profiles", tooltip="K-means segments and churn scores, before Feast materializes"):

        @task(task_id="segments")
        def segments() -> dict:
            from personaflow.pipeline import profiles as profiles_stage

            return skip_or_note("segments", stage(profiles_stage.segments, batch_day(), run_settings()))

        @task(task_id="churn")
        def churn() -> dict:
            from personaflow.pipeline import profiles as profiles_stage

            s = run_settings()
            result = stage(profiles_stage.churn, batch_day(), s, horizon_days=s.churn_horizon_days)
            return skip_or_note("churn", result)

        # none_failed: churn skipped on a short log still refreshes the audiences (without scores)
        @task(task_id="audiences", trigger_rule="none_failed")
        def audiences() -> dict:
            from personaflow.pipeline.audiences import refresh_saved

            return skip_or_note("audiences", stage(refresh_saved, run_settings()))

        segmented, profiled = [segments(), churn()], audiences()

    with TaskGroup("features", tooltip="Feast: snapshots, materialize the new interval, training set"):
        # none_failed: a skipped profile stage (churn before the log spans its horizon) must not skip
        # the features and the model; a failed one (or failed marts) still stops them.
        @task(task_id="materialize", outlets=[FEATURES], trigger_rule="none_failed")
        def features() -> dict:
            from personaflow.pipeline import features as features_stage

            return stage(features_stage.features, batch_day(), run_settings())

        @task(task_id="drift")
        def drift() -> dict:
            from personaflow.pipeline.drift import check_drift

            return note_drift(stage(check_drift, batch_day(), run_settings()))

        materialized = features()
        materialized >> drift()  # a side branch: drift warns, it never holds up training

    with TaskGroup("model", tooltip="Train a candidate (gpu pool), promote it only through the gate"):

        @task(pool="gpu", pool_slots=1)
        def train() -> dict:
            from personaflow.pipeline import train as train_stage

            result = stage(train_stage.train, run_settings())
            metrics = result["metrics"]
            note(
                f"Candidate `{result['tag']}` ({result['params']['kind']}): ndcg@10 "
                f"{metrics['ndcg_at_10']:.4f} (popularity {metrics['baseline_ndcg_at_10']:.4f}, repeat-buy "
                f"{metrics['repeat_buy_ndcg_at_10']:.4f}), recall@10 {metrics['recall_at_10']:.4f}. "
                f"Report: `{result.get('report', '-')}`"
            )
            return result

        @task
        def promote(candidate: dict) -> dict:
            from personaflow.pipeline import promote as promote_stage

            decision = stage(
                promote_stage.promote, candidate["tag"], run_settings(), report=candidate.get("report")
            )
            verdict = "**Promoted**" if decision["promoted"] else "**Not promoted**"
            text = f"{verdict} `{decision['tag']}`: {decision['reason']}."
            report = candidate.get("report")
            # appended: a drift warning noted earlier tonight stays beside the verdict
            note(text, run_note=f"{text}\n\nData quality passed. Training report: `{report}`", append=True)
            return decision

        @task(task_id="prune")
        def prune() -> dict:
            """Keep production, its rollback history and the newest candidates; delete the rest."""
            from personaflow.core.settings import export_tool_env
            from personaflow.training.registry.retention import prune as run

            s = run_settings()
            export_tool_env(s)
            return stage(run, s.production_pointer, s.keep_candidates)

        trained = train()
        promoted = promote(trained)
        promoted >> prune()  # after the verdict: the new production is known

    with TaskGroup("report", tooltip="The night's HTML report, also when the night stopped early"):
        # all_done: the page is rendered on a night that stopped early too (it says what did not run)
        @task(task_id="render", trigger_rule="all_done")
        def report() -> dict:
            from personaflow.report.nightly import build_report

            result = stage(build_report, batch_day(), run_settings(), run_id=run_id())
            # appended: the run's note keeps the verdict (promoted / data quality failed) first
            path = f"`{result['report']}`"
            note(f"Tonight's report: {path}", run_note=f"Report: {path}", append=True)
            return result

        rendered = report()

    checked >> first
    chain(marts_ok, segmented, profiled, materialized, trained, promoted, rendered)


@dag(
    dag_id="personaflow_nightly",
    description="Nightly: ingest the day's events, validate, dbt build, Feast, retrain, promote.",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2010, 12, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["personaflow", "nightly"],
    doc_md=__doc__,
)
def personaflow_nightly():
    _pipeline()


@dag(
    dag_id="personaflow_refresh",
    description="A corrected batch was announced (asset event with batch_date): reload it and redo the rest.",
    schedule=[RAW_CORRECTED],
    start_date=datetime(2010, 12, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["personaflow", "refresh"],
    doc_md="""Runs the nightly graph for the day named by a `personaflow_raw_corrected` asset event
(extra `{"batch_date": "YYYY-MM-DD"}`): after fixing a landing file, announce it from the asset's page
in the UI (*Create Asset Event*) or with `python -m personaflow.orchestration.orchestrate announce D`; the
batch is reloaded, validated, the marts rebuilt (`personaflow_marts`), features re-materialized
(`personaflow_features`) and a model retrained and gated, without waiting for the next night.""",
)
def personaflow_refresh():
    _pipeline()


personaflow_nightly()
personaflow_refresh()
