"""The customers, campaigns and redemptions imports: their bad-input cases (each names the file, row and
column, and loads nothing), the shipped mappings on the real Complete Journey files, and re-runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personaflow.core import warehouse as wh
from personaflow.ingest.campaigns import (
    campaign_mapping,
    coupon_mapping,
    load_campaigns,
    load_coupons,
    load_redemptions,
    read_campaigns,
    read_coupons,
    read_redemptions,
    redemption_mapping,
    stamp,
)
from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.customers import customer_mapping, read_customers

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "complete-journey"
CAMPAIGNS_TOML = """format = "csv"
[columns]
campaign_id = "id"
campaign_type = "kind"
start_date = "from"
end_date = "to"
[members]
file = "reached.csv"
campaign_id = "id"
user_id = "customer"
"""
REDEMPTIONS_TOML = (
    'format = "csv"\n[columns]\nuser_id = "customer"\ncampaign_id = "id"\nredemption_date = "on"\n'
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _campaign_files(
    tmp_path: Path, campaigns: str, reached: str = "id,customer\n1,c1\n"
) -> tuple[Path, Path]:
    _write(tmp_path / "reached.csv", reached)
    return _write(tmp_path / "campaigns.csv", campaigns), _write(tmp_path / "c.toml", CAMPAIGNS_TOML)


def test_a_missing_column_names_it_and_what_the_file_has(tmp_path: Path) -> None:
    path, mapping = _campaign_files(tmp_path, "id,kind,from\n1,A,2017-01-01\n")
    with pytest.raises(
        IngestError, match=r"missing column\(s\) 'to' \(ours: end_date\).*'id', 'kind', 'from'"
    ):
        read_campaigns(path, campaign_mapping(mapping))


def test_a_bad_date_names_the_row_and_column(tmp_path: Path) -> None:
    path, mapping = _campaign_files(
        tmp_path, "id,kind,from,to\n1,A,2017-01-01,2017-02-01\n2,B,2017-13-45,2017-03-01\n"
    )
    with pytest.raises(
        IngestError, match=r"campaigns.csv:2: column 'from' \(ours: start_date\): '2017-13-45' is not a date"
    ):
        read_campaigns(path, campaign_mapping(mapping))


def test_a_campaign_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    path, mapping = _campaign_files(tmp_path, "id,kind,from,to\n1,A,2017-03-01,2017-02-01\n")
    with pytest.raises(
        IngestError, match=r":1: column 'to' \(ours: end_date\).*on or after the campaign's start_date"
    ):
        read_campaigns(path, campaign_mapping(mapping))


def test_a_member_of_an_unknown_campaign_is_refused(tmp_path: Path) -> None:
    path, mapping = _campaign_files(
        tmp_path, "id,kind,from,to\n1,A,2017-01-01,2017-02-01\n", reached="id,customer\n1,c1\n9,c2\n"
    )
    with pytest.raises(IngestError, match=r"reached.csv:2: column 'id' \(ours: campaign_id\): '9'"):
        read_campaigns(path, campaign_mapping(mapping))


def test_a_redemption_by_an_unknown_customer_or_of_an_unknown_campaign_is_refused(tmp_path: Path) -> None:
    mapping = redemption_mapping(_write(tmp_path / "r.toml", REDEMPTIONS_TOML))
    path = _write(tmp_path / "red.csv", "customer,id,on\nc1,1,2017-01-05\nghost,1,2017-01-06\n")
    with pytest.raises(
        IngestError, match=r"red.csv:2: column 'customer' \(ours: user_id\): 'ghost' is not a customer"
    ):
        read_redemptions(path, mapping, users={"c1"}, campaign_ids={"1"})
    path = _write(tmp_path / "red.csv", "customer,id,on\nc1,7,2017-01-05\n")
    with pytest.raises(IngestError, match=r":1: column 'id' \(ours: campaign_id\): '7'"):
        read_redemptions(path, mapping, users={"c1"}, campaign_ids={"1"})
    path = _write(tmp_path / "red.csv", "customer,id,on\nc1,1,\n")
    with pytest.raises(IngestError, match=r":1: column 'on' \(ours: redemption_date\)"):
        read_redemptions(path, mapping, users=None, campaign_ids=None)


def test_a_mapping_must_map_our_required_fields_and_only_ours(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="must map user_id"):
        customer_mapping(_write(tmp_path / "a.toml", 'format = "csv"\n[columns]\nage = "age"\n'))
    with pytest.raises(IngestError, match=r"\[columns\] shoe_size not ours"):
        customer_mapping(
            _write(tmp_path / "b.toml", 'format = "csv"\n[columns]\nuser_id = "id"\nshoe_size = "s"\n')
        )
    with pytest.raises(IngestError, match=r"\[members\] must give file"):
        campaign_mapping(_write(tmp_path / "c.toml", CAMPAIGNS_TOML.split("[members]")[0]))
    with pytest.raises(IngestError, match="no valid_from column"):
        read_customers(
            _write(tmp_path / "d.csv", "id\n1\n"),
            customer_mapping(_write(tmp_path / "d.toml", 'format = "csv"\n[columns]\nuser_id = "id"\n')),
        )


def test_one_customer_with_two_records_for_one_date_is_refused(tmp_path: Path) -> None:
    mapping = customer_mapping(
        _write(
            tmp_path / "m.toml",
            'format = "csv"\n[columns]\nuser_id = "id"\n'
            'income = "inc"\n[options]\nvalid_from = "2017-01-01"\n',
        )
    )
    path = _write(tmp_path / "c.csv", "id,inc\n1,10K\n1,10K\n2,5K\n2,90K\n")
    with pytest.raises(
        IngestError, match=r"customer '2' has different records for the same date \(rows 3, 4\)"
    ):
        read_customers(path, mapping)


def test_the_shipped_mappings_read_the_real_complete_journey_and_reruns_change_nothing(
    tmp_path: Path,
) -> None:
    customers, report = read_customers(
        DATA / "demographics.parquet", customer_mapping("complete-journey-customers")
    )
    assert report["customers"] == 801 and customers["raw_record"].str.contains('"household_id"').all()
    campaigns, members, report = read_campaigns(
        DATA / "campaign_descriptions.parquet", campaign_mapping("complete-journey-campaigns")
    )
    assert (report["campaigns"], report["members"], report["customers_reached"]) == (27, 6589, 1559)
    reached = set(members["user_id"])
    redemptions, report = read_redemptions(
        DATA / "coupon_redemptions.parquet",
        redemption_mapping("complete-journey-redemptions"),
        reached,
        set(campaigns["campaign_id"]),
    )
    assert report["redemptions"] == 2102
    warehouse = tmp_path / "w.duckdb"
    for _ in range(2):
        counts = load_campaigns(warehouse, campaigns, members, DATA / "campaign_descriptions.parquet")
        counts |= load_redemptions(warehouse, redemptions, DATA / "coupon_redemptions.parquet")
    assert counts == {"campaign_rows": 27, "member_rows": 6589, "redemption_rows": 2102}
    with wh.connect(warehouse, read_only=True) as con:
        start = con.execute("select start_date from raw.campaigns where campaign_id = '18'").fetchone()[0]
    assert pd.Timestamp(start) == pd.Timestamp("2017-10-30")


def test_the_cli_imports_a_kind_and_fails_in_one_line_naming_the_fault(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from personaflow.cli.main import app

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    path, mapping = _campaign_files(tmp_path, "id,kind,from,to\n1,A,2017-01-01,2017-02-01\n")
    ok = CliRunner().invoke(app, ["ingest", str(path), "--kind", "campaigns", "--mapping", str(mapping)])
    assert ok.exit_code == 0, ok.output
    assert '"campaign_rows": 1' in ok.output and '"member_rows": 1' in ok.output
    bad = _write(tmp_path / "red.csv", "customer,id,on\nc1,1,not-a-day\n")
    mapping = _write(tmp_path / "r.toml", REDEMPTIONS_TOML)
    failed = CliRunner().invoke(app, ["ingest", str(bad), "--kind", "redemptions", "--mapping", str(mapping)])
    assert failed.exit_code == 1
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "ingest failed:" in lines[0] and "'not-a-day' is not a date" in lines[0]
    unknown = CliRunner().invoke(app, ["ingest", str(bad), "--kind", "vouchers", "--mapping", str(mapping)])
    assert unknown.exit_code != 0 and "--kind vouchers" in unknown.output


COUPONS_TOML = 'format = "csv"\n[columns]\ncoupon_id = "upc"\nitem_id = "product"\ncampaign_id = "campaign"\n'


def test_a_coupon_row_without_its_product_or_of_an_unknown_campaign_is_refused(tmp_path: Path) -> None:
    mapping = coupon_mapping(_write(tmp_path / "k.toml", COUPONS_TOML))
    empty = _write(tmp_path / "k1.csv", "upc,product,campaign\nu1,p1,1\nu1,,1\n")
    fault = r"k1.csv:2: column 'product' \(ours: item_id\): nan is not a product id"
    with pytest.raises(IngestError, match=fault):
        read_coupons(empty, mapping, {"1"})
    other = _write(tmp_path / "k2.csv", "upc,product,campaign\nu1,p1,1\nu2,p1,9\n")
    fault = r"k2.csv:2: column 'campaign' \(ours: campaign_id\): '9' is not a campaign loaded with --kind"
    with pytest.raises(IngestError, match=fault):
        read_coupons(other, mapping, {"1"})
    assert read_coupons(other, mapping, None)[1]["campaigns"] == 2  # no campaigns loaded: not checked


def test_coupon_repeats_are_dropped_and_counted_and_reruns_change_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", "upc,product,campaign\nu1,p1,1\nu1,p2,1\nu1,p1,1\nu1,p1,2\n")
    frame, report = read_coupons(path, coupon_mapping(_write(tmp_path / "k.toml", COUPONS_TOML)), None)
    assert (report["rows_read"], report["repeats"], report["coupon_rows"]) == (4, 1, 3)
    assert frame["source_row"].tolist() == [1, 2, 4]  # the first of the repeats is kept, with its record
    assert '"product": "p2"' in frame.loc[1, "raw_record"]
    warehouse = tmp_path / "w.duckdb"
    for _ in range(2):
        assert load_coupons(warehouse, stamp(frame, path)) == {"table_rows": 3}


def test_the_shipped_coupon_mapping_reads_the_real_complete_journey_coupons() -> None:
    campaigns, _, _ = read_campaigns(
        DATA / "campaign_descriptions.parquet", campaign_mapping("complete-journey-campaigns")
    )
    frame, report = read_coupons(
        DATA / "coupons.parquet", coupon_mapping("complete-journey-coupons"), set(campaigns["campaign_id"])
    )
    assert (report["rows_read"], report["repeats"], report["coupon_rows"]) == (116204, 4872, 111332)
    assert (report["coupons"], report["products"], report["campaigns"]) == (981, 41857, 27)
    assert not frame.duplicated(["campaign_id", "coupon_id", "item_id"]).any()
    assert frame["raw_record"].str.contains('"coupon_upc"').all()


def test_a_coupon_batch_for_products_not_in_the_catalogue_is_quarantined(tmp_path: Path) -> None:
    from personaflow.core.settings import Settings
    from personaflow.pipeline.shop_tables import import_table
    from personaflow.quality.validate import DataQualityError

    s = Settings(home=tmp_path, features_dir=tmp_path / "features")
    _write(tmp_path / "cat.csv", "sku,name,dept\np1,Milk,DAIRY\np2,Bread,BAKERY\n")
    _write(tmp_path / "cat.toml", 'format = "csv"\n[columns]\nitem_id = "sku"\nname = "name"\n'
           'department = "dept"\n[options]\nvalid_from = "2017-01-01"\n')  # fmt: skip
    import_table("products", tmp_path / "cat.csv", str(tmp_path / "cat.toml"), s, refresh=False)
    mapping = str(_write(tmp_path / "k.toml", COUPONS_TOML))
    good = _write(tmp_path / "good.csv", "upc,product,campaign\nu1,p1,1\nu1,p2,1\n")
    assert import_table("coupons", good, mapping, s, refresh=False)["table_rows"] == 2
    # the product column mapped to the coupon's code: no row names a product of the catalogue
    bad = _write(tmp_path / "bad.csv", "upc,product,campaign\nu7,u7,1\nu8,u8,1\n")
    with pytest.raises(DataQualityError, match="coupons batch .* quarantined"):
        import_table("coupons", bad, mapping, s, refresh=False)
    with wh.connect(wh.location(s), read_only=True) as con:
        assert con.execute("select count(*) from raw.coupons").fetchone()[0] == 2  # unchanged
        assert con.execute("select count(*) from quarantine.coupons").fetchone()[0] == 2
    assert list((s.quarantine_dir / "coupons").glob("*/reasons.json"))
