"""personaflow_nightly: one run per batch day, from raw events to a promoted recommender.

Thin wiring only: every task calls a function in `personaflow.stages`, which also runs from the CLI
(`personaflow <stage> --date ...`). The data interval is the batch day, so clearing and re-running a
task for its logical date redoes exactly that day. Heavy imports live inside the tasks.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, chain, dag, get_current_context, task

DEFAULT_ARGS = {
    "owner": "personaflow",
    # Transient failures (a locked warehouse file, a busy disk) deserve a retry with back-off;
    # data-quality failures do not, and their tasks set retries=0.
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


def _batch_day() -> date:
    """The day this run processes: `conf["batch_date"]` if given, else the run's logical date.

    A scheduled run's logical date is the start of its data interval, i.e. the batch day; a manual
    run (UI, REST, `dag.test`) names the day through its logical date or conf.
    """
    context = get_current_context()
    conf = context["dag_run"].conf or {}
    if conf.get("batch_date"):
        return date.fromisoformat(conf["batch_date"])
    stamp = context.get("logical_date") or context["data_interval_start"]
    return stamp.date()


def _settings():
    from personaflow.settings import load

    return load()


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
    @task
    def ingest() -> dict:
        from personaflow import stages

        return stages.ingest(_batch_day(), _settings())

    @task(retries=0)
    def validate_batch() -> dict:
        from personaflow import stages

        return stages.validate_batch(_batch_day(), _settings())

    @task
    def transform() -> dict:
        from personaflow import stages

        return stages.transform(_batch_day(), _settings())

    @task(retries=0)
    def validate_marts() -> dict:
        from personaflow import stages

        return stages.validate_marts(_batch_day(), _settings())

    @task
    def features() -> dict:
        from personaflow import stages

        return stages.features(_batch_day(), _settings())

    @task
    def train() -> dict:
        from personaflow import stages

        return stages.train(_settings())

    @task
    def promote(candidate: dict) -> dict:
        from personaflow import stages

        return stages.promote(candidate["tag"], _settings())

    trained = train()
    chain(ingest(), validate_batch(), transform(), validate_marts(), features(), trained)
    promote(trained)


personaflow_nightly()
