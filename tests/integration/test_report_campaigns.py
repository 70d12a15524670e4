"""The nightly report's campaign and demographics section in headless Chromium, fed by the real writers:
a tiny shop's events, customers, campaigns and redemptions imported through their mappings."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.e2e.test_e2e_ui import CHROMIUM, CHROMIUM_ARGS
from tests.unit.test_shop_tables_profile import _shop, _with_coupons


def test_report_shows_campaign_response_and_demographics_mix(tmp_path: Path, monkeypatch) -> None:
    from personaflow.core import settings
    from personaflow.pipeline.shop_tables import import_table
    from personaflow.report.nightly import build_report

    for key, value in {
        "PERSONAFLOW_HOME": tmp_path,
        "PERSONAFLOW_FEATURES_DIR": tmp_path / "features",
        "PERSONAFLOW_WAREHOUSE": tmp_path / "warehouse.duckdb",
    }.items():
        monkeypatch.setenv(key, str(value))
    s = settings.load()
    shop = _shop(tmp_path)
    assert shop.features_dir == s.features_dir and Path(shop.warehouse) == Path(s.warehouse)
    import_table("redemptions", tmp_path / "red.csv", str(tmp_path / "red.toml"), s)

    before = build_report(date(2017, 2, 28), s)
    assert before["sections"]["campaigns"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(Path(before["report"]).as_uri())
        rows = page.locator("table.campaigns tr").all_inner_texts()
        # header + the two campaigns, the latest first
        assert len(rows) == 3 and rows[1].startswith("2\t") and rows[2].startswith("1\t")
        first = rows[2].split("\t")
        assert first[3:6] == ["3", "1", "33.3%"]  # reached a, b, c; a redeemed
        # four customers make four spend strata of one: no reached customer has a comparable one
        # in the window (Jan 10-25): a 5 x 10.00, b 4 x 11.00, c 3 x 12.00 -> 130 / 3 per reached
        assert first[6] == "43.33" and first[7] == "no comparable customers"
        assert "pre-period spend decile" in page.locator("#campaigns + p").inner_text()
        demo = page.locator("table.demographics").inner_text()
        assert "young customers, mid income" in demo and "unknown\t2" in demo
        assert "2 of 4 customers known" in page.locator("body").inner_text()
        browser.close()


def test_report_shows_what_each_campaign_promoted_and_its_coupon_products_comparison(
    tmp_path: Path, monkeypatch
) -> None:
    from personaflow.core import settings
    from personaflow.pipeline.shop_tables import import_table
    from personaflow.report.nightly import build_report

    for key, value in {
        "PERSONAFLOW_HOME": tmp_path,
        "PERSONAFLOW_FEATURES_DIR": tmp_path / "features",
        "PERSONAFLOW_WAREHOUSE": tmp_path / "warehouse.duckdb",
    }.items():
        monkeypatch.setenv(key, str(value))
    s = settings.load()
    _shop(tmp_path)
    _with_coupons(tmp_path, s)
    import_table("redemptions", tmp_path / "red.csv", str(tmp_path / "red.toml"), s)
    out = build_report(date(2017, 2, 28), s)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(Path(out["report"]).as_uri())
        rows = [r.split("\t") for r in page.locator("table.campaigns tr").all_inner_texts()]
        assert rows[0][-2:] == ["promoted (share of coupon products)",
                                "incremental on coupon products (95% interval)"]  # fmt: skip
        # campaign 1's coupon is for i1 (DAIRY), which is all anybody buys: the same "no comparable
        # customers" on its products as on all; campaign 2's for i2 (BAKERY), never bought
        assert rows[2][0] == "1" and rows[2][-2:] == ["DAIRY 100%", "no comparable customers"]
        assert rows[1][0] == "2" and rows[1][-2] == "BAKERY 100%"
        said = page.locator("#campaigns + p").inner_text()
        assert "On coupon products: the same stratified comparison" in said
        browser.close()


def test_report_says_not_available_for_a_shop_without_these_tables(tmp_path: Path, monkeypatch) -> None:
    from personaflow.core import settings
    from personaflow.report.nightly import build_report

    for key, value in {
        "PERSONAFLOW_HOME": tmp_path,
        "PERSONAFLOW_FEATURES_DIR": tmp_path / "features",
        "PERSONAFLOW_WAREHOUSE": tmp_path / "warehouse.duckdb",
    }.items():
        monkeypatch.setenv(key, str(value))
    out = build_report(date(2017, 2, 28), settings.load())
    assert not out["sections"]["campaigns"]
    assert "no customer or campaign tables" in Path(out["report"]).read_text()
