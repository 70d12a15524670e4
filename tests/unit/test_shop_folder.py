"""`personaflow history FOLDER`: how a folder's tables are recognised (a manifest, or file names), what
is refused with a named reason, and the events options a manifest uses (constants, line_total)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.formats import read_events
from personaflow.ingest.shop_folder import read_folder

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "complete-journey"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_tables_are_recognised_by_file_name_with_mappings_made_from_their_headers(tmp_path: Path) -> None:
    folder = _write(tmp_path / "shop", {
        "events.csv": "user_id,item_id,event_type,event_ts\nc1,p1,purchase,2024-01-01\n",
        "products.csv": "item_id,category,colour\np1,tea,green\n",
        "campaigns.csv": "campaign_id,start_date,end_date\n1,2024-01-01,2024-01-09\n",
        "campaign_members.csv": "campaign_id,user_id\n1,c1\n",
        "notes.txt": "not a table",
    })  # fmt: skip
    shop = read_folder(folder, None, tmp_path / "mappings")
    assert shop.events.path.name == "events.csv" and shop.events.format == "csv" and shop.manifest is None
    assert [t.kind for t in shop.tables] == ["products", "campaigns"]  # the load order, not the file order
    products = tomllib.loads(Path(shop.tables[0].mapping).read_text())
    assert products["columns"] == {"item_id": "item_id", "category": "category"}  # ours it has, no more
    campaigns = tomllib.loads(Path(shop.tables[1].mapping).read_text())
    assert campaigns["members"]["file"] == "campaign_members.csv"
    assert shop.unused == ["notes.txt"]  # listed, never silently taken


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"customers.csv": "user_id\n"}, "no events.* or transactions.* file"),
        ({"events.csv": "x\n", "transactions.parquet": "x"}, "both events.* and transactions.*"),
        ({"events.csv": "x\n", "events.parquet": "x"}, "events.csv, events.parquet are all named events"),
        ({"events.csv": "x\n", "campaigns.csv": "campaign_id\n"}, "needs campaign_members.* beside it"),
    ],
)
def test_a_folder_that_cannot_be_read_by_name_says_why(tmp_path: Path, files: dict, message: str) -> None:
    with pytest.raises(IngestError, match=message):
        read_folder(_write(tmp_path / "shop", files), None, tmp_path / "mappings")


def test_a_manifest_in_the_folder_wins_and_its_faults_are_named(tmp_path: Path) -> None:
    folder = _write(tmp_path / "shop", {"till.csv": "a\n", "cat.csv": "b\n", "cat.toml": 'format = "csv"\n'})
    (folder / "personaflow.toml").write_text(
        '[events]\nfile = "till.csv"\nmapping = "cust=user_id"\nconstants = { event_type = "purchase" }\n'
        '[products]\nfile = "cat.csv"\nmapping = "cat.toml"\n'
    )
    shop = read_folder(folder, None, tmp_path / "mappings")
    assert shop.manifest == folder / "personaflow.toml" and shop.events.constants == {
        "event_type": "purchase"
    }
    assert shop.tables[0].mapping == str(folder / "cat.toml")  # a mapping file beside the manifest
    for text, message in (
        ('[products]\nfile = "cat.csv"\nmapping = "x"\n', r"needs an \[events\] section"),
        ('[events]\nfile = "gone.csv"\n', r"\[events\] file .*gone.csv not found"),
        ('[events]\nfile = "till.csv"\n[vouchers]\nfile = "c.csv"\n', r"\[vouchers\] not a table we read"),
        ('[events]\nfrom = "reviews"\n', r'\[events\] from = "reviews" needs a \[reviews\] section'),
        ('[events]\nfile = "till.csv"\n[products]\nfile = "cat.csv"\n', r"\[products\] needs mapping"),
    ):
        (folder / "personaflow.toml").write_text(text)
        with pytest.raises(IngestError, match=message):
            read_folder(folder, None, tmp_path / "mappings")
    shipped = "shipped: amazon-all-beauty-shop, complete-journey"
    with pytest.raises(IngestError, match=f"manifest nowhere: no such file; {shipped}"):
        read_folder(folder, "nowhere", tmp_path / "mappings")


def test_the_shipped_complete_journey_manifest_names_all_its_tables() -> None:
    shop = read_folder(DATA, "complete-journey", Path("/nonexistent"))
    assert shop.describe()["tables"] == {
        "events": "transactions.parquet", "customers": "demographics.parquet", "products": "products.parquet",
        "campaigns": "campaign_descriptions.parquet", "coupons": "coupons.parquet",
        "redemptions": "coupon_redemptions.parquet",
    }  # fmt: skip
    assert shop.unused == ["PROVENANCE.md"]  # campaigns.parquet: the members file


def test_the_shipped_amazon_manifest_takes_the_events_from_the_reviews() -> None:
    folder = DATA.parent / "reviews" / "amazon-all-beauty"
    shop = read_folder(folder, "amazon-all-beauty-shop", Path("/nonexistent"))
    assert shop.events.format == "reviews" and shop.events.path == folder / "All_Beauty_5.json.gz"
    assert [(t.kind, t.mapping) for t in shop.tables] == [("reviews", "amazon-all-beauty")]
    assert shop.unused == ["PROVENANCE.md"]


def test_each_review_is_one_view_event_and_one_without_reviewer_or_time_is_counted() -> None:
    from personaflow.ingest.reviews import review_events

    reviews = pd.DataFrame({
        "review_id": ["r1", "r2", "r3", "r4"], "user_id": ["a", "a", None, "b"],
        "item_id": ["p1", "p2", "p1", "p1"],
        "review_ts": pd.to_datetime(["2018-01-02", "2018-01-01", "2018-01-03", None]),
    })  # fmt: skip
    events, counts = review_events(reviews)
    assert counts == {"reviews": 4, "events": 2, "without_reviewer": 1, "without_time": 1}
    assert events["event_id"].tolist() == ["review-r2", "review-r1"]  # in time order
    assert set(events["event_type"]) == {"view"} and "price" not in events
    assert events["session_id"].tolist() == events["event_id"].tolist()  # each review its own visit


def test_constants_fill_a_missing_column_and_line_total_gives_the_unit_price(tmp_path: Path) -> None:
    path = tmp_path / "till.csv"
    path.write_text(
        "hh,sku,at,qty,amount,event_type_x\n1,p1,2024-01-01 10:00,2,5.0,x\n1,p2,2024-01-01,0,3.0,x\n"
    )
    mapping = {"hh": "user_id", "sku": "item_id", "at": "event_ts", "qty": "quantity", "amount": "line_total"}
    frame, _ = read_events(path, "csv", mapping, constants={"event_type": "purchase"})
    assert frame["event_type"].tolist() == ["purchase", "purchase"]
    assert frame["price"].tolist() == [2.5, 3.0]  # 5.0 over 2 units; a line of 0 units keeps its amount
    with pytest.raises(ValueError, match="constants colour: not ours"):
        read_events(path, "csv", mapping, constants={"colour": "red"})
    parquet = tmp_path / "till.parquet"
    pd.DataFrame(
        {"user_id": ["1"], "item_id": ["p"], "event_ts": ["2024-01-01"], "event_type": ["view"]}
    ).to_parquet(parquet)
    frame, _ = read_events(parquet, "parquet", {}, constants={"event_type": "purchase"})
    assert frame["event_type"].tolist() == ["view"]  # the export's own column wins over a constant
