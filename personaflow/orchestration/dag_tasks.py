"""What the nightly DAG's tasks do around each stage call, kept out of the DAG file so it stays wiring.

Run inside a task only (they read the task's Airflow context): which day the run is for, notes on
the task and the run for the UI, the sensor's poke, failure reasons for `personaflow run-dag`, and
data failures that fail at once (a retry cannot fix data). Airflow is imported inside the functions:
the DAG file imports this module at parse time.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any


def batch_day() -> date:
    """The day this run processes: `conf["batch_date"]` if given, else the run's logical date.

    A scheduled run's logical date is the start of its data interval, i.e. the batch day; a manual
    run (UI, REST, `dag.test`) names the day through its logical date or conf.
    """
    from airflow.sdk import get_current_context

    context = get_current_context()
    conf = context["dag_run"].conf or {}
    if conf.get("batch_date"):
        return date.fromisoformat(conf["batch_date"])
    # An asset-triggered run (personaflow_refresh) has no logical date: the event names the day.
    triggering = context.get("triggering_asset_events") or {}
    announced = [e.extra["batch_date"] for events in triggering.values() for e in events
                 if (e.extra or {}).get("batch_date")]  # fmt: skip
    if announced:
        return date.fromisoformat(announced[-1])
    stamp = context.get("logical_date") or context.get("data_interval_start")
    if stamp is None:
        raise ValueError("no batch day: set conf batch_date, or asset event extra {'batch_date': 'Y-M-D'}")
    return stamp.date()


def run_id() -> str:
    """This task's DAG run (the report compares it with the night's ledger)."""
    from airflow.sdk import get_current_context

    return get_current_context()["ti"].run_id


def settings():
    """The run's settings, read at the task's start; the task's process edge: the tools' own variables
    (dbt, Feast, BentoML) are exported from them here, once, before the stage runs."""
    from personaflow.core.settings import load
    from personaflow.core.tool_env import export_tool_env

    s = load()
    export_tool_env(s)
    progress_lines_in_task_log()
    return s


class _TaskLogAtInfo(logging.Handler):
    """Hands our INFO lines to Airflow's own task-log handler. `Handler.handle` applies that handler's
    filters, lock and formatter but not its level, which is the one thing to differ."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def progress_lines_in_task_log() -> None:
    """Our progress lines (epochs naming their model, validated days, the recipe choice) in the task's
    log in the UI. Airflow's level stays WARNING (orchestrate.airflow_env) to keep its own noise out, and
    the task process's root handler drops everything below that level whatever a logger's own level
    (`namespace_levels` only sets loggers' levels): so the `personaflow` logger alone gets INFO, through
    a forwarder to the same handler, and no longer propagates (no line twice). Idempotent."""
    ours = logging.getLogger("personaflow")
    if any(isinstance(h, _TaskLogAtInfo) for h in ours.handlers):
        return
    targets = logging.getLogger().handlers
    if not targets:  # not under Airflow's logging (a plain import): leave logging as it is
        return
    for target in targets:
        ours.addHandler(_TaskLogAtInfo(target))
    ours.setLevel(logging.INFO)
    ours.propagate = False


def note(task_note: str, run_note: str | None = None, append: bool = False) -> None:
    """Leave a note on this task instance (and the run) for the UI; never fails the task."""
    from airflow.sdk import get_current_context

    from personaflow.orchestration.airflow_api import write_notes

    context = get_current_context()
    ti = context["ti"]
    write_notes(ti.dag_id, ti.run_id, ti.task_id, task_note, run_note, append=append)


def quality_note(result: dict) -> str:
    return (
        f"**Data quality passed** for {result['date']}: {result['rows']:,} rows, "
        f"{result['expectations']} expectations. Report: `{result['report']}`"
    )


def stage(fn, *args, **kwargs):
    """Call a stage; its failure reason is recorded for `personaflow run-dag`, and a failure of the data
    (a bad file, a failed check, a failing dbt test) fails the task at once: a retry cannot fix data."""
    from airflow.sdk.exceptions import AirflowFailException

    from personaflow.ingest.csvfile import IngestError

    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        record_failure(ti.dag_id, ti.run_id, ti.task_id, exc)
        _ledger("failed", f"{type(exc).__name__}: {exc}")
        # (a DataQualityError passes as it is: the validate tasks take no retries and note it first)
        if isinstance(exc, IngestError) or getattr(exc, "data_failure", False):
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


def _ledger(state: str, reason: str) -> None:
    """Tonight's ledger for the report's status line (personaflow/core/night.py); never fails a task."""
    from airflow.sdk import get_current_context

    from personaflow.core.night import record_task

    try:
        ti = get_current_context()["ti"]
        record_task(settings().reports_dir, batch_day(), ti.run_id, ti.task_id, state, reason)
    except Exception:  # the report then says less; the task's own outcome must not change
        logging.getLogger(__name__).warning("night ledger not written", exc_info=True)


def record_failure(dag_id: str, run_id: str, task_id: str, exc: BaseException) -> None:
    from personaflow.orchestration.orchestrate import record_failure

    record_failure(settings(), dag_id, run_id, task_id, f"{type(exc).__name__}: {exc}")


def validate(suite: str) -> dict:
    """The batch or the marts suite; a failure notes the task and the run, then fails the task."""
    from personaflow.pipeline import validate as validate_stage
    from personaflow.quality.validate import DataQualityError

    run = validate_stage.validate_batch if suite == "batch" else validate_stage.validate_marts
    day = batch_day()
    try:
        result = stage(run, day, settings())
    except DataQualityError as exc:
        text = f"**Data quality FAILED** ({suite} {day}): {exc}"
        note(text, run_note=text + "\n\nNothing downstream ran; the production model is unchanged.")
        raise
    note(quality_note(result))
    return result


def wait_for_batch() -> Any:
    """One poke of `ingest.wait_for_batch` (personaflow/pipeline/arrival.py): done, not yet, or skip the
    night."""
    from datetime import UTC

    from airflow.sdk import PokeReturnValue
    from airflow.sdk.exceptions import AirflowSkipException

    from personaflow.core.alert import send_alert
    from personaflow.pipeline.arrival import batch_arrival, missing_data_email

    s, day = settings(), batch_day()
    arrival = batch_arrival(s.landing_dir, day, datetime.now(UTC).replace(tzinfo=None), s.batch_wait_hours)
    if arrival.status == "arrived":
        return PokeReturnValue(is_done=True, xcom_value=str(arrival.path))
    if arrival.status == "waiting":
        return PokeReturnValue(is_done=False)
    note(f"**Skipped**: {arrival.reason}", run_note=f"**No data** for {day}: {arrival.reason}")
    _ledger("skipped", arrival.reason)
    if arrival.status == "missing":  # a historic landing area has nothing late: no email for it

        from personaflow.pipeline._common import smtp_config

        smtp = smtp_config(s)
        send_alert(missing_data_email(arrival, day, smtp.sender, smtp.recipients), smtp, s.reports_dir)
    raise AirflowSkipException(arrival.reason)


SENSOR = "ingest.wait_for_batch"


def skip_without_batch(name: str) -> None:
    """Skip a `none_failed` task (audiences, materialize) on a night whose batch never arrived.

    Airflow runs a `none_failed` task when every upstream was skipped, so without this a missing-data
    night (the sensor skipped, and everything after it) would still refresh audiences, materialize,
    train and perhaps promote. The sensor pushes the file's path when the batch arrived; no path, no
    night."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    if get_current_context()["ti"].xcom_pull(task_ids=SENSOR) is None:
        raise AirflowSkipException(f"{name} skipped: the night's batch did not arrive ({SENSOR} skipped)")


def skip_or_note(name: str, result: dict) -> dict:
    """A profile stage that could not run on this data is shown as skipped, with its reason."""
    if result.get("status") == "skipped":
        from airflow.sdk.exceptions import AirflowSkipException

        note(f"**Skipped** {name}: {result['reason']}")
        raise AirflowSkipException(f"{name} skipped: {result['reason']}")
    if name == "audiences":
        sizes = ", ".join(f"{a} {n:,}" for a, n in result["audiences"].items())
        invalid = "; ".join(f"`{a}` not refreshed: {why}" for a, why in (result.get("invalid") or {}).items())
        note(
            f"Audiences refreshed as of {result['as_of']}: {sizes}. Sizes over time: `{result['sizes']}`"
            + (f". {invalid}" if invalid else "")
        )
        return result
    report = result["report"]
    if name == "segments":
        labels = ", ".join(f"{s['label']} ({s['size']})" for s in result["segments"])
        personas = ", ".join(f"{p['name']} ({p['size']})" for p in result["personas"]["personas"])
        note(
            f"{result['k']} segments over {result['users']:,} users: {labels}. "
            f"{result['personas']['k']} personas: {personas}. Report: `{report}`"
        )
    else:
        m = result["metrics"]
        note(
            f"Churn model: ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f} (base rate "
            f"{m['base_rate']:.3f}); {result['users_scored_as_of']:,} users scored. Report: `{report}`"
        )
    return result


def note_drift(result: dict) -> dict:
    """Say in the UI whether tonight's features shifted against the night before."""
    if result.get("status") == "skipped":
        note(f"Drift not checked: {result['reason']}")
    elif result["warnings"]:
        text = f"**Drift WARNING** ({result['as_of']} vs {result['compared_with']}): " + ", ".join(
            result["warnings"]
        )
        note(f"{text}. Report: `{result['report']}`", run_note=text, append=True)
    else:
        note(f"No drift ({result['as_of']} vs {result['compared_with']}, PSI < 0.25 everywhere).")
    return result
