"""End to end through a real Airflow: the scheduler, dag-processor and api-server run as processes
(`airflow standalone`), runs are triggered and read through the REST API, every task runs in its own
process as in production. Around it: a generated shop, dbt on DuckDB, Great Expectations, Feast,
PyTorch, a `bentoml serve` process answering HTTP, and a real SMTP server.

The good night runs first (session fixture `good_run`), then a corrupted night must stop at
validation, email the data team (the detailed quality report and Airflow's failure notice), quarantine
the batch and leave the marts and the production model untouched.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import duckdb
import httpx
import pytest

from personaflow.core.landing import batch_path
from personaflow.ops.demo import free_port
from personaflow.orchestration.orchestrate import DAG_ID, airflow_env
from tests.e2e_helpers import TASKS, body_text, run_day

pytestmark = pytest.mark.e2e


def _marts_fingerprint(s) -> tuple:
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        return con.execute(
            "select count(*), max(as_of_date), round(sum(monetary), 2), sum(n_views) from marts.user_features"
        ).fetchone()


def test_nightly_run_through_the_real_scheduler_succeeds_and_explains_itself(airflow_stack, good_run):
    stack = airflow_stack
    assert good_run.state == "success", good_run.tasks
    assert set(good_run.tasks) == TASKS
    # 21 days of log cannot train a 90-day churn model: that task is skipped, the night still succeeds
    states = dict(good_run.tasks)
    assert states.pop("profiles.churn") == "skipped", states
    assert all(state == "success" for state in states.values()), states

    # What the UI shows: notes on the quality gate, the candidate and the promotion decision.
    notes = {ti["task_id"]: ti["note"] for ti in stack.client.task_instances(DAG_ID, good_run.run_id)}
    assert notes["ingest.validate_batch"].startswith("**Data quality passed**"), notes
    assert "is not longer than the 90-day churn horizon" in notes["profiles.churn"], notes
    assert (
        notes["profiles.churn"].startswith("**Skipped** churn")
        and " segments over " in notes["profiles.segments"]
    )
    assert str(stack.last) in notes["ingest.validate_batch"]
    assert "ndcg@10" in notes["model.train"] and "Report:" in notes["model.train"]
    pointer = json.loads(stack.s.production_pointer.read_text())
    assert notes["model.promote"].startswith("**Promoted**"), notes["model.promote"]
    assert pointer["tag"] in notes["model.promote"]
    run = stack.client.run(DAG_ID, good_run.run_id)
    assert "Promoted" in run["note"] and "training_" in run["note"]
    # a manual run for a day looks like that day's scheduled run: data interval = the batch day
    assert run["logical_date"].startswith(str(stack.last))
    assert run["data_interval_start"].startswith(str(stack.last))
    assert run["data_interval_end"].startswith(str(stack.last + timedelta(days=1)))
    # training ran in the one-slot gpu pool
    train = next(ti for ti in stack.client.task_instances(DAG_ID, good_run.run_id)
                 if ti["task_id"] == "model.train")  # fmt: skip
    assert train["pool"] == "gpu"
    # the task's log in the UI shows the training's own lines: epochs that name their model and the recipe
    # chosen (issue 27), though Airflow's own level stays WARNING
    logs = stack.s.airflow_home / "logs" / f"dag_id={DAG_ID}" / f"run_id={good_run.run_id}"
    train_log = (logs / "task_id=model.train" / "attempt=1.log").read_text(errors="replace")
    assert re.search(r"\b[a-z_]+ epoch 1/\d+", train_log), train_log[-3000:]
    assert "recipe chosen:" in train_log, train_log[-3000:]


def test_promoted_model_is_served_over_http(airflow_stack, good_run):
    stack = airflow_stack
    assert good_run.state == "success"
    pointer = json.loads(stack.s.production_pointer.read_text())
    from personaflow.serving.process import start, stop, wait_ready

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start("127.0.0.1", port, env=airflow_env(stack.s))
    try:
        wait_ready(base, timeout=120, proc=proc)
        events = stack.shop.events
        known = events.loc[events["event_type"] == "purchase", "user_id"].iloc[0]
        answer = httpx.post(f"{base}/recommend", json={"user_id": known, "k": 5}, timeout=30).json()
        assert answer["model_version"] == pointer["tag"]
        assert answer["fallback"] is None
        assert len(answer["items"]) == 5
        assert set(i["item_id"] for i in answer["items"]) <= set(stack.shop.items["item_id"])
        scores = [i["score"] for i in answer["items"]]
        assert scores == sorted(scores, reverse=True)

        # segments ran that night, churn was skipped: the K-means label, the recency rule for churn
        profile = httpx.post(f"{base}/profile", json={"user_id": known}, timeout=30).json()
        assert profile["segment_label"] and isinstance(profile["segment_id"], int), profile
        assert profile["churn_score"] is None and profile["churn_basis"] == "rule" and profile["churn_risk"]
        stranger = httpx.post(f"{base}/recommend", json={"user_id": "nobody", "k": 3}, timeout=30).json()
        assert stranger["fallback"] == "popularity" and len(stranger["items"]) == 3
        bad = httpx.post(f"{base}/recommend", json={"user_id": known, "k": 0}, timeout=30)
        assert bad.status_code == 422 and "k" in bad.text
    finally:
        stop(proc)
    assert proc.poll() is not None


def test_corrupted_batch_fails_validation_skips_downstream_and_emails(airflow_stack, good_run):
    stack, s, last = airflow_stack, airflow_stack.s, airflow_stack.last
    assert good_run.state == "success"
    before_marts = _marts_fingerprint(s)
    before_pointer = s.production_pointer.read_text()

    # The next day's file: yesterday's rows moved one day on, with a negative price and a bogus type.
    bad_day = last + timedelta(days=1)
    lines = batch_path(s.landing_dir, last).read_text().splitlines()
    rows = [line.replace(last.isoformat(), bad_day.isoformat()) for line in lines[1:]]
    rows[0] = rows[0].rsplit(",", 1)[0] + ",-5.0"
    for kind in ('"view"', '"cart"', '"purchase"'):
        rows[1] = rows[1].replace(kind, '"teleport"')
    bad_file = batch_path(s.landing_dir, bad_day)
    bad_file.write_text("\n".join([lines[0], *rows]) + "\n")

    run = run_day(stack, bad_day)
    assert run.state == "failed"
    assert run.tasks["ingest.load"] == "success"
    assert run.tasks["ingest.validate_batch"] == "failed"
    ran = {"ingest.wait_for_batch", "ingest.load", "ingest.validate_batch", "report.render"}
    for downstream in TASKS - ran:
        assert run.tasks[downstream] == "upstream_failed", run.tasks
    assert run.tasks["report.render"] == "success"  # the night's page says what did not run
    # no retry on a data-quality failure
    validate = next(ti for ti in stack.client.task_instances(DAG_ID, run.run_id)
                    if ti["task_id"] == "ingest.validate_batch")  # fmt: skip
    assert validate["try_number"] == 1

    assert _marts_fingerprint(s) == before_marts
    assert s.production_pointer.read_text() == before_pointer
    assert bad_file.exists()
    assert (s.quarantine_dir / bad_day.isoformat() / "reasons.json").exists()
    run_note = stack.client.run(DAG_ID, run.run_id)["note"]
    assert "Data quality FAILED" in run_note and "price" in run_note

    # 1) the quality stage's detailed report
    mails = stack.inbox.wait_for(bad_day.isoformat())
    detailed = [m for m in mails if "failed for batch" not in m["Subject"]]
    assert detailed, [m["Subject"] for m in stack.inbox.messages]
    body = body_text(detailed[-1])
    assert "price" in body and "event_type" in body and "teleport" in body
    assert detailed[-1]["To"] == "data-team@example.test"
    # 2) Airflow's failure notice from the SMTP provider's notifier, with the reason and the log link
    notices = stack.inbox.wait_for(f"ingest.validate_batch failed for batch {bad_day}")
    assert notices, [m["Subject"] for m in stack.inbox.messages]
    notice = body_text(notices[-1])
    assert "DataQualityError" in notice or "failed" in notice
    assert "price" in notice and stack.url in notice
    assert "data-team@example.test" in notices[-1]["To"]


def test_marts_and_features_assets_and_an_announced_correction_queues_the_refresh(airflow_stack, good_run):
    """Asset wiring on the real scheduler: the good night recorded events on the marts and features
    assets; announcing a corrected batch queues `personaflow_refresh` for that day. (The e2e stack
    runs with the schedule off, so the queued run is not started here: the scheduler creates
    asset-triggered runs only when its schedule is on, the default.)"""
    from personaflow.orchestration.orchestrate import RAW_CORRECTED_URI, REFRESH_DAG_ID, announce_batch

    stack = airflow_stack
    assert good_run.state == "success"
    for uri, task_id in (("personaflow://warehouse/marts", "transform.validate_marts"),
                         ("personaflow://features/feast", "features.materialize")):  # fmt: skip
        produced = [e for e in stack.client.asset_events(uri) if e["source_run_id"] == good_run.run_id]
        assert [(e["source_dag_id"], e["source_task_id"]) for e in produced] == [(DAG_ID, task_id)], uri

    stack.client.wait_for_dag(REFRESH_DAG_ID)
    stack.client.set_paused(REFRESH_DAG_ID, False)  # paused DAGs do not queue asset events
    try:
        event = announce_batch(stack.s, stack.last)
        assert event["uri"] == RAW_CORRECTED_URI and event["extra"]["batch_date"] == str(stack.last)
        queued = stack.client.queued_asset_events(REFRESH_DAG_ID)
        assert [q["asset_id"] for q in queued] == [event["asset_id"]]
        assert DAG_ID not in {q["dag_id"] for q in queued}
    finally:
        stack.client.set_paused(REFRESH_DAG_ID, True)
