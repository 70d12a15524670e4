"""Landing files into the raw layer (contract v2): idempotent per day, files kept, and every bad file
named with the fault: file, column, line. Nothing is half-loaded and nothing is dropped silently."""

import json
from datetime import date

import duckdb
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.landing import batch_path
from personaflow.ingest.generate import generate_shop, write_shop
from personaflow.ingest.live import LiveLog
from personaflow.ingest.load import IngestError, load_batch, load_dimensions, load_pending
from tests import _where
from tests._where import ENGINES, rows, table_rows

where = _where.where  # the fixture: a DuckDB file, or with BOTH also the real PostgreSQL

BOTH = pytest.mark.parametrize("where", ENGINES, indirect=True)  # DuckDB and the real PostgreSQL

DAY = date(2026, 3, 2)


@pytest.fixture()
def landed(tmp_path, where):
    shop = generate_shop(users=100, items=30, days=4, seed=4, start=date(2026, 3, 1))
    write_shop(shop, tmp_path / "landing")
    return tmp_path / "landing", where, shop


def _query(warehouse, sql, params=None):
    return rows(warehouse, sql, params)


def _count(warehouse, sql):
    return _query(warehouse, sql)[0][0]


def _edit(path, line_no, new_text):
    """Replace physical line `line_no` (1-based, header = 1) of a landing file."""
    lines = path.read_bytes().split(b"\n")
    lines[line_no - 1] = new_text if isinstance(new_text, bytes) else new_text.encode()
    path.write_bytes(b"\n".join(lines))


@BOTH
def test_load_is_idempotent_a_replay_is_reported_and_the_file_kept(landed):
    landing, warehouse, shop = landed
    first = load_batch(warehouse, landing, DAY)
    ids = _query(warehouse, "select event_id, source_row from raw.events order by 1, 2")
    again = load_batch(warehouse, landing, DAY)
    expected = int((shop.events["event_ts"].dt.date == DAY).sum())
    assert first["rows"] == again["rows"] == expected
    assert (first["replay"], again["replay"], again["previous_status"]) == (False, True, "loaded")
    assert _query(warehouse, "select event_id, source_row from raw.events order by 1, 2") == ids
    assert _count(warehouse, "select count(*) from raw.batches where status = 'loaded'") == 1
    # v2 columns: where each row came from; absent optional columns are NULL.
    assert _query(
        warehouse,
        "select distinct source_format, order_id, description, country, source_file from raw.events",
    ) == [("synthetic", None, None, None, str(batch_path(landing, DAY)))]
    assert [r[1] for r in ids] == sorted(r[1] for r in ids) and min(r[1] for r in ids) == 1
    assert batch_path(landing, DAY).exists()


@BOTH
def test_load_pending_catches_up_once_and_reloads_a_changed_file(landed):
    landing, warehouse, shop = landed
    load_dimensions(warehouse, landing)
    loaded = load_pending(warehouse, landing, date(2026, 3, 3))
    assert [b["batch_date"] for b in loaded] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert load_pending(warehouse, landing, date(2026, 3, 3)) == []
    assert _count(warehouse, "select count(*) from raw.users") == len(shop.users)
    path = batch_path(landing, DAY)
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")  # the shop re-sent the day
    assert [b["batch_date"] for b in load_pending(warehouse, landing, date(2026, 3, 3))] == ["2026-03-02"]
    # --from/--through: a date range only.
    assert load_pending(warehouse, landing, date(2026, 3, 4), since=date(2026, 3, 4))[0]["batch_date"] == (
        "2026-03-04"
    )


@BOTH
def test_missing_column_names_the_column(landed):
    landing, warehouse, _ = landed
    path = batch_path(landing, DAY)
    rows = [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]  # drop the price column
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(IngestError, match=r"events_2026-03-02.csv: missing column\(s\) price; header has"):
        load_batch(warehouse, landing, DAY)
    assert path.exists() and table_rows(warehouse, "raw.events") == 0


def test_renamed_column_is_named_on_both_sides(landed):
    landing, warehouse, _ = landed
    path = batch_path(landing, DAY)
    _edit(path, 1, path.read_text().splitlines()[0].replace('"price"', '"unit_price"'))
    with pytest.raises(
        IngestError, match=r"missing column\(s\) price; unexpected column\(s\) unit_price \(renamed"
    ):
        load_batch(warehouse, landing, DAY)


@pytest.mark.parametrize(
    ("column", "value", "kind", "where"),
    [("quantity", "many", "integer", "duckdb"), ("quantity", "2.5", "integer", "postgres"),
     ("price", "12,5x", "double", "duckdb"),
     ("event_ts", "2026-03-02 10:00:00+02:00", "timestamp", "postgres"),
     ("event_ts", "yesterday", "timestamp", "duckdb")],
    indirect=["where"],
)  # fmt: skip
def test_wrong_type_names_file_column_and_line_and_nothing_is_half_loaded(landed, column, value, kind):
    landing, warehouse, _ = landed
    load_batch(warehouse, landing, DAY)
    before = _query(warehouse, "select * from raw.events order by event_id")
    path = batch_path(landing, DAY)
    header = path.read_text().splitlines()[0].replace('"', "").split(",")
    fields = path.read_text().splitlines()[4].split(",")
    fields[header.index(column)] = f'"{value}"'
    _edit(path, 5, ",".join(fields))
    with pytest.raises(
        IngestError, match=rf"events_2026-03-02.csv:5: column {column}: .* not a valid {kind}"
    ):
        load_batch(warehouse, landing, DAY)
    assert _query(warehouse, "select * from raw.events order by event_id") == before
    assert path.exists()


def test_empty_header_only_and_absent_files(landed):
    landing, warehouse, _ = landed
    path = batch_path(landing, DAY)
    header = path.read_text().splitlines()[0]
    path.write_text("")
    with pytest.raises(IngestError, match="events_2026-03-02.csv: empty file"):
        load_batch(warehouse, landing, DAY)
    with pytest.raises(IngestError, match="not found"):
        load_batch(warehouse, landing, date(2030, 1, 1))
    path.write_text(header + "\n")  # a day without events (the shop was closed): zero rows, no error
    assert load_batch(warehouse, landing, DAY)["rows"] == 0


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [("e000999999,u000001,i00001,view,2026-03-02 10:0", "expected 8 fields, found 5"),  # truncated
     ('e000999999,u000001,"i00001,view,2026-03-02 10:00:00,s1,1,2.5', "garbled")],  # unclosed quote
)  # fmt: skip
def test_truncated_or_garbled_line_is_named_or_set_aside(landed, bad_line, reason):
    landing, warehouse, shop = landed
    path = batch_path(landing, DAY)
    good_rows = len(path.read_text().splitlines()) - 1
    _edit(path, 4, bad_line)
    with pytest.raises(IngestError, match=rf"events_2026-03-02.csv: 1 unparseable line.*line 4: {reason}"):
        load_batch(warehouse, landing, DAY)
    assert table_rows(warehouse, "raw.events") == 0

    # With an allowance the line goes to a rejects file next to the batch, counted; the rest loads.
    result = load_batch(warehouse, landing, DAY, max_rejects=5)
    assert result["rows"] == good_rows - 1 and result["rejected_lines"] == 1
    [reject] = [json.loads(line) for line in open(result["rejects_file"])]
    assert reject["line"] == 4 and reject["text"] == bad_line and reason in reject["reason"]
    assert result["rejects_file"].endswith("events/events_2026-03-02.rejects.jsonl")
    # Lines after the bad one keep their own line numbers.
    assert _count(warehouse, "select max(source_row) from raw.events") == good_rows


def test_non_utf8_description_loads_and_is_counted(landed):
    landing, warehouse, _ = landed
    path = batch_path(landing, DAY)
    lines = path.read_bytes().split(b"\n")
    lines[0] += b',"description"'
    for i in range(1, len(lines)):
        if lines[i]:
            lines[i] += b',"plain"'
    lines[2] = lines[2].replace(b'"plain"', b'"CR\xc8ME BR\xdbL\xc9E \x80 5"')  # latin-1 / cp1252 bytes
    lines[6] = lines[6].replace(b'"plain"', b'"CAF\xc9"')
    path.write_bytes(b"\n".join(lines))
    result = load_batch(warehouse, landing, DAY)
    assert result["non_utf8_lines"] == 2 and result["non_utf8_line_numbers"] == [3, 7]
    assert _query(warehouse, "select description from raw.events where source_row in (2, 6) order by 1") == [
        ("CAFÉ",),
        ("CRÈME BRÛLÉE € 5",),
    ]
    assert (
        _count(warehouse, "select count(*) from raw.events where description = 'plain'") == result["rows"] - 2
    )


def test_old_warehouse_gets_the_v2_columns(landed):
    landing, warehouse, _ = landed
    with duckdb.connect(str(warehouse)) as con:  # a raw layer as the walking skeleton made it
        con.execute("create schema raw")
        con.execute(
            "create table raw.events (event_id varchar, user_id varchar, item_id varchar, event_type varchar,"
            " event_ts timestamp, session_id varchar, quantity integer, price double, batch_date date,"
            " source_file varchar, loaded_at timestamp)"
        )
        con.execute("insert into raw.events (event_id, batch_date) values ('old-1', '2026-01-01')")
    load_batch(warehouse, landing, DAY)
    sql = "select column_name from information_schema.columns where table_schema = 'raw' and table_name = $1"
    columns = [r[0] for r in _query(warehouse, sql, ["events"])]
    assert columns[-5:] == ["order_id", "description", "country", "source_format", "source_row"]
    assert _query(warehouse, "select source_format from raw.events where event_id = 'old-1'") == [(None,)]


@BOTH
def test_live_events_load_with_their_returns(landed):
    landing, warehouse, _ = landed
    log = LiveLog(landing)
    base = {"user_id": "u000001", "item_id": "i00001", "session_id": "live-u000001", "price": 4.5}
    ts = "2026-03-02 09:{}:00"
    log.append(DAY, {**base, "event_id": "live-1", "event_type": "purchase", "event_ts": ts.format("00"),
                     "quantity": 2, "received_at": "x"})  # fmt: skip
    log.append(DAY, {**base, "event_id": "live-2", "event_type": "return", "event_ts": ts.format("30"),
                     "quantity": 1, "received_at": "x"})  # fmt: skip
    log.close()
    result = load_batch(warehouse, landing, DAY)
    assert (result["live_rows"], result["live_returns"]) == (2, 1)
    assert _query(
        warehouse,
        "select event_id, event_type, quantity, price, source_format, source_row from raw.events "
        "where source_format = 'live' order by 1",
    ) == [("live-1", "purchase", 2, 4.5, "live", 1), ("live-2", "return", 1, 4.5, "live", 2)]


@BOTH
def test_forgetting_a_customer_clears_the_warehouse_on_either_engine(landed):
    """personaflow/pipeline/forget.py's warehouse step: their rows gone from every table, text naming them
    as a customer rewritten (the file rebuilt on DuckDB, VACUUM FULL on PostgreSQL); nobody else's rows
    touched, a number that merely equals the id included."""
    from personaflow.pipeline.forget import _warehouse

    landing, warehouse, shop = landed
    load_dimensions(warehouse, landing)
    load_batch(warehouse, landing, DAY)
    day = shop.events[shop.events["event_ts"].dt.date == DAY]
    user = day["user_id"].value_counts().index[0]
    theirs = int((day["user_id"] == user).sum())
    with wh.connect(warehouse) as con:  # a note quoting them, as an alert or a report would
        con.execute("create table raw.notes (note varchar)")
        con.execute(
            "insert into raw.notes values ($1), ($2), ('someone else')",
            [f"refund for customer {user}, see", f"item {user} of the catalogue"],
        )
    before = _count(warehouse, "select count(*) from raw.events")
    removed = _warehouse(warehouse, user, "forgotten-abc")
    assert removed == theirs + 1  # their day's events and their raw.users row
    assert _count(warehouse, "select count(*) from raw.events") == before - theirs
    assert _query(warehouse, "select count(*) from raw.events where user_id = $1", [user]) == [(0,)]
    assert _query(warehouse, "select note from raw.notes order by 1") == [
        (f"item {user} of the catalogue",), ("refund for customer forgotten-abc, see",), ("someone else",)
    ]
