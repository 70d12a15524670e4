"""The real UCI Online Retail log (../shared/data/online-retail) through every stage.

- the whole file's import reproduces PROVENANCE.md's facts, read from that file fact by fact;
- the same rows as .csv, .csv.gz and .xlsx land identically;
- a two-month slice goes through `personaflow history` (import, every day validated, marts, segments,
  churn, Feast, a model through the gate), then a real BentoML server answers /profile for every
  customer, never recommends a non-product, and customer 12346's cancelled order nets to zero;
- a header-only re-delivery of a trading day is refused and the day's rows stay.
Expected values are computed from the data here (pandas), never copied from a run.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest

from personaflow.core import settings
from personaflow.ingest.landing import import_events
from personaflow.ingest.online_retail import read_online_retail
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline import validate as validate_stage
from personaflow.pipeline.history import build_history
from personaflow.quality.validate import DataQualityError
from personaflow.serving import process
from tests._serving_setup import free_port

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "online-retail"
SOURCE = DATA / "online_retail.csv.gz"
NON_PRODUCTS = {"POST", "DOT", "C2", "M", "D", "S", "B", "PADS", "CRUK", "BANK CHARGES", "AMAZONFEE"}
# Provenance facts -> where the import report carries them
FACTS = {
    "data lines": ("rows",),
    "distinct CustomerID": ("customers",),
    "rows without CustomerID": ("faults", "missing_customer"),
    "distinct StockCode": ("products",),
    "rows without Description": ("faults", "missing_description"),
    "exact duplicate rows": ("faults", "duplicate"),
    "cancellations": ("faults", "return"),
    "rows with Quantity < 0": ("faults", "negative_quantity"),
    "rows with UnitPrice <= 0": ("faults", "non_positive_price"),
}

# The real file is part of the project's setup (../shared/data beside the checkout, as CI has it): a
# missing file fails these tests, it does not skip them.


@pytest.fixture(scope="module")
def export() -> pd.DataFrame:
    """The real file as text, every value as it came."""
    return pd.read_csv(SOURCE, dtype=str, keep_default_na=False)


def _months(frame: pd.DataFrame, pattern: str) -> pd.DataFrame:
    return frame[frame["InvoiceDate"].str.match(pattern)]


def _customers(frame: pd.DataFrame) -> list[str]:
    ids = frame.loc[frame["CustomerID"] != "", "CustomerID"].str.replace(".0", "", regex=False)
    return sorted(set(ids))


def _expected(frame: pd.DataFrame) -> dict[str, int]:
    price, quantity = frame["UnitPrice"].astype(float), frame["Quantity"].astype(int)
    customers = frame.loc[frame["CustomerID"] != "", "CustomerID"]
    return {
        "rows": len(frame),
        "customers": customers.nunique(),
        "products": frame["StockCode"].nunique(),
        "missing_customer": int((frame["CustomerID"] == "").sum()),
        "missing_description": int((frame["Description"] == "").sum()),
        "duplicate": int(frame.duplicated().sum()),
        "return": int(frame["InvoiceNo"].str.startswith("C").sum()),
        "negative_quantity": int((quantity < 0).sum()),
        "non_positive_price": int((price <= 0).sum()),
    }


def test_full_import_reproduces_provenance_fact_by_fact(tmp_path):
    report = import_events(SOURCE, "online-retail", tmp_path / "landing")
    table = (DATA / "PROVENANCE.md").read_text().split("## Facts", 1)[1]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", table, flags=re.M))
    checked = 0
    for fact, value in rows.items():
        key = next((k for k in FACTS if fact.startswith(k)), None)
        if key is None:
            continue
        got = report
        for part in FACTS[key]:
            got = got[part]
        assert got == int(value.replace(",", "")), fact
        checked += 1
    assert checked == len(FACTS)
    first, last = rows["first / last InvoiceDate"].split(" / ")
    assert (report["first_event_ts"], report["last_event_ts"]) == (first, last)
    assert report["batches"]["first_day"] == first[:10] and report["batches"]["last_day"] == last[:10]


def test_csv_gzip_and_xlsx_land_the_same(export, tmp_path):
    rows = _months(export, r"12/[1-3]/2010 ")
    csv, gz, xlsx = tmp_path / "or.csv", tmp_path / "or.csv.gz", tmp_path / "or.xlsx"
    rows.to_csv(csv, index=False)
    rows.to_csv(gz, index=False, compression="gzip")
    # typed cells as the UCI sheet has them: numbers, a real date, CustomerID as a float
    typed = rows.assign(
        InvoiceNo=[int(v) if v.isdigit() else v for v in rows["InvoiceNo"]],
        StockCode=[int(v) if v.isdigit() else v for v in rows["StockCode"]],
        Quantity=rows["Quantity"].astype(int),
        UnitPrice=rows["UnitPrice"].astype(float),
        CustomerID=pd.to_numeric(rows["CustomerID"].replace("", None)),
        InvoiceDate=pd.to_datetime(rows["InvoiceDate"], format="%m/%d/%Y %H:%M"),
    )
    typed.to_excel(xlsx, index=False)
    frames = {p.suffix: read_online_retail(p) for p in (csv, gz, xlsx)}
    expected = _expected(rows)
    for suffix, (_, report) in frames.items():
        assert {k: report["faults"].get(k, report.get(k)) for k in expected} == expected, suffix
    pd.testing.assert_frame_equal(frames[".csv"][0], frames[".gz"][0])
    pd.testing.assert_frame_equal(frames[".csv"][0], frames[".xlsx"][0])


@pytest.fixture(scope="module")
def built(export, tmp_path_factory, inbox):
    """Two months of the real log through `personaflow history`, then a real BentoML server on it."""
    controller, handler = inbox
    home = tmp_path_factory.mktemp("real")
    path = home / "online_retail_2m.csv.gz"
    rows = _months(export, r"(12/\d+/2010|1/\d+/2011) ")
    rows.to_csv(path, index=False, compression="gzip")
    env = {
        "PERSONAFLOW_HOME": str(home / "home"), "BENTOML_HOME": str(home / "home" / "bentoml"),
        "PERSONAFLOW_FEATURES_DIR": str(home / "home" / "features"),
        "PERSONAFLOW_SMTP_PORT": str(controller.port),
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        s = settings.load()
        lines: list[str] = []
        result = build_history(path, "online-retail", s, progress=lines.append)
        port = free_port()
        proc = process.start("127.0.0.1", port, env=env, log_file=home / "serve.log")
        try:
            process.wait_ready(f"http://127.0.0.1:{port}", timeout=120, proc=proc)
            yield {"rows": rows, "result": result, "s": s, "base": f"http://127.0.0.1:{port}",
                   "lines": lines, "inbox": handler, "env": env}  # fmt: skip
        finally:
            process.stop(proc)


def test_history_builds_every_stage_with_progress(built):
    result, rows = built["result"], built["rows"]
    imported = result["import"]
    assert {k: imported["faults"].get(k, imported.get(k)) for k in _expected(rows)} == _expected(rows)
    validated = result["validate_history"]
    assert validated["days"] == len(pd.date_range("2010-12-01", "2011-01-31"))
    assert validated["failed_days"] == []
    assert result["promote"]["promoted"] is True  # the first model beats popularity through the gate
    for stage in ("import", "validate_history", "transform", "features", "train"):
        assert any(line.startswith(f"{stage}: done in") for line in built["lines"]), stage
    with duckdb.connect(str(built["s"].warehouse), read_only=True) as con:
        [(days, validated_days)] = con.execute(
            "select count(*), count(*) filter (where validation <> 'not validated') "
            "from marts.data_quality_days"
        ).fetchall()
        non_products = con.execute(
            "select item_id from marts.item_features where not is_product order by 1"
        ).fetchall()
        paired = con.execute(
            "select count(*) from marts.co_purchase where item_id in (select item_id from marts.item_features"
            " where not is_product)"
        ).fetchall()
    assert days == validated_days == validated["days"]
    flagged = {i.upper() for (i,) in non_products}
    assert flagged - {i for i in flagged if i.startswith("GIFT_")} <= NON_PRODUCTS
    assert "POST" in flagged and paired == [(0,)]


def test_profile_answers_every_customer_and_monetary_is_net(built):
    rows = built["rows"]
    customers = _customers(rows)
    with httpx.Client(base_url=built["base"], timeout=10) as client:
        answers = {u: client.post("/profile", json={"user_id": u}) for u in customers}
        bad = {u: (r.status_code, r.text[:120]) for u, r in answers.items() if r.status_code != 200}
        assert bad == {}
    # 12346 bought 74,215 units on 2011-01-18 and cancelled them the same day: net zero
    mine = rows[rows["CustomerID"] == "12346.0"]
    net = (mine["Quantity"].astype(int) * mine["UnitPrice"].astype(float)).sum()
    assert answers["12346"].json()["monetary"] == pytest.approx(net, abs=0.01) == 0.0
    assert any(answers[u].json()["favourite_categories"] for u in customers)


def test_no_non_product_is_ever_recommended_or_similar(built):
    rows = built["rows"]
    shown: set[str] = set()
    customers = _customers(rows)
    with httpx.Client(base_url=built["base"], timeout=10) as client:
        for user in customers:
            answer = client.post("/recommend", json={"user_id": user, "k": 20})
            assert answer.status_code == 200, answer.text
            shown |= {i["item_id"] for i in answer.json()["items"]}
            if user == "12346":  # everything he bought came back: it is not offered again
                assert "23166" not in {i["item_id"] for i in answer.json()["items"]}
        for item in sorted(shown)[:300]:
            answer = client.post("/similar_items", json={"item_id": item, "k": 20})
            assert answer.status_code == 200, answer.text
            shown |= {i["item_id"] for i in answer.json()["items"]}
        named = client.post("/recommend", json={"user_id": customers[0], "k": 5}).json()["items"]
    assert not {i.upper() for i in shown} & NON_PRODUCTS and not any(i.startswith("gift_") for i in shown)
    assert all(item["name"] for item in named)  # answers carry the item's description


def _bought_days(rows: pd.DataFrame) -> dict[tuple[str, str], list]:
    """(customer, item) -> the days they bought it, from the raw rows (no cancellations or free lines)."""
    sold = rows[
        (rows["CustomerID"] != "") & ~rows["InvoiceNo"].str.startswith("C")
        & (rows["Quantity"].astype(int) > 0) & (rows["UnitPrice"].astype(float) > 0)
    ]  # fmt: skip
    days = pd.to_datetime(sold["InvoiceDate"], format="%m/%d/%Y %H:%M").dt.date
    customer = sold["CustomerID"].str.replace(".0", "", regex=False)
    frame = pd.DataFrame({"u": customer, "i": sold["StockCode"], "d": days}).drop_duplicates()
    return {key: sorted(group["d"]) for key, group in frame.groupby(["u", "i"])}


def test_every_recommendation_names_a_true_reason(built):
    rows = built["rows"]
    bought = _bought_days(rows)
    items_of: dict[str, set[str]] = {}
    for user, item in bought:
        items_of.setdefault(user, set()).add(item)
    # an item's name is its most frequent description (ties: the first in order), as the import keeps it
    counts = rows.groupby(["StockCode", "Description"]).size().reset_index(name="n")
    ranked = counts.sort_values(["StockCode", "n", "Description"], ascending=[True, False, True])
    names = ranked.drop_duplicates("StockCode").set_index("StockCode")["Description"]
    as_of = date(2011, 1, 31)  # the slice's last day: the nightly features' as-of day
    sources: dict[str, int] = {}
    with httpx.Client(base_url=built["base"], timeout=10) as client:
        for user in _customers(rows):
            for item in client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]:
                source, reason, other = item["reason_source"], item["reason"], item["reason_item"]
                sources[source] = sources.get(source, 0) + 1
                if source == "history":
                    days = bought[(user, item["item_id"])]
                    ago = (as_of - days[-1]).days
                    when = {0: "today", 1: "yesterday"}.get(ago, f"{ago} days ago")
                    times = {2: "twice"}.get(len(days), f"{len(days)} times")
                    assert reason == (f"bought {when}" if len(days) == 1 else f"bought {times}, last {when}")
                else:
                    assert item["item_id"] not in items_of.get(user, set()), (user, item)
                if source in ("co_purchase", "text"):
                    assert other in items_of[user] and names[other] in reason, (user, item)
                else:
                    assert other is None
    # the reasons a re-buying shop's model gives show up: its history, co-purchases, and the fill beyond
    # them (neighbours from TIFU-KNN, the segment's or the shop's best sellers: which, the chosen recipe says)
    assert {"history", "co_purchase"} <= set(sources) and {"neighbours", "segment", "popularity"} & set(
        sources
    ), sources


def test_header_only_redelivery_of_a_trading_day_keeps_the_day(built):
    s = built["s"]
    day = date(2011, 1, 18)
    landing = s.landing_dir / "events" / f"events_{day}.csv"
    original = landing.read_bytes()
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        [(before,)] = con.execute("select count(*) from raw.events where batch_date = ?", [day]).fetchall()
    assert before > 0
    try:
        landing.write_bytes(original.split(b"\n", 1)[0] + b"\n")  # the header, no rows
        ingest_stage.ingest(day, s)
        with pytest.raises(DataQualityError, match="expect_table_row_count_to_be_between"):
            validate_stage.validate_batch(day, s)
        with duckdb.connect(str(s.warehouse), read_only=True) as con:
            [(after,)] = con.execute("select count(*) from raw.events where batch_date = ?", [day]).fetchall()
            [(status,)] = con.execute("select status from raw.batches where batch_date = ?", [day]).fetchall()
        assert (after, status) == (before, "loaded")
        assert built["inbox"].wait_for(f"batch {day}")  # the alert went out
        assert ingest_stage.ingest_history(day, s, since=day) == []  # the refused file is not loaded again
    finally:
        landing.write_bytes(original)


def test_audiences_on_the_real_log(built):
    from personaflow.pipeline.audiences import run_audience
    from personaflow.profiles.audiences import AudienceSpec

    s = built["s"]
    lapsing = run_audience(
        AudienceSpec(name="lapsing-loyal", rfm_segments=["Loyal Customers"], min_recency_days=14), s
    )
    sleepy = ["At Risk", "About To Sleep", "Hibernating"]
    candles = run_audience(
        AudienceSpec(name="sleepy-candle-buyers", rfm_segments=sleepy, bought_text=["CANDLE"]), s
    )
    latest = "as_of_date = (select max(as_of_date) from marts.user_features)"
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        [(n_lapsing,)] = con.execute(
            f"select count(*) from marts.user_features where {latest} and rfm_segment = 'Loyal Customers' "
            "and recency_days >= 14"
        ).fetchall()
        [(n_candles,)] = con.execute(
            f"select count(*) from marts.user_features u where {latest} and rfm_segment in (?, ?, ?) "
            "and exists (select 1 from marts.interactions i join marts.item_features f using (item_id) "
            "where i.user_id = u.user_id and i.n_purchases > 0 and f.description ilike '%candle%')",
            sleepy,
        ).fetchall()
    assert lapsing["size"] == n_lapsing > 0 and candles["size"] == n_candles > 0
    assert {m["rfm_segment"] for m in candles["first"]} <= set(sleepy)


def test_nightly_report_renders_in_chromium(built):
    """The report a person opens, for a real-data night, in a real browser: every section there,
    every chart decoded (naturalWidth > 0), the segment table and the per-segment model table filled."""
    from playwright.sync_api import sync_playwright

    from personaflow.report.nightly import build_report
    from tests.e2e.test_e2e_ui import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e_helpers import ARTIFACTS

    s = built["s"]
    as_of = date.fromisoformat(built["result"]["as_of"])
    result = build_report(as_of, s)
    assert result["sections"]["quality"] and result["sections"]["segments"] and result["sections"]["model"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(Path(result["report"]).as_uri())
            headings = page.locator("h2").all_inner_texts()
            assert headings[:3] == ["Data quality", "Customers: RFM and segments", "Churn model"]
            assert {"Recommender", "Drift against the night before", "Audiences"} <= set(headings)
            widths = page.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
            assert widths and all(w > 0 for w in widths)
            segments = page.locator("#rfm ~ div table").first.inner_text()
            assert "mostly" in segments  # the K-means segment table, with each segment's RFM majority
            # the model comparison per RFM segment at the cut (first model: no production column; the
            # learned model beside the candidate when a baseline serves instead)
            by_segment = page.locator("table.by-segment tr").all()
            models = by_segment[0].locator("th").all_inner_texts()[2:]
            assert models[0].startswith("candidate") and any(m.startswith("best baseline") for m in models)
            assert any(m.startswith("learned") for m in models) == ("learned_tag" in built["result"]["train"])
            names = [row.locator("td").first.inner_text() for row in by_segment[2:]]
            assert "Champions" in names and "first-time buyers" in names
            for row in by_segment[2:]:
                cells = row.locator("td").all_inner_texts()
                numbers = [re.fullmatch(r"\d\.\d{4}", c.strip()) for c in cells[2:]]
                assert len(cells) == 2 + 2 * len(models) and all(numbers), cells
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "nightly_report_online_retail.png"), full_page=True)
        finally:
            browser.close()


def test_post_audiences_answers_like_the_cli(built):
    from personaflow.pipeline.audiences import run_audience
    from personaflow.profiles.audiences import AudienceSpec

    definition = {"name": "lapsing-loyal", "rfm_segments": ["Loyal Customers"], "min_recency_days": 14}
    cli = run_audience(AudienceSpec(**definition), built["s"])
    with httpx.Client(base_url=built["base"], timeout=30) as client:
        answer = client.post("/audiences", json={**definition, "limit": 5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["size"], body["as_of"], len(body["members"])) == (cli["size"], cli["as_of"], 5)
        assert [m["user_id"] for m in body["members"]] == [m["user_id"] for m in cli["first"][:5]]
        bad = client.post("/audiences", json={"min_recency_days": 90, "max_recency_days": 30})
        assert bad.status_code == 422 and "min_recency_days" in bad.text
        strict = client.post("/audiences", json={"min_recency_days": "14"})
        assert strict.status_code == 422 and "min_recency_days" in strict.text
        # a misspelt segment names the valid ones instead of answering an audience of 0 (issue 27)
        misspelt = client.post("/audiences", json={"rfm_segments": ["Loyal customers"]})
        assert misspelt.status_code == 422, misspelt.text
        assert misspelt.json()["error"].startswith("invalid request: rfm_segments: ")
        assert "did you mean 'Loyal Customers'?" in misspelt.text and "Champions" in misspelt.text


def test_similar_items_for_an_item_the_model_never_saw_come_from_its_name(built, monkeypatch):
    from personaflow.training.registry.loading import load_production

    s = built["s"]
    monkeypatch.setenv("BENTOML_HOME", built["env"]["BENTOML_HOME"])
    known = load_production(s.production_pointer).maps.item_index
    near = pd.read_parquet(s.features_dir / "text_neighbours.parquet")
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        names = dict(
            con.execute("select item_id, description from marts.item_features where is_product").fetchall()
        )
    cold = sorted(i for i in set(near["item_id"]) if i not in known and names.get(i))
    assert cold, "the slice has products the model never saw"
    item = cold[0]
    with httpx.Client(base_url=built["base"], timeout=10) as client:
        answer = client.post("/similar_items", json={"item_id": item, "k": 5})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert items and {i["source"] for i in items} <= {"co_purchase", "text"}
    words = set(names[item].lower().split())
    assert any(words & set((i["name"] or "").lower().split()) for i in items if i["source"] == "text")
