"""The issue's bad inputs that reach the data-quality gate, end to end: landing file -> real loader ->
Great Expectations -> quarantine or warning -> email on a real SMTP server (aiosmtpd on 127.0.0.1).

Each: a clear alert naming the batch, expectation, observed vs expected and sample rows; nothing lost
(the landing file stays, quarantined rows are in quarantine.events); a fixed batch comes back with one
command. The inputs caught before the gate (missing/renamed column, wrong type, empty file, truncated
or garbled line, replay, non-UTF-8 text) are in tests/integration/test_ingest.py.
"""

from __future__ import annotations

import email
import json
import socket
from datetime import date, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from personaflow.cli import app
from personaflow.ingest.landing import import_events
from personaflow.ingest.load import load_batch
from personaflow.quality.validate import DataQualityError, SmtpConfig, validate_batch
from tests import _where
from tests._warehouse import make_events, write_landing
from tests._where import ENGINES, rows

where = _where.where  # the fixture: a DuckDB file, or with BOTH also the real PostgreSQL
BOTH = pytest.mark.parametrize("where", ENGINES, indirect=True)

DAY = date(2024, 3, 8)


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd hook name)
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[tuple[email.message.Message, str]]:
        out = []
        for e in self.envelopes:
            msg = email.message_from_bytes(e.content)
            out.append((msg, msg.get_payload(decode=True).decode()))
        return out


@pytest.fixture
def smtp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, SmtpConfig("127.0.0.1", port, "personaflow@localhost", ("data-team@localhost",))
    controller.stop()


def execute(warehouse, sql, params=None):
    return rows(warehouse, sql, params)


@pytest.fixture
def home(tmp_path: Path, where) -> dict[str, Path]:
    base = tmp_path / "home"
    return {
        "home": base,
        "landing": base / "landing",
        "warehouse": base / "warehouse.duckdb" if isinstance(where, Path) else where,
        "quarantine": base / "quarantine",
        "reports": base / "reports",
    }


def _land(home, day, events) -> Path:
    path = write_landing(events, home["landing"], day)
    load_batch(home["warehouse"], home["landing"], day)
    return path


def _validate(home, smtp_config, day=DAY, now=None):
    return validate_batch(home["warehouse"], day, home["quarantine"], home["reports"], smtp_config, now=now)


def _assert_quarantined(home, landing: Path, n_rows: int, day=DAY) -> None:
    """Nothing lost: the landing file is where it was, the rows are in quarantine.events, raw has none."""
    wh = home["warehouse"]
    assert landing.is_file()
    assert (home["quarantine"] / day.isoformat() / landing.name).read_bytes() == landing.read_bytes()
    assert execute(wh, "SELECT count(*) FROM quarantine.events WHERE batch_date = $1", [day]) == [(n_rows,)]
    assert execute(wh, "SELECT count(*) FROM raw.events WHERE batch_date = $1", [day]) == [(0,)]
    assert execute(wh, "SELECT status FROM raw.batches WHERE batch_date = $1", [day]) == [("quarantined",)]


@pytest.mark.parametrize(
    ("fault", "column", "expectation", "sample", "where"),
    [
        ("future", "event_ts", "expect_column_values_to_be_between", "2024-03-08 20:00:00", "duckdb"),
        ("negative_price", "price", "expect_column_values_to_be_between", "-4.5", "duckdb"),
        ("unknown_type", "event_type", "expect_column_values_to_be_in_set", "refund", "duckdb"),
        # the same gate in PostgreSQL, through GX's PostgreSQL data source
        ("future", "event_ts", "expect_column_values_to_be_between", "2024-03-08 20:00:00", "postgres"),
        ("negative_price", "price", "expect_column_values_to_be_between", "-4.5", "postgres"),
    ],
    indirect=["where"],
)
def test_bad_values_are_quarantined_with_a_failed_alert(home, smtp, fault, column, expectation, sample):
    inbox, config = smtp
    events = make_events(DAY, 300, seed=3)
    now = None
    if fault == "future":
        # The batch is today's and the run is at noon: an event stamped 20:00 has not happened yet.
        events.loc[7, "event_ts"] = "2024-03-08 20:00:00"
        events["event_ts"] = events["event_ts"].where(events.index == 7, "2024-03-08 09:00:00")
        now = datetime(2024, 3, 8, 12, 0)
    elif fault == "negative_price":
        events.loc[7, "price"] = -4.5
    else:
        events.loc[7, "event_type"] = "refund"
    landing = _land(home, DAY, events)

    with pytest.raises(DataQualityError) as info:
        _validate(home, config, now=now)

    failed = {(f.expectation, f.column, f.severity) for f in info.value.result.failures}
    assert failed == {(expectation, column, "critical")}
    _assert_quarantined(home, landing, 300)
    [(msg, body)] = inbox.messages()
    assert msg["Subject"].startswith("[personaflow] data quality FAILED: raw_events batch 2024-03-08")
    assert msg["X-Personaflow-Severity"] == "critical"
    assert f"[critical] {expectation} on raw.events.{column}" in body
    assert "observed:" in body and "expected:" in body and sample in body
    assert f'"event_id": "{events.loc[7, "event_id"]}"' in body  # the bad row itself
    if fault == "future":
        assert "no future events" in body  # which of the two event_ts rules failed
    assert "personaflow ingest --date 2024-03-08" in body  # how to bring it back
    report = body.split("Report:", 1)[1].split()[0]
    assert Path(report).is_file() and column in Path(report).read_text()  # the GX Data Docs page


def test_volume_drop_is_a_warning_not_a_stop(home, smtp):
    inbox, config = smtp
    for d in range(1, 6):
        _land(home, date(2024, 3, d), make_events(date(2024, 3, d), 400, seed=d))
    small = date(2024, 3, 6)
    landing = _land(home, small, make_events(small, 40, seed=9))  # 90% fewer rows than usual

    summary = _validate(home, config, day=small)

    assert summary["success"] is True and summary["severity"] == "warning"
    assert summary["warnings"] == ["expect_table_row_count_to_be_between:raw.events."]
    assert summary["alert_sent"] is True
    [(msg, body)] = inbox.messages()
    assert msg["Subject"].startswith("[personaflow] data quality WARNING: raw_events batch 2024-03-06")
    assert "the run goes on" in msg["Subject"] and msg["X-Personaflow-Severity"] == "warning"
    assert "[warning] expect_table_row_count_to_be_between on raw.events" in body
    assert "observed: 40" in body and '"min_value": 80' in body and "trailing mean 400" in body
    assert "FAILED (critical)" not in body
    # Not quarantined: the rows stay in raw and the batch stays loaded.
    assert landing.is_file() and not (home["quarantine"] / "2024-03-06").exists()
    assert execute(home["warehouse"], "SELECT status FROM raw.batches WHERE batch_date = $1", [small]) == [
        ("loaded",)
    ]
    assert execute(home["warehouse"], "SELECT count(*) FROM raw.events WHERE batch_date = $1", [small]) == [
        (40,)
    ]
    # A normal day after it: no alert at all.
    normal = date(2024, 3, 7)
    _land(home, normal, make_events(normal, 390, seed=10))
    assert _validate(home, config, day=normal)["severity"] == "ok" and len(inbox.envelopes) == 1


def test_replayed_batch_and_non_utf8_descriptions_pass(home, smtp):
    inbox, config = smtp
    events = make_events(DAY, 200, seed=5)
    events["description"] = "plain"
    path = write_landing(events, home["landing"], DAY)
    path.write_bytes(path.read_bytes().replace(b"plain", b"CAF\xc9", 3))
    first = load_batch(home["warehouse"], home["landing"], DAY)
    replay = load_batch(home["warehouse"], home["landing"], DAY)
    assert first["non_utf8_lines"] == 3 and replay["replay"] is True and replay["rows"] == 200
    summary = _validate(home, config)
    assert summary["severity"] == "ok" and summary["rows"] == 200 and inbox.envelopes == []


@BOTH
def test_a_fixed_batch_comes_back_with_one_command(home, smtp, edge_env_restored):
    inbox, config = smtp
    events = make_events(DAY, 120, seed=6)
    events.loc[[2, 4], "price"] = -1.0
    landing = _land(home, DAY, events)
    with pytest.raises(DataQualityError):
        _validate(home, config)
    _assert_quarantined(home, landing, 120)

    events.loc[[2, 4], "price"] = 1.0  # the shop re-sends the fixed file
    write_landing(events, home["landing"], DAY)
    env = {"PERSONAFLOW_HOME": str(home["home"]), "PERSONAFLOW_SMTP_PORT": str(config.port)}
    if isinstance(home["warehouse"], str):  # the one setting that moves the warehouse to PostgreSQL
        env["PERSONAFLOW_WAREHOUSE_URL"] = home["warehouse"]
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--date", DAY.isoformat()], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 120
    checked = runner.invoke(app, ["validate", "--date", DAY.isoformat()], env=env)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["severity"] == "ok"

    wh = home["warehouse"]
    assert execute(wh, "SELECT status, row_count FROM raw.batches WHERE batch_date = $1", [DAY]) == [
        ("loaded", 120)
    ]
    assert execute(wh, "SELECT count(*), min(price) FROM raw.events WHERE batch_date = $1", [DAY]) == [
        (120, 1.0)
    ]
    # The quarantined copy stays as evidence of what was wrong.
    assert execute(wh, "SELECT count(*) FROM quarantine.events WHERE batch_date = $1", [DAY]) == [(120,)]
    assert len(inbox.envelopes) == 1


def test_online_retail_known_faults_are_noted_not_failed(home, smtp, tmp_path):
    inbox, config = smtp
    export = tmp_path / "online_retail.csv"
    customers = ["" if i % 4 == 0 else f"{17000 + i % 13}.0" for i in range(40)]  # 10 without a customer
    rows = [f"5364{i:02d},2{i:04d},ITEM {i},{i % 5 + 1},12/1/2010 {8 + i % 9}:{i % 60:02d},{1.5 + i % 7},"
            f"{customers[i]},United Kingdom" for i in range(40)]  # fmt: skip
    rows.append("C536499,20001,ITEM 1,-2,12/1/2010 18:00,1.5,17001.0,United Kingdom")  # a cancellation
    rows.append("536500,20002,ITEM 2,1,12/3/2010 10:00,0,,United Kingdom")  # 12/2 closed
    export.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        + "\n".join(rows)
    )
    import_events(export, "online-retail", home["landing"])
    for d in (1, 2):
        load_batch(home["warehouse"], home["landing"], date(2010, 12, d))

    busy = _validate(home, config, day=date(2010, 12, 1))
    assert busy["source_format"] == "online-retail" and busy["severity"] == "ok"
    assert any("user_id" in n and "10 of 41" in n for n in busy["notices"])  # reported, not failed
    closed = _validate(home, config, day=date(2010, 12, 2))
    assert closed["severity"] == "ok" and closed["rows"] == 0
    assert closed["notices"] == ["expect_table_row_count_to_be_between:raw.events. 0"]
    assert inbox.envelopes == []


@BOTH
def test_a_bad_redelivery_is_held_then_the_good_day_is_put_back(home, smtp):
    """A day re-sent as a header-only file: the load keeps the replaced rows in raw.replaced_events, the
    gate fails it, and quarantine puts the earlier load back; every validation is in raw.batch_validations."""
    inbox, config = smtp
    events = make_events(DAY, 150, seed=7)
    landing = _land(home, DAY, events)
    assert _validate(home, config)["severity"] == "ok"
    good = landing.read_bytes()
    landing.write_bytes(good.split(b"\n", 1)[0] + b"\n")  # the header, no rows
    again = load_batch(home["warehouse"], home["landing"], DAY)
    assert (again["rows"], again["replaces_rows"]) == (0, 150)
    wh = home["warehouse"]
    assert execute(wh, "select count(*) from raw.replaced_events where batch_date = $1", [DAY]) == [(150,)]
    assert execute(wh, "select previous_rows, row_count from raw.batches where batch_date = $1", [DAY]) == [
        (150, 0)
    ]
    with pytest.raises(DataQualityError, match="expect_table_row_count_to_be_between"):
        _validate(home, config)
    assert execute(wh, "select count(*) as n from raw.events where batch_date = $1", [DAY]) == [(150,)]
    assert execute(
        wh, "select status, row_count, previous_sha256, quarantined_sha256 is not null from raw.batches"
    ) == [("loaded", 150, None, True)]
    assert execute(wh, "select count(*) as n from raw.replaced_events") == [(0,)]
    assert execute(
        wh, "select suite, severity, n_rows from raw.batch_validations where batch_date = $1", [DAY]
    ) == [("raw_events", "critical", 0)]  # the day's latest validation replaced the first
    assert "a re-delivery of a day that held 150 rows is not empty" in inbox.messages()[0][1]


@pytest.mark.parametrize("where", ["postgres"], indirect=True)  # DuckDB: tests/integration/test_real_data.py
def test_history_validation_reads_postgresql_and_quarantines_the_bad_day(home, smtp):
    """personaflow/quality/history.py (an imported history, one read) on a PostgreSQL warehouse: rows come
    back with DuckDB's dtypes (personaflow/quality/frames.py), so the verdicts are the embedded default's."""
    from personaflow.quality.history import validate_history

    inbox, config = smtp
    days = [date(2024, 3, d) for d in range(1, 5)]
    for n, day in enumerate(days):
        events = make_events(day, 120, seed=20 + n)
        if day == days[2]:
            events.loc[5, "event_type"] = "refund"
        _land(home, day, events)
    summary = validate_history(
        home["warehouse"], days[0], days[-1], home["quarantine"], home["reports"], config,
        now=datetime(2024, 3, 20),
    )  # fmt: skip
    assert (summary["days"], summary["rows"], summary["ok_days"]) == (4, 480, 3)
    assert summary["failed_days"] == ["2024-03-03"]
    wh = home["warehouse"]
    assert execute(wh, "select count(*) as n from quarantine.events") == [(120,)]
    assert execute(
        wh, "select severity, count(*) as n from raw.batch_validations group by severity order by 1"
    ) == [("critical", 1), ("ok", 3)]
    assert len(inbox.envelopes) == 1


def test_a_load_retried_before_validation_still_guards_the_day(home, smtp):
    """Issue 26: a re-delivery loaded twice (a retried or cleared load task) before its validation kept
    no previous row count, so an empty day passed as "ok". The held load survives any number of
    reloads until a validation accepts the new one."""
    inbox, config = smtp
    landing = _land(home, DAY, make_events(DAY, 150, seed=7))
    assert _validate(home, config)["severity"] == "ok"
    landing.write_bytes(landing.read_bytes().split(b"\n", 1)[0] + b"\n")  # the header, no rows
    wh = home["warehouse"]
    for _ in range(3):
        again = load_batch(wh, home["landing"], DAY)
        assert (again["rows"], again["replaces_rows"]) == (0, 150)
        assert execute(wh, "select previous_rows from raw.batches where batch_date = $1", [DAY]) == [(150,)]
        replaced = "select count(*) from raw.replaced_events where batch_date = $1"
        assert execute(wh, replaced, [DAY]) == [(150,)]
    with pytest.raises(DataQualityError, match="expect_table_row_count_to_be_between"):
        _validate(home, config)
    assert execute(wh, "select count(*) from raw.events where batch_date = $1", [DAY]) == [(150,)]
    assert len(inbox.envelopes) == 1 and "held 150 rows is not empty" in inbox.messages()[0][1]


def test_a_second_redelivery_before_validation_is_compared_with_the_accepted_day(home, smtp):
    """Two re-deliveries before any validation: the reference stays the last accepted load (200 rows),
    not the unvalidated first re-delivery, and it is that load that comes back if the day fails."""
    inbox, config = smtp
    wh = home["warehouse"]
    _land(home, DAY, make_events(DAY, 200, seed=1))
    assert _validate(home, config)["severity"] == "ok"
    _land(home, DAY, make_events(DAY, 190, seed=2))
    landing = _land(home, DAY, make_events(DAY, 10, seed=3))
    assert execute(wh, "select previous_rows, row_count from raw.batches where batch_date = $1", [DAY]) == [
        (200, 10)
    ]
    landing.write_bytes(landing.read_bytes().split(b"\n", 1)[0] + b"\n")
    load_batch(wh, home["landing"], DAY)
    with pytest.raises(DataQualityError):
        _validate(home, config)
    assert execute(wh, "select count(*) from raw.events where batch_date = $1", [DAY]) == [(200,)]


def test_a_redelivery_with_half_the_rows_is_a_mailed_warning_then_the_new_reference(home, smtp):
    """Issue 26: 728 of 1,456 rows passed as "ok" with no mail. A drop of more than 10 % against the
    load it replaces is a warning, mailed; once validated, the new load is the day's reference."""
    inbox, config = smtp
    wh = home["warehouse"]
    _land(home, DAY, make_events(DAY, 200, seed=1))
    assert _validate(home, config)["severity"] == "ok" and not inbox.envelopes
    _land(home, DAY, make_events(DAY, 100, seed=2))

    summary = _validate(home, config)

    assert summary["success"] is True and summary["severity"] == "warning" and summary["alert_sent"] is True
    [(msg, body)] = inbox.messages()
    assert msg["X-Personaflow-Severity"] == "warning"
    assert "a re-delivery keeps at least 90% of the 200 rows it replaces" in body and "observed: 100" in body
    assert execute(wh, "select count(*) from raw.events where batch_date = $1", [DAY]) == [(100,)]
    # accepted: nothing held any more, and a small drop from the new reference is no warning
    held = "select previous_rows, previous_sha256 from raw.batches where batch_date = $1"
    assert execute(wh, held, [DAY]) == [(None, None)]
    assert execute(wh, "select count(*) from raw.replaced_events") == [(0,)]
    _land(home, DAY, make_events(DAY, 95, seed=3))
    assert _validate(home, config)["severity"] == "ok" and len(inbox.envelopes) == 1
