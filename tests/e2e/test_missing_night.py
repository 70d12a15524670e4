"""The missing-file night through a real Airflow (README, "Data-quality alerts"): a day whose file never
landed is waited for until its deadline, then the run notes **missing data**, sends ONE
`[personaflow] missing data` email and skips the night: nothing fails, nothing retries, no failure
mail, nothing is loaded, and the production model is unchanged.

Only the `airflow_stack` fixture (no good night needed): the day two days after the stack's last
landed file is long past its deadline, and recent enough not to count as a historic import.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from personaflow.ingest.generate import batch_path
from personaflow.orchestration.orchestrate import DAG_ID
from tests.e2e_helpers import TASKS, body_text, run_day

pytestmark = pytest.mark.e2e


def _rows_for(s, day) -> int:
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        query = "select count(*) from raw.events where cast(event_ts as date) = ?"
        return con.execute(query, [day]).fetchone()[0]


def test_a_night_without_its_file_is_noted_mailed_once_and_skipped(airflow_stack):
    stack, s = airflow_stack, airflow_stack.s
    day = stack.last + timedelta(days=3)  # a day no other e2e test writes a file for
    assert not batch_path(s.landing_dir, day).exists()
    pointer_before = s.production_pointer.read_text() if s.production_pointer.exists() else None
    mails_before = len(stack.inbox.messages)

    run = run_day(stack, day, timeout=300)

    # skipped, not failed: the run itself succeeds, no task failed or was retried
    assert run.state == "success", run.tasks
    assert set(run.tasks) == TASKS
    assert run.tasks["ingest.wait_for_batch"] == "skipped", run.tasks
    for task_id in TASKS - {"ingest.wait_for_batch", "report.render"}:
        assert run.tasks[task_id] == "skipped", (task_id, run.tasks)
    tries = {ti["task_id"]: ti["try_number"] for ti in stack.client.task_instances(DAG_ID, run.run_id)}
    assert tries["ingest.wait_for_batch"] == 1, tries

    # the note on the sensor and on the run says why
    notes = {ti["task_id"]: ti["note"] or "" for ti in stack.client.task_instances(DAG_ID, run.run_id)}
    assert notes["ingest.wait_for_batch"].startswith("**Skipped**: missing data"), notes
    run_note = stack.client.run(DAG_ID, run.run_id)["note"] or ""
    assert f"**No data** for {day}" in run_note and "production model is unchanged" in run_note, run_note

    # exactly one email, the missing-data one, naming the day and the command to run when it lands
    mails = stack.inbox.wait_for(f"missing data: no batch for {day}")
    assert len(mails) == 1, [m["Subject"] for m in stack.inbox.messages]
    assert mails[0]["To"] == "data-team@example.test"
    assert f"personaflow trigger --date {day}" in body_text(mails[0])
    new = [m["Subject"] for m in stack.inbox.messages[mails_before:]]
    assert [subject for subject in new if str(day) in subject] == [mails[0]["Subject"]], new
    assert not [subject for subject in new if "failed" in subject.lower()], new

    # nothing loaded for the day, production unchanged
    assert _rows_for(s, day) == 0
    pointer_after = s.production_pointer.read_text() if s.production_pointer.exists() else None
    assert pointer_after == pointer_before
