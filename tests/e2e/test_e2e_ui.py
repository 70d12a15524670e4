"""The Airflow UI as a user sees it: headless Chromium (the Debian `chromium` package, driven by
Playwright, which never downloads a browser here) logs in to the same running Airflow as test_e2e.py,
opens personaflow_nightly, reads its schedule, then opens the latest run and reads every task's state
and the run's note. Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import tempfile

import pytest
from playwright.sync_api import expect, sync_playwright

from personaflow.orchestration.orchestrate import DAG_ID
from tests.e2e_helpers import ARTIFACTS, TASKS

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# No network, no background services, no GPU: a browser that only talks to 127.0.0.1.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def page():
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            yield context.new_page()
        finally:
            context.close()


def test_ui_login_shows_schedule_and_last_run_task_states(airflow_stack, good_run, page):
    stack = airflow_stack
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{stack.url}/dags/{DAG_ID}")
    page.wait_for_url("**/auth/login**")  # not logged in yet: the login form first
    page.fill("input[name=username]", stack.user)
    page.fill("input[name=password]", stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/dags/{DAG_ID}", timeout=30_000)

    header = page.get_by_test_id("header-card")
    expect(header).to_contain_text("Schedule", timeout=30_000)
    expect(header).to_contain_text("0 0 * * *")
    expect(header).to_contain_text("personaflow")  # owner and tag
    for group in ("ingest", "transform", "profiles", "features", "model"):
        expect(page.get_by_test_id(f"task-{group}")).to_be_visible()
    page.get_by_test_id("expand-all-button").click()
    page.screenshot(path=str(ARTIFACTS / "airflow_dag.png"), full_page=True)

    # The latest run, as the API knows it, must read the same in the UI.
    latest = max(stack.client.runs(DAG_ID), key=lambda r: r["run_after"])
    states = stack.client.task_states(DAG_ID, latest["dag_run_id"])
    assert set(states) == TASKS
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{latest['dag_run_id']}")
    expect(page.get_by_text(f"{len(TASKS)} Task Instances")).to_be_visible(timeout=30_000)
    for task_id, state in states.items():
        row = page.locator("tr", has=page.get_by_role("link", name=task_id, exact=True))
        label = re.compile(state.replace("_", " "), re.IGNORECASE)
        expect(row).to_contain_text(label)
    # the note says why the model was or was not promoted (or why nothing ran)
    expect(page.get_by_text(re.compile(r"Promoted|Not promoted|Data quality FAILED")).first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "airflow_last_run.png"), full_page=True)
    assert (ARTIFACTS / "airflow_last_run.png").stat().st_size > 10_000

    # The good night's run page says the model was promoted, and why.
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{good_run.run_id}")
    expect(page.get_by_text("Promoted").first).to_be_visible(timeout=30_000)
    why = re.compile(r"ndcg@10 [0-9.]+ beats (the best )?baseline|the best baseline \(.*\) serves")
    expect(page.get_by_text(why).first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "airflow_good_run.png"), full_page=True)
