"""Data-quality stage against a real DuckDB file and a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import email
import json
import socket
from datetime import date
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from personaflow.core import warehouse as wh
from personaflow.quality.quarantine import quarantine_batch
from personaflow.quality.validate import DataQualityError, SmtpConfig, validate_batch, validate_marts
from tests._warehouse import execute, load_batch, make_events, write_landing, write_marts

GOOD_DAY = date(2024, 3, 1)
BAD_DAY = date(2024, 3, 2)


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd hook name)
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[Message]:
        return [email.message_from_bytes(e.content) for e in self.envelopes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(request):
    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    request.addfinalizer(controller.stop)
    return handler, SmtpConfig(
        "127.0.0.1", controller.port, "personaflow@localhost", ("data-team@localhost",)
    )


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {
        "warehouse": tmp_path / "warehouse.duckdb",
        "landing": tmp_path / "landing",
        "quarantine": tmp_path / "quarantine",
        "reports": tmp_path / "reports",
    }


def _load(dirs: dict[str, Path], day: date, events) -> Path:
    path = write_landing(events, dirs["landing"], day)
    load_batch(dirs["warehouse"], path, day)
    return path


def _corrupt(events):
    bad = events.copy()
    bad.loc[3, "price"] = -4.5
    bad.loc[5, "event_type"] = "refund"
    bad.loc[7, "user_id"] = None
    bad.loc[9, "event_ts"] = "2024-03-05 10:00:00"
    return bad


def test_good_batch_passes(dirs, smtp_server):
    handler, smtp = smtp_server
    _load(dirs, GOOD_DAY, make_events(GOOD_DAY, 500))

    summary = validate_batch(dirs["warehouse"], GOOD_DAY, dirs["quarantine"], dirs["reports"], smtp)

    assert summary["success"] is True and summary["rows"] == 500 and summary["failed"] == []
    assert summary["expectations"] >= 12
    json.dumps(summary)  # plain types only (Airflow XCom)
    assert handler.envelopes == []
    assert execute(dirs["warehouse"], "SELECT status FROM raw.batches") == [("loaded",)]
    assert not dirs["quarantine"].exists()


def test_corrupted_batch_is_quarantined_and_alerted(dirs, smtp_server):
    handler, smtp = smtp_server
    _load(dirs, GOOD_DAY, make_events(GOOD_DAY, 300, seed=1))
    landing = _load(dirs, BAD_DAY, _corrupt(make_events(BAD_DAY, 400, seed=2)))

    with pytest.raises(DataQualityError) as info:
        validate_batch(dirs["warehouse"], BAD_DAY, dirs["quarantine"], dirs["reports"], smtp)

    text = str(info.value)
    for name in (
        "price",
        "event_type",
        "user_id",
        "event_ts",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
    ):
        assert name in text
    assert info.value.alert_sent is True
    failed = {(f.expectation, f.column) for f in info.value.result.failures}
    assert failed == {
        ("expect_column_values_to_be_between", "price"),
        ("expect_column_values_to_be_in_set", "event_type"),
        ("expect_column_values_to_not_be_null", "user_id"),
        ("expect_column_values_to_be_between", "event_ts"),
    }

    # The alert: one email, subject names the batch date, body names each expectation and column.
    [msg] = handler.messages()
    assert "2024-03-02" in msg["Subject"] and "raw_events" in msg["Subject"]
    body = msg.get_payload(decode=True).decode()
    for expectation, column in failed:
        assert f"{expectation} on raw.events.{column}" in body
    assert "refund" in body and "-4.5" in body and "2024-03-05 10:00:00" in body  # sample bad values
    assert '"event_id": "e20240302-0000003"' in body  # a sample bad row
    assert handler.envelopes[0].rcpt_tos == ["data-team@localhost"]

    # Rows moved, in one piece; the good batch is untouched.
    wh = dirs["warehouse"]
    assert execute(wh, "SELECT count(*) FROM raw.events WHERE batch_date = ?", [BAD_DAY]) == [(0,)]
    assert execute(wh, "SELECT count(*) FROM raw.events WHERE batch_date = ?", [GOOD_DAY]) == [(300,)]
    assert execute(wh, "SELECT count(*), count(DISTINCT event_id) FROM quarantine.events") == [(400, 400)]
    [(reason, quarantined_at)] = execute(wh, "SELECT DISTINCT reason, quarantined_at FROM quarantine.events")
    assert "price" in reason and quarantined_at is not None
    assert execute(wh, "SELECT batch_date, status FROM raw.batches ORDER BY 1") == [
        (GOOD_DAY, "loaded"),
        (BAD_DAY, "quarantined"),
    ]

    # Evidence on disk: landing file kept, copy + reasons.json in quarantine/<date>/, .eml in reports.
    folder = dirs["quarantine"] / "2024-03-02"
    assert landing.is_file()
    assert (folder / landing.name).read_bytes() == landing.read_bytes()
    reasons = json.loads((folder / "reasons.json").read_text())
    assert {(r["expectation"], r["column"]) for r in reasons["reasons"]} == failed
    assert info.value.eml_path.is_file() and "refund" in info.value.eml_path.read_text()

    # Idempotent: quarantining again changes nothing; a retry of the stage fails fast without re-alerting.
    quarantine_batch(wh, BAD_DAY, dirs["quarantine"], reasons["reasons"])
    assert execute(wh, "SELECT count(*) FROM quarantine.events") == [(400,)]
    assert sorted(p.name for p in folder.iterdir()) == sorted([landing.name, "reasons.json"])
    with pytest.raises(DataQualityError, match="quarantined earlier"):
        validate_batch(wh, BAD_DAY, dirs["quarantine"], dirs["reports"], smtp)
    assert len(handler.envelopes) == 1


def test_marts_checks(dirs, smtp_server):
    handler, smtp = smtp_server
    as_of = date(2024, 3, 31)
    write_marts(dirs["warehouse"], as_of)
    assert validate_marts(dirs["warehouse"], as_of, dirs["reports"], smtp)["success"] is True

    wh = dirs["warehouse"]
    execute(wh, "UPDATE marts.user_features SET r_score = 7 WHERE user_id = 'u000004'")
    # An event after the as-of day leaked into the features.
    execute(
        wh, "UPDATE marts.user_features SET last_event_ts = '2024-04-01 00:00:00' WHERE user_id = 'u000005'"
    )
    with pytest.raises(
        DataQualityError, match=r"expect_column_values_to_be_between\(marts.user_features.r_score\)"
    ):
        validate_marts(wh, as_of, dirs["reports"], smtp)

    [msg] = handler.messages()
    assert "marts" in msg["Subject"] and "2024-03-31" in msg["Subject"]
    body = msg.get_payload(decode=True).decode()
    assert "2 failed expectations" in body
    assert "expect_column_values_to_be_between on marts.user_features.r_score" in body
    assert "expect_column_values_to_be_between on marts.user_features.last_event_ts" in body
    assert '"user_id": "u000004"' in body and '"user_id": "u000005"' in body


def test_marts_checks_read_a_postgresql_warehouse(dirs, smtp_server, postgres_url):
    """The same marts in PostgreSQL (DATE as datetime.date, etc.) get the same verdicts."""
    _, smtp = smtp_server
    as_of = date(2024, 3, 31)
    write_marts(dirs["warehouse"], as_of)
    with wh.connect(dirs["warehouse"]) as duck, wh.connect(postgres_url) as pg:
        pg.execute("create schema marts")
        for table in ("user_features", "item_features"):
            pg.register("mart_rows", duck.execute(f"select * from marts.{table}").arrow())
            pg.execute(f"create table marts.{table} as select * from mart_rows")
    summary = validate_marts(postgres_url, as_of, dirs["reports"], smtp)
    assert summary["success"] is True and summary["rows"] == 70
    with wh.connect(postgres_url) as pg:
        pg.execute("update marts.user_features set r_score = 7 where user_id = 'u000004'")
    with pytest.raises(
        DataQualityError, match=r"expect_column_values_to_be_between\(marts.user_features.r_score\)"
    ):
        validate_marts(postgres_url, as_of, dirs["reports"], smtp)


def test_smtp_down_still_fails_on_data(dirs):
    # A port nothing listens on: the mailer fails, the task must still fail with the data error.
    smtp = SmtpConfig(
        "127.0.0.1", _free_port(), "personaflow@localhost", ("data-team@localhost",), timeout_s=2
    )
    _load(dirs, BAD_DAY, _corrupt(make_events(BAD_DAY, 100)))

    with pytest.raises(DataQualityError, match="NOT sent") as info:
        validate_batch(dirs["warehouse"], BAD_DAY, dirs["quarantine"], dirs["reports"], smtp)

    assert info.value.alert_sent is False
    eml = email.message_from_bytes(info.value.eml_path.read_bytes())
    assert "2024-03-02" in eml["Subject"]
    assert (
        "expect_column_values_to_be_in_set on raw.events.event_type" in eml.get_payload(decode=True).decode()
    )
    assert execute(dirs["warehouse"], "SELECT count(*) FROM quarantine.events") == [(100,)]


def test_marts_keys_money_and_dates(dirs, smtp_server):
    handler, smtp = smtp_server
    as_of = date(2024, 3, 31)
    wh = dirs["warehouse"]
    write_marts(wh, as_of)
    execute(
        wh,
        "CREATE TABLE marts.interactions AS SELECT * FROM (VALUES "
        "('u000001', 'i00001', DATE '2024-03-30', 5.0), ('u000001', 'i00002', DATE '2024-03-30', 1.0), "
        "('u000001', 'i00001', DATE '2024-03-30', 2.0), ('u000002', 'i00001', DATE '2024-04-02', 1.0)) "
        "AS t(user_id, item_id, event_date, weight)",
    )
    execute(wh, "UPDATE marts.user_features SET gross_monetary = -12.5 WHERE user_id = 'u000007'")
    execute(wh, "UPDATE marts.item_features SET item_id = 'i00000' WHERE item_id = 'i00003'")

    with pytest.raises(DataQualityError) as info:
        validate_marts(wh, as_of, dirs["reports"], smtp)

    failed = {(f.table, f.expectation, f.column) for f in info.value.result.failures}
    assert failed == {
        ("marts.interactions", "expect_compound_columns_to_be_unique", None),  # (user, item, day) twice
        ("marts.interactions", "expect_column_values_to_be_between", "event_date"),  # after the as-of day
        ("marts.user_features", "expect_column_values_to_be_between", "gross_monetary"),  # negative money
        ("marts.item_features", "expect_column_values_to_be_unique", "item_id"),  # duplicate key
    }
    [msg] = handler.messages()
    body = msg.get_payload(decode=True).decode()
    assert "-12.5" in body and "2024-04-02" in body and msg["X-Personaflow-Severity"] == "critical"


def test_quarantine_made_before_contract_v2_gains_the_new_columns(dirs):
    wh = dirs["warehouse"]
    _load(dirs, BAD_DAY, make_events(BAD_DAY, 10))
    execute(wh, "CREATE SCHEMA quarantine")
    execute(  # quarantine.events as the walking skeleton created it (raw.events without v2 columns)
        wh,
        "CREATE TABLE quarantine.events AS SELECT * EXCLUDE (order_id, description, country, source_format, "
        "source_row), NULL::TIMESTAMP AS quarantined_at, NULL::VARCHAR AS reason FROM raw.events LIMIT 0",
    )
    quarantine_batch(wh, BAD_DAY, dirs["quarantine"], [{"expectation": "x", "table": "raw.events"}])
    assert execute(wh, "SELECT count(*), min(source_format), max(source_row) FROM quarantine.events") == [
        (10, "synthetic", 10)
    ]


def test_marts_checked_in_the_warehouse_give_the_verdicts_of_gx_on_frames(dirs):
    """Every kind of mart fault, counted by SQL in the warehouse and by GX on the frames pulled into
    pandas (the former path): the same failed expectations, counts and observations."""
    from datetime import datetime

    from personaflow.quality.checks import check_marts
    from personaflow.quality.frames import read_frame
    from personaflow.quality.sql_checks import check_marts_in_warehouse

    as_of = date(2024, 3, 31)
    w = dirs["warehouse"]
    write_marts(w, as_of)
    execute(
        w,
        "CREATE TABLE marts.interactions AS SELECT * FROM (VALUES "
        "('u000001', 'i00001', DATE '2024-03-30', 5.0), ('u000001', 'i00002', DATE '2024-03-30', 1.0), "
        "('u000001', 'i00001', DATE '2024-03-30', 2.0), ('u000002', 'i00001', DATE '2024-04-02', 1.0), "
        "('u000003', NULL, DATE '2024-03-29', 1.0)) AS t(user_id, item_id, event_date, weight)",
    )
    execute(w, "UPDATE marts.user_features SET r_score = 7 WHERE user_id IN ('u000004', 'u000009')")
    execute(w, "UPDATE marts.user_features SET m_score = NULL WHERE user_id = 'u000006'")
    execute(w, "UPDATE marts.user_features SET gross_monetary = -12.5 WHERE user_id = 'u000007'")
    late = "UPDATE marts.user_features SET last_event_ts = '2024-04-01 00:00:00' WHERE user_id = 'u000005'"
    execute(w, late)
    execute(w, "UPDATE marts.item_features SET item_id = 'i00000' WHERE item_id = 'i00003'")
    now = datetime(2024, 4, 1, 6)
    tables = ("user_features", "item_features", "interactions")
    with wh.connect(w, read_only=True) as con:
        in_sql = check_marts_in_warehouse(con, tables, as_of, now=now)
        frames = {f"marts.{t}": read_frame(con, f"select * from marts.{t}") for t in tables}
    on_frames = check_marts(frames, as_of, now=now)

    def verdicts(result):
        return sorted(
            (f.table, f.expectation, f.column or "", f.unexpected_count or 0, str(f.observed))
            for f in result.failures
        )

    assert len(in_sql.failures) == 8  # every fault above, the NULL item_id both as a NULL and a key
    assert verdicts(in_sql) == verdicts(on_frames)
    assert (in_sql.n_rows, in_sql.n_expectations) == (on_frames.n_rows, on_frames.n_expectations)
    by_column = {(f.table, f.column): f for f in in_sql.failures}
    r_score = by_column[("marts.user_features", "r_score")]
    assert sorted(r["user_id"] for r in r_score.sample_rows) == ["u000004", "u000009"]
    assert r_score.sample_values == [7, 7]
