"""`personaflow forget` erases by column (issue 26, finding 1): on a home filled by the real Online Retail
import and loader (landing day files, the DuckDB raw layer), a live event log, a Feast snapshot, a
mail quoting the customer and dbt's compiled project, forgetting a customer whose id equals another
customer's `source_row`, a quantity, a price and a stock code removes only that customer's rows:
every other row of every landing file keeps its bytes, the day loads again, shipped files are never
rewritten. An id no store holds is refused with exit 1 and nothing recorded; `21.0` and `021` are the
same customer everywhere."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from personaflow.cli import app
from personaflow.core import settings as config
from personaflow.core.forgotten import Forgotten, csv_records, drop_forgotten, key_file, subject
from personaflow.core.ids import normal_user_id
from personaflow.ingest.live import LiveLog, live_record
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline.forget import UnknownUser, forget_user, holding
from personaflow.serving.schemas import EventRequest, ProfileRequest, RecommendRequest

VICTIM = "21"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _export(path: Path) -> Path:
    """40 data lines over two days. The victim (21, once written 21.0) buys on lines 3, 30 and 35;
    line 21 (source_row 21) is customer 13092's; others carry 21 as quantity, price, stock code and in a
    description; customers 210 and 121 merely contain it."""
    rows = []
    for n in range(1, 41):
        day = "12/1/2010" if n <= 25 else "12/2/2010"
        customer = {3: "21", 30: "21.0", 35: "21", 21: "13092", 22: "210", 23: "121"}.get(n, f"1{n:04d}")
        stock = "21" if n == 7 else f"2{n:04d}"
        quantity = "21" if n == 8 else "2"
        price = "21.0" if n == 9 else "1.25"
        description = "21 CANDLES IN A BOX" if n == 10 else f"ITEM {n}"
        rows.append(f"5365{n:02d},{stock},{description},{quantity},{day} 10:{n:02d},{price},{customer},UK")
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for name, value in {
        "PERSONAFLOW_HOME": home, "AIRFLOW_HOME": home / "airflow", "BENTOML_HOME": home / "bentoml",
        "PERSONAFLOW_FEATURES_DIR": home / "features",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    for name in ("PERSONAFLOW_FORGET_KEY", "PERSONAFLOW_FORGET_KEY_FILE", "PERSONAFLOW_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    s = config.load()
    report = ingest_stage.import_events(_export(tmp_path / "online_retail.csv"), "online-retail", s)
    assert report["loaded"]["rows"] == 40
    # a live event of the victim's and one of another customer paying 21 (the API's own writer)
    log = LiveLog(s.landing_dir)
    now = datetime(2010, 12, 2, 12, 0, tzinfo=UTC)
    for user, price in ((VICTIM, 3.0), ("13092", 21.0)):
        log.append(now.date(), live_record(user, "20001", "view", now, now, None, 1, price))
    log.close()
    # a Feast snapshot, a mail naming the customer next to a row number, dbt's compiled project
    s.features_dir.mkdir(parents=True)
    pd.DataFrame({"user_id": [VICTIM, "13092", "210"], "monetary": [21.0, 21.0, 5.0]}).to_parquet(
        s.features_dir / "user_features.parquet", index=False
    )
    (s.reports_dir / "alerts").mkdir(parents=True)
    (s.reports_dir / "alerts" / "mail.eml").write_text(
        f"Subject: quarantine\n\nrow 21: price 21.0 of customer 13092\nuser_id={VICTIM} repeated\n"
    )
    (home / "dbt" / "target").mkdir(parents=True)
    (home / "dbt" / "target" / "manifest.json").write_text(json.dumps({"rows": [{"user_id": VICTIM}]}))
    return s


def _records(path: Path) -> list[tuple[list[str], str]]:
    return list(csv_records(path.read_bytes().decode()))


def _others(s) -> dict[str, list[str]]:
    """sha256 of every landing record (CSV line, JSONL line) that is not the victim's, per file."""
    out = {}
    for path in sorted(s.landing_dir.rglob("*")):
        if path.suffix == ".csv":
            (header, _), *rows = _records(path)
            at = header.index("user_id") if "user_id" in header else None
            kept = [raw for fields, raw in rows if at is None or normal_user_id(fields[at]) != VICTIM]
        elif path.suffix == ".jsonl":
            kept = [ln for ln in path.read_text().splitlines(True) if json.loads(ln)["user_id"] != VICTIM]
        else:
            continue
        out[str(path)] = [hashlib.sha256(raw.encode()).hexdigest() for raw in kept]
    return out


def _warehouse_rows(s, where: str = "") -> list[tuple]:
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        rows = con.execute(f"select * exclude (loaded_at) from raw.events {where}").fetchall()
    return sorted(rows, key=str)


def test_forget_changes_only_the_customers_rows(home):
    s = home
    before, others = _others(s), _warehouse_rows(s, f"where user_id <> '{VICTIM}'")
    events = [v for k, v in before.items() if "/events/" in k or "/live/" in k]
    assert sum(map(len, events)) == 40 - 3 + 1  # every event but the victim's 3 (+ 1 live)
    manifest = (s.home / "dbt" / "target" / "manifest.json").read_bytes()
    assert holding(VICTIM, s)  # the victim is known: landing, live log, warehouse, Feast, the mail

    result = forget_user(VICTIM, s)

    assert result["still_holding"] == [] and holding(VICTIM, s) == []
    # 3 events and the users file's row; the live event; raw.events and raw.users
    assert (result["landing_rows"], result["live_rows"], result["warehouse_rows"]) == (4, 1, 4)
    assert result["parquet_rows"] == 1 and result["files_rewritten"] == 1
    assert _others(s) == before  # every other row of every landing file: byte for byte
    assert _warehouse_rows(s) == others  # source_row 21, quantity 21, price 21.0, stock code 21 kept
    day1 = s.landing_dir / "events" / "events_2010-12-01.csv"
    [line21] = [raw for fields, raw in _records(day1) if fields[0].endswith("-21")]
    assert '"13092"' in line21 and line21.rstrip().endswith(",21")  # its source_row, untouched
    snapshot = pd.read_parquet(s.features_dir / "user_features.parquet")
    assert snapshot["user_id"].tolist() == ["13092", "210"]
    mail = (s.reports_dir / "alerts" / "mail.eml").read_text()
    assert "row 21: price 21.0 of customer 13092" in mail and f"user_id={result['tombstone']}" in mail
    assert (s.home / "dbt" / "target" / "manifest.json").read_bytes() == manifest  # shipped: never
    # the day loads again (before: "column source_row: 'forgotten-…' is not a valid bigint")
    assert ingest_stage.ingest(date(2010, 12, 1), s)["rows"] == 24
    assert _warehouse_rows(s) == others


def test_an_id_no_store_holds_is_refused_and_nothing_is_recorded(home):
    s = home
    tree = {p: p.read_bytes() for p in s.home.rglob("*") if p.is_file()}
    with pytest.raises(UnknownUser):
        forget_user("99999", s)
    result = CliRunner().invoke(app, ["forget", "99999"])
    assert result.exit_code == 1 and "no store holds" in result.output
    # 1326-style: an id that is only a row number, a quantity or a price somewhere is unknown too
    assert CliRunner().invoke(app, ["forget", "13"]).exit_code == 1  # source_row 13 of day 1
    after = {p: p.read_bytes() for p in s.home.rglob("*") if p.is_file()}
    assert after == tree and not (s.home / "forgotten.json").exists()
    assert not (s.home / "audit").exists()

    forced = CliRunner().invoke(app, ["forget", "99999", "--force"])
    assert forced.exit_code == 0, forced.output
    assert subject("99999", s) in (s.home / "forgotten.json").read_text()


def test_id_variants_are_one_customer_on_every_way_in(home):
    s = home
    assert [normal_user_id(v) for v in ("21.0", "021", " 21 ", "0021.00", "21")] == [VICTIM] * 5
    assert [normal_user_id(v) for v in ("u000021", "21.5", "0", "000")] == ["u000021", "21.5", "0", "0"]
    result = CliRunner().invoke(app, ["forget", "021.0"])
    assert result.exit_code == 0, result.output
    assert holding(VICTIM, s) == [] and subject("21.0", s) == subject(VICTIM, s)
    forgotten = Forgotten(s)
    assert all(v in forgotten for v in ("21", "21.0", "021", " 21")) and "210" not in forgotten
    again = pd.DataFrame({"user_id": ["21.0", "021", "210", "13092"]})
    assert drop_forgotten(again, s)["user_id"].tolist() == ["210", "13092"]
    # the API's requests carry the normal form, which is what the registry is asked about
    assert RecommendRequest(user_id="21.0").user_id == VICTIM
    assert ProfileRequest(user_id="021").user_id == VICTIM
    event = EventRequest(user_id=" 0021.0", item_id="20001", event_type="view")
    assert event.user_id == VICTIM and event.user_id in forgotten


def test_the_key_is_kept_apart_from_the_pseudonyms(home, monkeypatch):
    s = home
    forget_user(VICTIM, s)
    key = key_file(s)
    assert s.home not in key.parents and oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(key.parent.stat().st_mode & 0o777) == "0o700"
    assert not (s.home / "secrets" / "forget_key").exists()
    # an operator's key: a different pseudonym, and the file key is not used
    monkeypatch.setenv("PERSONAFLOW_FORGET_KEY", "operator-supplied-key")
    assert subject(VICTIM, config.load()) != subject(VICTIM, s)
    # a lost key while customers are forgotten: refused, never a fresh key that lets them back in
    monkeypatch.delenv("PERSONAFLOW_FORGET_KEY")
    key.unlink()
    with pytest.raises(RuntimeError, match="forget key is missing"):
        Forgotten(s).__contains__(VICTIM)
