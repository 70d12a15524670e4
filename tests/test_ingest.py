"""Landing files into the raw layer: idempotent per day, files kept, bad files named with the fault."""

from datetime import date

import duckdb
import pytest

from ingest.generate import batch_path, generate_shop, write_shop
from ingest.load import IngestError, load_batch, load_dimensions, load_pending

DAY = date(2026, 3, 2)


@pytest.fixture()
def landed(tmp_path):
    shop = generate_shop(users=100, items=30, days=4, seed=4, start=date(2026, 3, 1))
    write_shop(shop, tmp_path / "landing")
    return tmp_path / "landing", tmp_path / "wh.duckdb", shop


def _count(warehouse, sql):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_load_is_idempotent_and_keeps_the_file(landed):
    landing, warehouse, shop = landed
    first = load_batch(warehouse, landing, DAY)
    again = load_batch(warehouse, landing, DAY)
    expected = int((shop.events["event_ts"].dt.date == DAY).sum())
    assert first["rows"] == again["rows"] == expected
    assert _count(warehouse, "select count(*) from raw.events") == expected
    assert _count(warehouse, "select count(*) from raw.batches where status = 'loaded'") == 1
    assert batch_path(landing, DAY).exists()


def test_load_pending_catches_up_history_once(landed):
    landing, warehouse, shop = landed
    load_dimensions(warehouse, landing)
    loaded = load_pending(warehouse, landing, date(2026, 3, 3))
    assert [b["batch_date"] for b in loaded] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert load_pending(warehouse, landing, date(2026, 3, 3)) == []
    assert _count(warehouse, "select count(*) from raw.users") == len(shop.users)


def test_missing_column_names_the_column(landed):
    landing, warehouse, _ = landed
    path = batch_path(landing, DAY)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace('"price"', '"cost"')] + lines[1:]) + "\n")
    with pytest.raises(IngestError, match="missing column.*price"):
        load_batch(warehouse, landing, DAY)


def test_wrong_type_names_the_file_and_nothing_half_loaded(landed):
    landing, warehouse, _ = landed
    load_batch(warehouse, landing, DAY)
    before = _count(warehouse, "select count(*) from raw.events")
    path = batch_path(landing, DAY)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",many,1.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError, match=str(path.name)):
        load_batch(warehouse, landing, DAY)
    assert _count(warehouse, "select count(*) from raw.events") == before


def test_empty_and_absent_files_are_named(landed):
    landing, warehouse, _ = landed
    batch_path(landing, DAY).write_text("")
    with pytest.raises(IngestError, match="empty file"):
        load_batch(warehouse, landing, DAY)
    with pytest.raises(IngestError, match="not found"):
        load_batch(warehouse, landing, date(2030, 1, 1))
