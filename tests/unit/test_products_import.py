"""The catalogue import (`--kind products`): its bad-input cases (each names the file, row and column, and
loads nothing), the checks that quarantine a bad batch without touching raw.products, the point-in-time
rule for a changed category, re-runs, and the shipped mapping on the real Complete Journey catalogue."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.products import as_of, load_products, product_mapping, read_products, stamp
from personaflow.pipeline.shop_tables import import_table
from personaflow.quality.validate import DataQualityError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "complete-journey"
TOML = (
    'format = "csv"\n[columns]\nitem_id = "sku"\nname = "title"\ncategory = "cat"\nprice = "list_price"\n'
    'valid_from = "since"\n'
)


def _files(tmp_path: Path, rows: str, toml: str = TOML) -> tuple[Path, Path]:
    (tmp_path / "cat.toml").write_text(toml)
    (tmp_path / "catalogue.csv").write_text("sku,title,cat,list_price,since\n" + rows)
    return tmp_path / "catalogue.csv", tmp_path / "cat.toml"


def _read(tmp_path: Path, rows: str, toml: str = TOML) -> tuple[pd.DataFrame, dict]:
    path, mapping = _files(tmp_path, rows, toml)
    return read_products(path, product_mapping(mapping))


def test_a_missing_column_names_it_and_what_the_file_has(tmp_path: Path) -> None:
    toml = TOML + 'brand = "maker"\n'
    with pytest.raises(IngestError, match=r"missing column\(s\) 'maker' \(ours: brand\).*'sku', 'title'"):
        _read(tmp_path, "p1,Tea,drinks,2.5,2017-01-01\n", toml)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("p1,Tea,drinks,2.5,2017-01-01\n,Cake,bakery,3,2017-01-01\n", r":2: column 'sku' \(ours: item_id\)"),
        (
            "p1,Tea,drinks,cheap,2017-01-01\n",
            r":1: column 'list_price' \(ours: price\): 'cheap' is not a price",
        ),
        ("p1,Tea,drinks,-1,2017-01-01\n", r":1: column 'list_price' \(ours: price\): '-1' is not a price"),
        (
            "p1,Tea,drinks,2,2017-02-30\n",
            r":1: column 'since' \(ours: valid_from\): '2017-02-30' is not a date",
        ),
    ],
)
def test_a_bad_value_names_the_row_and_column_and_loads_nothing(
    tmp_path: Path, rows: str, message: str
) -> None:
    with pytest.raises(IngestError, match=message):
        _read(tmp_path, rows)


def test_one_product_with_two_records_for_one_date_is_refused_and_exact_repeats_dropped(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        IngestError, match=r"product 'p1' has different records for the same date \(rows 1, 2\)"
    ):
        _read(tmp_path, "p1,Tea,drinks,2,2017-01-01\np1,Tea,snacks,2,2017-01-01\n")
    frame, report = _read(tmp_path, "p1,Tea,drinks,2,2017-01-01\np1,Tea,drinks,2,2017-01-01\n")
    assert len(frame) == 1 and report["repeats_dropped"] == 1


def test_a_mapping_must_map_item_id_and_only_our_fields(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="must map item_id"):
        _read(tmp_path, "p1,Tea,drinks,2,2017-01-01\n", 'format = "csv"\n[columns]\nname = "title"\n')
    with pytest.raises(IngestError, match=r"\[columns\] colour not ours"):
        _read(tmp_path, "p1,Tea,drinks,2,2017-01-01\n", TOML + 'colour = "c"\n')
    no_date = 'format = "csv"\n[columns]\nitem_id = "sku"\n'
    with pytest.raises(IngestError, match="must say from when it holds"):
        _read(tmp_path, "p1,Tea,drinks,2,2017-01-01\n", no_date)


def test_a_changed_category_is_kept_as_of_its_date_and_a_point_in_time_read_never_sees_it_early(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    spec = product_mapping(_files(tmp_path, "")[1])
    for name, category, since in (("jan.csv", "snacks", "2017-01-01"), ("jun.csv", "frozen", "2017-06-01")):
        path = tmp_path / name
        path.write_text(
            f"sku,title,cat,list_price,since\np1,Ice,{category},2,{since}\np2,Tea,drinks,3,{since}\n"
        )
        load_products(warehouse, stamp(read_products(path, spec)[0], path))
    again = tmp_path / "jun.csv"
    assert load_products(warehouse, stamp(read_products(again, spec)[0], again))["table_rows"] == 4  # re-run
    with wh.connect(warehouse, read_only=True) as con:
        versions = con.execute("select item_id, category, valid_from, source from raw.products").df()
    assert (versions["item_id"] == "p1").sum() == 2  # both versions kept, never overwritten

    def category(when: str) -> dict[str, str]:
        return dict(as_of(versions, when)[["item_id", "category"]].itertuples(index=False))

    assert category("2016-12-31") == {}  # before the first version: not known yet
    assert category("2017-05-31 23:59") == {"p1": "snacks", "p2": "drinks"}
    assert category("2017-06-01") == {"p1": "frozen", "p2": "drinks"}


def test_a_batch_failing_its_checks_is_quarantined_and_raw_products_left_as_it_was(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, features_dir=tmp_path / "features")
    path, mapping = _files(tmp_path, "p1,Tea,drinks,2,2017-01-01\n")
    assert import_table("products", path, str(mapping), s)["table_rows"] == 1
    # a mapping pointing at the wrong column: categories mostly empty
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,title,cat,list_price,since\np2,Cake,,3,2017-01-01\np3,Bun,,1,2017-01-01\n")
    with pytest.raises(DataQualityError, match=r"quarantined .*category"):
        import_table("products", bad, str(mapping), s)
    with wh.connect(wh.location(s), read_only=True) as con:
        assert con.execute("select item_id from raw.products").fetchall() == [("p1",)]
        held = con.execute("select item_id, reason from quarantine.products order by item_id").fetchall()
    assert [i for i, _ in held] == ["p2", "p3"] and "category" in held[0][1]
    folder = next((tmp_path / "quarantine" / "products").iterdir())
    assert (folder / "reasons.json").exists() and len((folder / "rows.jsonl").read_text().splitlines()) == 2


def test_the_shipped_mapping_reads_the_real_complete_journey_catalogue(tmp_path: Path) -> None:
    frame, report = read_products(DATA / "products.parquet", product_mapping("complete-journey-products"))
    assert report["products"] == 92331 and report["with_category"] == 92331 - 540
    assert frame["department"].nunique() == 32 and frame["price"].isna().all()
    assert frame["raw_record"].str.contains('"package_size"').all()  # their other columns kept raw
    row = frame.set_index("item_id").loc["25671"]
    assert (row["category"], row["name"], row["brand"]) == ("FRZN ICE", "ICE - CRUSHED/CUBED", "National")


def test_the_cli_imports_a_catalogue_and_a_quarantined_one_fails_in_one_line(
    tmp_path: Path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from personaflow.cli.main import app

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    path, mapping = _files(tmp_path, "p1,Tea,drinks,2,2017-01-01\n")
    ok = CliRunner().invoke(app, ["ingest", str(path), "--kind", "products", "--mapping", str(mapping)])
    assert ok.exit_code == 0, ok.output
    assert '"table_rows": 1' in ok.output
    path.write_text("sku,title,cat,list_price,since\np2,Cake,,3,2017-01-01\n")
    failed = CliRunner().invoke(app, ["ingest", str(path), "--kind", "products", "--mapping", str(mapping)])
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert failed.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith("ingest failed: products batch") and "quarantined" in lines[0]
