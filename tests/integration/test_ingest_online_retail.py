"""Importing real shop exports: the Online Retail layout (every fault kind it has, counted) and the
generic CSV/Parquet events format with a column mapping, through the CLI as a user runs it."""

from __future__ import annotations

import gzip
import itertools
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from personaflow.cli import app
from personaflow.core import warehouse as wh
from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.formats import parse_mapping, read_events
from personaflow.ingest.landing import import_events
from personaflow.ingest.load import load_pending
from personaflow.ingest.online_retail import read_online_retail

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# One line per fault kind the real file has; the comment gives the data row number (8: no customer,
# 9: duplicate of 8).
ROWS = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom",  # 1
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom",  # 2
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom",  # 3 duplicate of 2
    "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17850,United Kingdom",  # 4 same customer
    "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527.0,United Kingdom",  # 5 cancellation
    "C536383,35004C,SET OF 3 COLOURED  FLYING DUCKS,-1,12/1/2010 9:49,4.65,15311,United Kingdom",  # 6 return
    "536414,22139,,56,12/1/2010 11:52,0,,United Kingdom",  # 7 price 0, no customer
    '536544,21773,"DECORATIVE ROSE BATHROOM BOTTLE, BLUE",1,12/1/2010 14:32,2.51,,United Kingdom',  # 8
    '536544,21773,"DECORATIVE ROSE BATHROOM BOTTLE, BLUE",1,12/1/2010 14:32,2.51,,United Kingdom',  # 9
    "536592,DOT,DOTCOM POSTAGE,1,12/1/2010 17:06,569.77,,United Kingdom",  # 10 no customer
    "536600,21123,SET/10 IVORY POLKADOT PARTY CANDLES,-3,12/2/2010 10:00,0,,United Kingdom",  # 11 neg qty
    "536601,22086,PAPER CHAIN KIT 50'S CHRISTMAS,12,12/2/2010 10:05,2.55,13047.0,United Kingdom",  # 12
    "A563185,B,Adjust bad debt,1,12/4/2010 14:50,-11062.06,,United Kingdom",  # 13 negative price
    "536620,22728,ALARM CLOCK BAKELIKE PINK,24,12/5/2010 9:00,3.75,12583,France",  # 14 (12/3: closed)
]
FAULTS = {
    "return": 2, "missing_customer": 6, "non_positive_price": 3, "duplicate": 2, "zero_price": 2,
    "negative_price": 1, "negative_quantity": 3, "negative_quantity_not_return": 1, "missing_description": 1,
}  # fmt: skip


@pytest.fixture()
def export(tmp_path):
    path = tmp_path / "exports" / "online_retail.csv"
    path.parent.mkdir()
    path.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n")
    return path


def _rows(warehouse, sql):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_fault_counts_per_reason(export):
    frame, report = read_online_retail(export)
    assert report["rows"] == 14 and report["faults"] == FAULTS
    assert (report["customers"], report["products"], report["customer_ids_normalized"]) == (5, 12, 5)
    assert frame.loc[frame["event_type"] == "return", "event_id"].tolist() == ["C536379-5", "C536383-6"]


def test_float_looking_customer_id_is_the_same_customer(export):
    frame, _ = read_online_retail(export)
    assert frame.loc[:3, "user_id"].tolist() == ["17850"] * 4  # '17850.0' and '17850' alike
    assert frame.loc[4, "user_id"] == "14527" and frame["user_id"].isna().sum() == 6


def test_import_lands_daily_files_loads_them_and_is_idempotent(export, tmp_path):
    landing, warehouse = tmp_path / "landing", tmp_path / "wh.duckdb"
    original = export.read_bytes()
    report = import_events(export, "online-retail", landing)
    batches = report["batches"]
    assert (batches["days"], batches["written"], batches["empty_days"]) == (5, 5, 1)
    assert sorted(p.name for p in (landing / "events").iterdir()) == [
        f"events_2010-12-0{d}.csv" for d in range(1, 6)
    ]
    assert (landing / "events" / "events_2010-12-03.csv").read_text().count("\n") == 1  # header only
    assert export.read_bytes() == original  # the export is never changed

    loaded = load_pending(warehouse, landing, date(2010, 12, 31))
    assert [b["rows"] for b in loaded] == [10, 2, 0, 1, 1]
    assert _rows(
        warehouse,
        "select event_id, user_id, item_id, event_type, quantity, price, order_id, session_id, country, "
        "source_format, source_row from raw.events where order_id like 'C%' or price < 0 order by source_row",
    ) == [
        ("C536379-5", "14527", "D", "return", -1, 27.5, "C536379", "C536379", "United Kingdom",
         "online-retail", 5),
        ("C536383-6", "15311", "35004C", "return", -1, 4.65, "C536383", "C536383", "United Kingdom",
         "online-retail", 6),
        ("A563185-13", None, "B", "purchase", 1, -11062.06, "A563185", "A563185", "United Kingdom",
         "online-retail", 13),
    ]  # fmt: skip
    assert _rows(warehouse, "select count(*), count(distinct event_id) from raw.events") == [(14, 14)]
    assert _rows(warehouse, "select description from raw.events where source_row = 8") == [
        ("DECORATIVE ROSE BATHROOM BOTTLE, BLUE",)
    ]

    # Importing the same export again changes nothing and loads nothing.
    again = import_events(export, "online-retail", landing)
    assert (again["batches"]["unchanged"], again["batches"]["written"]) == (5, 0)
    assert again["users_added"] == again["items_added"] == 0
    assert load_pending(warehouse, landing, date(2010, 12, 31)) == []

    # A day file fixed by hand is kept by a later import (and reported), unless --overwrite.
    fixed = landing / "events" / "events_2010-12-02.csv"
    fixed.write_text(fixed.read_text().replace(",-3,", ",3,"))
    assert import_events(export, "online-retail", landing)["batches"]["kept"] == ["2010-12-02"]
    assert ",3," in fixed.read_text()
    assert import_events(export, "online-retail", landing, overwrite=True)["batches"]["written"] == 1
    assert ",-3," in fixed.read_text()


def test_dimensions_are_derived_for_sources_without_them(export, tmp_path):
    landing = tmp_path / "landing"
    import_events(export, "online-retail", landing)
    users = pd.read_csv(landing / "users.csv", dtype=str)
    assert sorted(users["user_id"]) == ["12583", "13047", "14527", "15311", "17850"]
    assert users.set_index("user_id").loc["12583", "country"] == "France"
    items = pd.read_csv(landing / "items.csv", dtype={"item_id": str})
    assert items.set_index("item_id").loc["71053", "price"] == 3.39 and len(items) == 12


def test_bad_export_values_name_file_column_and_line(export):
    text = export.read_text()
    export.write_text(text.replace("12/2/2010 10:05", "2010-13-45 10:05"))
    with pytest.raises(IngestError, match=r"online_retail.csv:13: column InvoiceDate: '2010-13-45 10:05'"):
        read_online_retail(export)
    export.write_text(text.replace(",56,", ",fifty,"))
    with pytest.raises(
        IngestError, match=r"online_retail.csv:8: column Quantity: 'fifty' is not a whole number"
    ):
        read_online_retail(export)
    export.write_text(text.replace("CustomerID", "Customer"))
    with pytest.raises(IngestError, match=r"missing column\(s\) CustomerID; unexpected column\(s\) Customer"):
        read_online_retail(export)
    with pytest.raises(IngestError, match=r"online_retail.xlsx: file not found"):
        read_online_retail(export.with_suffix(".xlsx"))
    export.with_suffix(".xlsx").write_bytes(b"not a zip archive")
    with pytest.raises(IngestError, match=r"online_retail.xlsx: not a readable spreadsheet"):
        read_online_retail(export.with_suffix(".xlsx"))
    export.with_suffix(".csv.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(IngestError, match=r"online_retail.csv.gz: cannot decompress"):
        read_online_retail(export.with_suffix(".csv.gz"))


def test_latin1_export_and_a_truncated_line(export, tmp_path):
    lines = export.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"Discount", b"Remise d\xe9duite")
    lines[9] = b"536999,99999,TRUNCATED LINE,1,12/1/20"  # cut off mid-line
    export.write_bytes(b"\n".join(lines))
    with pytest.raises(
        IngestError, match=r"online_retail.csv: 1 unparseable line.*line 10: expected 8 fields"
    ):
        import_events(export, "online-retail", tmp_path / "landing")
    report = import_events(export, "online-retail", tmp_path / "landing", max_rejects=1)
    assert (report["rows"], report["rejected_lines"], report["non_utf8_lines"]) == (13, 1, 1)
    assert json.loads(open(report["rejects_file"]).read())["line"] == 10
    day = (tmp_path / "landing" / "events" / "events_2010-12-01.csv").read_text()
    assert "Remise déduite" in day and "TRUNCATED" not in day and "DOTCOM" in day


def test_generic_csv_and_parquet_with_a_mapping(tmp_path):
    frame = pd.DataFrame(
        {
            "customer": ["c1", "c2", "c1"],
            "sku": ["p1", "p2", "p3"],
            "action": ["view", "purchase", "return"],
            "ts": ["2024-05-01T10:00:00Z", "2024-05-01 23:30:00+02:00", "2024-05-02T08:00:00"],
            "qty": [1, 2, -2],
            "amount": [None, 9.5, 9.5],
            "campaign": ["a", "b", "c"],
        }
    )
    csv_path, parquet_path = tmp_path / "shop.csv", tmp_path / "shop.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path, index=False)
    mapping = parse_mapping("customer=user_id, sku=item_id, action=event_type, ts=event_ts, qty=quantity, "
                            "amount=price")  # fmt: skip
    for path, fmt in ((csv_path, "csv"), (parquet_path, "parquet")):
        events, report = read_events(path, fmt, mapping)
        assert report["ignored_columns"] == ["campaign"]
        assert events["event_ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
            "2024-05-01 10:00", "2024-05-01 21:30", "2024-05-02 08:00",
        ]  # fmt: skip
        assert events["event_id"].tolist() == [f"shop-{i}" for i in (1, 2, 3)]
        assert events["quantity"].tolist() == [1, 2, -2] and events["source_format"].unique().tolist() == [
            fmt
        ]
    with pytest.raises(IngestError, match=r"missing column\(s\) event_ts"):
        read_events(csv_path, "csv", parse_mapping("customer=user_id,sku=item_id,action=event_type"))
    with pytest.raises(ValueError, match="'when' is not one of ours"):
        parse_mapping("ts=when")


def test_cli_imports_then_loads_or_leaves_days_for_the_dag(export, tmp_path, edge_env_restored):
    runner = CliRunner()
    home = tmp_path / "home"
    env = {"PERSONAFLOW_HOME": str(home)}
    args = ["ingest", str(export), "--format", "online-retail"]
    first = runner.invoke(app, [*args, "--no-load"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["faults"] == FAULTS
    assert not (home / "warehouse.duckdb").exists()  # --no-load: the nightly DAG loads day by day

    loaded = runner.invoke(app, [*args, "--through", "2010-12-02"], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.output)["loaded"] == {
        "through": "2010-12-02",
        "batches": 2,
        "rows": 12,
        "skipped": 0,
    }
    backfill = runner.invoke(app, ["ingest", "--from", "2010-12-03", "--through", "2010-12-05"], env=env)
    assert json.loads(backfill.output) == {"batches_loaded": 3, "rows": 2}
    bad = runner.invoke(app, ["ingest", str(export)], env=env)
    assert bad.exit_code != 0 and "--format" in bad.output
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope.csv"), "--format", "online-retail"], env=env)
    assert missing.exit_code == 1 and "nope.csv: file not found" in missing.output


def test_import_warnings_go_to_stderr(export, tmp_path):
    """A landed day that differs from the export is kept, and the console says so on stderr."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "PERSONAFLOW_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-c", "from personaflow.cli import app; app()", "ingest", str(export),
            "--format", "online-retail", "--no-load"]  # fmt: skip
    assert subprocess.run(args, env=env, capture_output=True, text=True).returncode == 0
    day = tmp_path / "home" / "landing" / "events" / "events_2010-12-01.csv"
    day.write_text(day.read_text() + "\n")  # fixed by hand, say
    again = subprocess.run(args, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and json.loads(again.stdout)["batches"]["kept"] == ["2010-12-01"]
    assert "kept 1 landed day file(s) that differ from this export: 2010-12-01" in again.stderr


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
SLICE_LINES = 25_000  # the first days of the real file (Dec 2010): every fault kind, a few seconds


def test_a_slice_of_the_real_file_lands_the_same_in_duckdb_and_postgresql(tmp_path, postgres_url):
    """The one setting moves the warehouse: the same landing files give the same raw layer on both."""
    with gzip.open(REAL, "rt", encoding="latin-1") as source:
        head = list(itertools.islice(source, SLICE_LINES + 1))
    export = tmp_path / "online_retail_slice.csv"
    export.write_text("".join(head[:-1]), encoding="latin-1")  # the last line may be cut: drop it
    landing = tmp_path / "landing"
    import_events(export, "online-retail", landing)
    summary = (
        "select batch_date, count(*) as n, count(distinct user_id) as users, sum(quantity) as units, "
        "round(cast(sum(price * quantity) as numeric), 2) as revenue, min(source_row) as first_row, "
        "max(source_row) as last_row, count(description) as described from raw.events "
        "group by batch_date order by batch_date"
    )
    found = {}
    for where in (tmp_path / "wh.duckdb", postgres_url):
        loaded = load_pending(where, landing, date(2011, 12, 31))
        with wh.connect(where, read_only=True) as con:
            days = [tuple(float(v) if isinstance(v, Decimal) else v for v in r)
                    for r in con.execute(summary).fetchall()]  # fmt: skip
            ledger = con.execute(
                "select batch_date, row_count, status from raw.batches order by batch_date"
            ).fetchall()
        found[str(type(where))] = (sum(int(b["rows"]) for b in loaded), days, ledger)
    (duck_rows, duck_days, duck_ledger), (pg_rows, pg_days, pg_ledger) = found.values()
    assert duck_rows == pg_rows == SLICE_LINES - 1 and len(duck_days) >= 5
    assert duck_days == pg_days and duck_ledger == pg_ledger
    assert load_pending(postgres_url, landing, date(2011, 12, 31)) == []  # a re-run loads nothing


def test_history_of_a_generic_csv_prints_its_summary(tmp_path, monkeypatch, edge_env_restored):
    """Issue 26: `personaflow history FILE --format csv` ran every stage, then exited 1 with
    KeyError: 'customers' (the summary read a field only the Online Retail reader made)."""
    import json

    from typer.testing import CliRunner

    from personaflow.cli import app

    rng = np.random.default_rng(3)
    n = 240
    frame = pd.DataFrame({
        "customer": [f"c{i}" for i in rng.integers(0, 30, n)],
        "sku": [f"p{i}" for i in rng.integers(0, 12, n)],
        "action": rng.choice(["view", "purchase"], n),
        "ts": [f"2024-05-{1 + i % 4:02d} {10 + i % 9}:00:00" for i in range(n)],
        "amount": rng.uniform(1, 20, n).round(2),
    })  # fmt: skip
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "home" / "features"))
    mapping = "customer=user_id,sku=item_id,action=event_type,ts=event_ts,amount=price"
    args = ["history", str(path), "--format", "csv", "--mapping", mapping, "--no-train"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert (summary["rows"], summary["customers"], summary["products"]) == (
        n, frame["customer"].nunique(), frame["sku"].nunique()
    )
    assert summary["days"] == 4 and summary["faults"] == {}


def test_an_extra_column_is_reported_and_kept_in_the_raw_copy(export, tmp_path):
    """An .xlsx (or CSV) with a column outside our layout used to be accepted with the column dropped
    silently. Now the import summary lists it, stderr says where it is kept, and the export is kept
    byte for byte in landing/imports/; the landed days are those of the export without it."""
    import subprocess
    import sys

    rows = pd.read_csv(export, dtype=str, keep_default_na=False)
    xlsx = tmp_path / "exports" / "with_salesperson.xlsx"
    rows.assign(Salesperson=[f"rep-{i % 3}" for i in range(len(rows))]).to_excel(xlsx, index=False)

    def ingest(path: Path, home: Path, fmt: str = "online-retail", *extra: str):
        env = {**__import__("os").environ, "PERSONAFLOW_HOME": str(home)}
        args = [sys.executable, "-c", "from personaflow.cli import app; app()", "ingest", str(path),
                "--format", fmt, "--no-load", *extra]  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), done.stderr

    home = tmp_path / "home"
    summary, stderr = ingest(xlsx, home)
    copy = home / "landing" / "imports" / "with_salesperson.xlsx"
    assert summary["extra_columns"] == ["Salesperson"] and summary["raw_copy"] == str(copy)
    assert copy.read_bytes() == xlsx.read_bytes()
    assert pd.read_excel(copy)["Salesperson"].tolist()[:3] == ["rep-0", "rep-1", "rep-2"]
    assert f"not in our layout, not loaded: Salesperson; kept with the whole export in {copy}" in stderr
    plain, _ = ingest(export, tmp_path / "plain")  # the same rows without the column
    assert plain["extra_columns"] == [] and "raw_copy" not in plain
    assert not (tmp_path / "plain" / "landing" / "imports").exists()
    for day in sorted((tmp_path / "plain" / "landing" / "events").glob("events_*.csv")):
        assert (home / "landing" / "events" / day.name).read_bytes() == day.read_bytes(), day.name
    again, _ = ingest(xlsx, home)  # the same export again: the same copy, not a second one
    assert again["raw_copy"] == str(copy) and sorted(copy.parent.iterdir()) == [copy]

    # the generic CSV format too
    csv = tmp_path / "exports" / "shop.csv"
    pd.DataFrame({"customer": ["u1"], "sku": ["i1"], "action": ["purchase"], "ts": ["2024-05-01 10:00"],
                  "campaign": ["spring"]}).to_csv(csv, index=False)  # fmt: skip
    mapping = "customer=user_id,sku=item_id,action=event_type,ts=event_ts"
    shop, stderr = ingest(csv, tmp_path / "shop", "csv", "--mapping", mapping)
    assert shop["extra_columns"] == ["campaign"]
    assert Path(shop["raw_copy"]).read_bytes() == csv.read_bytes() and "campaign" in stderr


def test_a_generic_csv_history_sets_faulty_rows_aside_not_their_days(
    tmp_path, monkeypatch, edge_env_restored
):
    """Issue 26: one $0 line quarantined its whole day, and so did > 5 % duplicates (27 % of a shop's
    rows lost). Now the faulty rows are set aside with their reasons and the rest of their days land;
    a day that is mostly faulty is still quarantined whole."""
    import json

    import duckdb
    from typer.testing import CliRunner

    from personaflow.cli import app

    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame({
        "customer": [f"c{i}" for i in rng.integers(0, 40, n)],
        "sku": [f"p{i}" for i in rng.integers(0, 15, n)],
        "action": "purchase",
        "ts": [f"2024-05-{1 + i % 5:02d} {8 + i % 11}:{i % 60:02d}:{(7 * i) % 60:02d}" for i in range(n)],
        "amount": rng.uniform(1, 20, n).round(2),
    })  # fmt: skip
    frame.loc[1, "amount"] = 0.0  # day 2: one $0 line
    day3 = frame.index[frame["ts"].str.startswith("2024-05-03")]
    dups = frame.loc[day3[:6]]  # day 3: 6 exact repeats (7.5 % of its 80 rows: over the 5 % day rule)
    day5 = frame["ts"].str.startswith("2024-05-05")
    frame.loc[day5, "amount"] = 0.0  # day 5: every line $0, a broken day
    frame = pd.concat([frame, dups], ignore_index=True)
    # days 4 and 6 without a sale (a closed shop): normal in an export, never a failed day
    frame["ts"] = frame["ts"].str.replace("2024-05-04", "2024-05-07")
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    home = tmp_path / "home"
    monkeypatch.setenv("PERSONAFLOW_HOME", str(home))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(home / "features"))
    mapping = "customer=user_id,sku=item_id,action=event_type,ts=event_ts,amount=price"
    args = ["history", str(path), "--format", "csv", "--mapping", mapping, "--no-train"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["rows_set_aside"] == 7
    assert summary["set_aside_reasons"] == {"price_out_of_range": 1, "duplicate": 6}
    assert summary["days"] == 7 and summary["failed_days"] == ["2024-05-05"]  # the broken day only
    aside = pd.read_csv(summary["set_aside_file"])
    assert len(aside) == 7 and set(aside["reason"]) == {"price_out_of_range", "duplicate"}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        per_day = dict(con.execute(
            "select cast(event_ts as date)::varchar, count(*) from raw.events group by 1"
        ).fetchall())  # fmt: skip
    expected = frame.assign(day=frame["ts"].str[:10]).groupby("day").size()
    assert per_day["2024-05-01"] == expected["2024-05-01"]
    assert per_day["2024-05-02"] == expected["2024-05-02"] - 1  # all but the $0 line
    assert per_day["2024-05-03"] == expected["2024-05-03"] - 6  # all but the repeats
    assert per_day.get("2024-05-05", 0) == 0  # quarantined whole (kept in the quarantine, not loaded)
