"""The nightly report's model and drift sections in a real browser (issue 14), fed by the real writers:
a candidate trained through the gate against production (per-segment NDCG@10 / Recall@10 for the
candidate, the best baseline and production) and two drift nights whose production model swung to the
best sellers (the recommendation-popularity table and its warning)."""

import json
import re
from datetime import date
from pathlib import Path

import duckdb
from playwright.sync_api import sync_playwright

from personaflow.training.data.synthetic import make_interactions
from personaflow.training.pipeline import promote_candidate, train_candidate
from tests.e2e.test_e2e_ui import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_recommendation_drift import _item_snapshot, _production

NUMBER = re.compile(r"^\d\.\d{4}$")


def test_report_shows_per_segment_metrics_and_recommendation_drift(tmp_path, monkeypatch, store, inbox):
    from personaflow.core import settings
    from personaflow.pipeline.drift import check_drift
    from personaflow.report.nightly import build_report

    controller, _ = inbox
    for key, value in {
        "PERSONAFLOW_HOME": tmp_path, "PERSONAFLOW_FEATURES_DIR": tmp_path / "features",
        "PERSONAFLOW_PRODUCTION_POINTER": store, "PERSONAFLOW_SMTP_PORT": controller.port,
        # a module fixture elsewhere may have exported another warehouse for the whole session
        "PERSONAFLOW_WAREHOUSE": tmp_path / "warehouse.duckdb",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, str(value))
    s = settings.load()
    s.features_dir.mkdir(parents=True)
    with duckdb.connect(str(s.warehouse)) as con:
        con.register("synthetic", make_interactions(seed=8))
        con.execute("create schema marts; create table marts.interactions as select * from synthetic")

    # two nights of recommendation profiles: a niche production model, then one of best sellers
    items = s.features_dir / "item_features.parquet"
    _item_snapshot(items, ["2026-09-29"])
    _production(store, prefer_popular=False)
    check_drift(date(2026, 9, 29), s)
    _item_snapshot(items, ["2026-09-29", "2026-09-30"])
    _production(store, prefer_popular=True)
    drift = check_drift(date(2026, 9, 30), s)
    assert drift["recommendations"]["drift"] == "significant"

    # tonight's candidate, gated against a production trained on the same warehouse; one epoch of BPR
    # beats no baseline (tests/unit/test_gate.py): the baseline serves, the learned model is shown beside it
    kw = {"holdout_days": 7, "epochs": 1, "dim": 8, "reports_dir": s.reports_dir / "training",
          "pointer_path": store}  # fmt: skip
    first = train_candidate(s.warehouse, seed=1, model="tifu", **kw)
    assert promote_candidate(first["tag"], store, force=True)["promoted"]
    tonight = train_candidate(s.warehouse, seed=4, model="bpr", **kw)
    assert "learned_tag" in tonight
    segments = json.loads(Path(tonight["report"]).read_text())["metrics"]["gate_segments"]
    assert {"candidate", "best_baseline", "production"} <= set(next(iter(segments.values())))

    result = build_report(date(2026, 9, 30), s)
    assert result["sections"]["model"] and result["sections"]["drift"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(Path(result["report"]).as_uri())
            assert "By customer segment" in page.locator("h3").all_inner_texts()[0]
            table = page.locator("table.by-segment")
            header = table.locator("tr").first.locator("th").all_inner_texts()[2:]
            assert header[:2] == ["candidate (baseline)", "learned bpr-mf"]
            assert header[2].startswith("best baseline (") and header[3].startswith("production (")
            rows = table.locator("tr").all()[2:]
            assert [r.locator("td").first.inner_text() for r in rows] == list(segments)
            first = [c.strip() for c in rows[0].locator("td").all_inner_texts()]
            assert first[1] == f"{next(iter(segments.values()))['n_users']:,}"
            assert len(first) == 10 and all(NUMBER.match(c) for c in first[2:]), first
            cells = [r.locator("td").all_inner_texts() for r in rows]
            assert any(c[2:4] != c[4:6] for c in cells)  # the learned model's own numbers, not a copy
            recs = page.locator("table.rec-popularity tr").all_inner_texts()
            assert len(recs) == 3 and "2026-09-30" in recs[2] and "100.0%" in recs[2]
            assert "significant" in page.locator("#drift-recommendations + p").inner_text()
        finally:
            browser.close()
