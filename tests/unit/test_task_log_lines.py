"""Our progress lines reach the Airflow task log while Airflow's level stays WARNING (issue 27).

The task process's logging is configured as Airflow's task runner does it (JSON lines to the supervisor's
channel, here a buffer), in a child interpreter so the test process's logging stays as it is."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import io, json, logging, sys
from airflow.sdk.log import configure_logging
out = io.BytesIO()
configure_logging(json_output=True, output=out, sending_to_supervisor=True, log_level="WARNING")
if sys.argv[1] == "fix":
    from personaflow.orchestration.dag_tasks import progress_lines_in_task_log
    progress_lines_in_task_log()
    progress_lines_in_task_log()  # a task calls settings() more than once
logging.getLogger("personaflow.training.models.fit").info("tifu epoch 1/5 ndcg@10=0.31")
logging.getLogger("personaflow.quality.validate").warning("day quarantined")
logging.getLogger("dbt").info("a tool's chatter")
logging.getLogger("airflow.task").info("airflow's own info")
for h in logging.getLogger().handlers:
    h.flush()
sys.stdout.write(out.getvalue().decode())
"""


def _events(mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line)["event"] for line in done.stdout.splitlines() if line.startswith("{")]


def test_epoch_lines_reach_the_task_log_once_and_tools_stay_quiet():
    events = _events("fix")
    assert events.count("tifu epoch 1/5 ndcg@10=0.31") == 1, events
    assert events.count("day quarantined") == 1, events
    assert "a tool's chatter" not in events and "airflow's own info" not in events, events


def test_without_the_forwarder_airflow_drops_them():
    # what the task log showed before: the handler's WARNING level drops our INFO lines
    events = _events("plain")
    assert "tifu epoch 1/5 ndcg@10=0.31" not in events and "day quarantined" in events, events
