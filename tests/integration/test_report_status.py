"""The report says first whether tonight's run succeeded, which stage stopped it and what is served now;
a section whose stage did not run shows the latest data that exists, dated (issue 27). Real files from
the night's writers (the ledger of personaflow/core/night.py, a segments report, the production
pointer), the real renderer, and the page read in headless Chromium."""

import json
from datetime import date

from playwright.sync_api import sync_playwright

from personaflow.core.night import record_task
from personaflow.training.registry.pointer import write_pointer
from tests.e2e.test_e2e_ui import CHROMIUM, CHROMIUM_ARGS
from tests.e2e_helpers import ARTIFACTS

TONIGHT, YESTERDAY = date(2011, 12, 9), date(2011, 12, 8)
SEGMENT = {"label": "loyal regulars", "dominant_rfm_segment": "Loyal Customers", "size": 120, "share": 0.4,
           "mean_recency_days": 20.0, "mean_frequency": 6.5, "mean_monetary": 812.0,
           "top_categories": ["home decor"]}  # fmt: skip


PERSONAS = {"k": 1, "buyers": 300, "criterion": "admissible k: ...", "personas": [
    {"name": "bulk narrow-range buyers", "size": 300, "share": 1.0, "description": "4 products a basket",
     "action": "offer volume price tiers or a trade account"}]}  # fmt: skip


def _home(tmp_path, monkeypatch):
    from personaflow.core import settings

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_PRODUCTION_POINTER", str(tmp_path / "registry" / "production.json"))
    s = settings.load()
    folder = s.reports_dir / "segments"
    folder.mkdir(parents=True)
    (folder / f"segments_{YESTERDAY}.json").write_text(
        json.dumps({"status": "ok", "segments": [SEGMENT], "personas": PERSONAS})
    )
    write_pointer(s.production_pointer, {"tag": "personaflow-recommender:abc123",
                                         "promoted_at": "2011-12-08T01:02:03+00:00"})  # fmt: skip
    return s


def _read_page(path, shot: str) -> tuple[str, str, str]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"file://{path}")
            status = page.locator("#status")
            first = page.locator("body > p").first.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
            return first, status.get_attribute("class"), page.locator("body").inner_text()
        finally:
            browser.close()


def test_a_failed_night_says_so_first_and_shows_the_latest_data_there_is(tmp_path, monkeypatch):
    from personaflow.report.nightly import build_report

    s = _home(tmp_path, monkeypatch)
    record_task(s.reports_dir, TONIGHT, "scheduled__2011-12-09", "transform.dbt_build", "failed",
                "TransformError: dbt test not_null_marts_interactions_user_id failed")  # fmt: skip
    record_task(s.reports_dir, TONIGHT, "scheduled__2011-12-09", "report.render", "failed", "not first")

    result = build_report(TONIGHT, s, run_id="scheduled__2011-12-09")

    assert result["status"] == "failed"
    first, css, text = _read_page(result["report"], "report_failed_night.png")
    assert first.startswith("Tonight's run FAILED at transform.dbt_build: TransformError: dbt test")
    assert "serving personaflow-recommender:abc123 (in production since 2011-12-08T01:02)" in first
    assert "failed" in css.split()
    assert f"segments from {YESTERDAY}: tonight's segments stage did not run" in text
    assert "loyal regulars" in text
    assert "Personas: how they shop" in text and "offer volume price tiers or a trade account" in text


def test_a_night_without_its_file_and_a_good_night_read_differently(tmp_path, monkeypatch):
    from personaflow.report.nightly import build_report

    s = _home(tmp_path, monkeypatch)
    record_task(s.reports_dir, TONIGHT, "run-1", "ingest.wait_for_batch", "skipped",
                "no batch file for 2011-12-09 6 h after the day ended")  # fmt: skip
    skipped = build_report(TONIGHT, s, run_id="run-1")
    assert skipped["status"] == "skipped"
    assert skipped["status_line"].startswith("No data tonight (no batch file for 2011-12-09")

    # a later run of the same day (a retry from the UI) starts the ledger afresh: it succeeded
    good = build_report(TONIGHT, s, run_id="run-2")
    first, css, _ = _read_page(good["report"], "report_good_night.png")
    assert first.startswith("Tonight's run succeeded — serving personaflow-recommender:abc123")
    assert "ok" in css.split()
    # from the CLI nobody knows the run: it says what the ledger holds, not "succeeded"
    assert build_report(TONIGHT, s)["status"] == "skipped"
    assert build_report(YESTERDAY, s)["status"] == "unknown"
