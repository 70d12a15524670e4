"""Reviews import (personaflow/ingest/reviews.py, personaflow/quality/reviews.py): bad input is named by
file, record and column and nothing loads; exact repeats are dropped and counted; a re-run changes
nothing; a batch of mostly empty texts is quarantined by its Great Expectations check. Real slices of
../shared/data/reviews where the fault is a real one (the beauty set's repeats)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from personaflow.core import settings as config
from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.reviews import load_mapping, load_reviews, read_reviews, sha256
from personaflow.pipeline.reviews import import_reviews
from personaflow.quality.validate import DataQualityError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "reviews"
BEAUTY = DATA / "amazon-all-beauty" / "All_Beauty_5.json.gz"
CLOTHING = DATA / "womens-clothing" / "womens_clothing_ecommerce_reviews.csv.gz"
HEADER = ",Clothing ID,Age,Title,Review Text,Rating,Recommended IND,Department Name"


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for name, value in {
        "PERSONAFLOW_HOME": home, "AIRFLOW_HOME": home / "airflow", "BENTOML_HOME": home / "bentoml",
        "PERSONAFLOW_FEATURES_DIR": home / "features",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("PERSONAFLOW_WAREHOUSE", raising=False)
    monkeypatch.delenv("PERSONAFLOW_WAREHOUSE_URL", raising=False)
    return config.load()


def _clothing(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "clothing.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


GOOD = [
    '0,767,33,,"Absolutely wonderful - silky and sexy",4,1,Intimate',
    '1,1080,34,Love it,"Love this dress!\nIt is sooo pretty.",5,1,Dresses',  # a newline inside quotes
    '2,1077,60,Major flaws,"Ordered my usual size, outrageously small.",2,0,Dresses',
]


def test_a_good_csv_reads_with_newlines_inside_values(tmp_path):
    frame, report = read_reviews(_clothing(tmp_path, GOOD), load_mapping("womens-clothing"))
    assert report["rows"] == 3 and report["repeats_dropped"] == 0 and report["empty_text"] == 0
    assert frame["text"].iloc[1] == "Love this dress!\nIt is sooo pretty."
    assert frame["rating"].tolist() == [4.0, 5.0, 2.0]
    assert frame["recommended"].tolist() == [True, True, False]
    assert frame["user_id"].isna().all()  # the clothing set has no customer
    assert json.loads(frame["raw_record"].iloc[2])["Clothing ID"] == "1077"  # raw kept as it came


def test_missing_column_names_the_column_and_the_mapping(tmp_path):
    path = _clothing(
        tmp_path, ["0,767,33,,text,4,1"], header=",Clothing ID,Age,Title,Review Text,Rating,Recommended IND"
    )
    with pytest.raises(
        IngestError, match=r"missing column\(s\) Department Name \(ours: category\).*womens-clothing"
    ):
        read_reviews(path, load_mapping("womens-clothing"))


@pytest.mark.parametrize("rating", ["6", "0", "five", "-1"])
def test_bad_rating_names_record_and_field(tmp_path, rating):
    rows = [*GOOD, f'3,1077,41,,"Fine dress",{rating},1,Dresses']
    with pytest.raises(
        IngestError, match=rf":4: column 'Rating' \(ours: rating\): '{rating}' is not a rating from 1 to 5"
    ):
        read_reviews(_clothing(tmp_path, rows), load_mapping("womens-clothing"))


def test_empty_product_and_bad_age_are_named(tmp_path):
    with pytest.raises(IngestError, match=r":2: column 'Clothing ID' \(ours: item_id\)"):
        read_reviews(
            _clothing(tmp_path, [GOOD[0], '1,,34,,"x",5,1,Dresses']), load_mapping("womens-clothing")
        )
    with pytest.raises(IngestError, match=r":1: column 'Age' \(ours: reviewer_age\): 'old'"):
        read_reviews(_clothing(tmp_path, ['0,767,old,,"x",5,1,Dresses']), load_mapping("womens-clothing"))


def test_a_truncated_record_is_named(tmp_path):
    with pytest.raises(IngestError, match=r"record 2: expected 8 fields, found 3"):
        read_reviews(_clothing(tmp_path, [GOOD[0], "1,1080,34"]), load_mapping("womens-clothing"))


def test_empty_text_is_kept_and_counted(tmp_path):
    rows = [*GOOD, "3,1077,41,,,5,1,Dresses", "4,1077,41,Runs small,,3,1,Dresses"]
    frame, report = read_reviews(_clothing(tmp_path, rows), load_mapping("womens-clothing"))
    assert report["rows"] == 5 and report["empty_text"] == 1  # a title alone is words too
    assert frame.loc[frame["review_id"] == "3", "rating"].item() == 5.0


def test_beauty_slice_repeats_are_dropped_and_counted(tmp_path):
    """The real beauty set: the first 2,000 lines, its repeats (same reviewer, product, time, text)."""
    with gzip.open(BEAUTY, "rt") as handle:
        lines = [next(handle) for _ in range(2000)]
    path = tmp_path / "beauty.jsonl"
    path.write_text("".join(lines))
    records = pd.DataFrame([json.loads(line) for line in lines])
    expected = int(records.duplicated(["reviewerID", "asin", "unixReviewTime", "reviewText"]).sum())
    assert expected > 0  # the slice holds real repeats
    frame, report = read_reviews(path, load_mapping("amazon-all-beauty"))
    assert report["repeats_dropped"] == expected and report["rows"] == 2000 - expected
    assert frame["review_id"].is_unique and frame["review_ts"].notna().all()
    assert frame["review_ts"].min() >= pd.Timestamp("2004-01-01")


def test_a_bad_json_line_and_a_bad_time_are_named(tmp_path):
    path = tmp_path / "r.jsonl"
    good = {
        "reviewerID": "A1",
        "asin": "B1",
        "overall": 5.0,
        "reviewText": "nice",
        "unixReviewTime": 1472688000,
    }
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(IngestError, match=r"r.jsonl: line 2: not a JSON object"):
        read_reviews(path, load_mapping("amazon-all-beauty"))
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "unixReviewTime": "yesterday"}) + "\n")
    with pytest.raises(
        IngestError, match=r":2: column 'unixReviewTime' \(ours: review_ts\): 'yesterday' is not a time"
    ):
        read_reviews(path, load_mapping("amazon-all-beauty"))


def test_a_shop_id_naming_two_reviews_is_an_error(tmp_path):
    rows = [GOOD[0], '0,1080,34,,"another review",5,1,Dresses']
    with pytest.raises(IngestError, match=r"review_id '0' names different reviews"):
        read_reviews(_clothing(tmp_path, rows), load_mapping("womens-clothing"))


def test_a_shop_mapping_file_is_checked(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('format = "csv"\n[columns]\nitem_id = "sku"\nstars = "Stars"\ntext = "Body"\n')
    with pytest.raises(IngestError, match=r"\[columns\] stars not ours"):
        load_mapping(bad)
    bad.write_text('format = "xml"\n[columns]\nitem_id = "sku"\ntext = "Body"\n')
    with pytest.raises(IngestError, match=r"format = 'xml'"):
        load_mapping(bad)
    with pytest.raises(IngestError, match=r"shipped: amazon-all-beauty, womens-clothing"):
        load_mapping("no-such-mapping")


def test_loading_twice_changes_nothing(tmp_path, home):
    path = _clothing(tmp_path, GOOD)
    mapping = load_mapping("womens-clothing")
    frame, report = read_reviews(path, mapping)
    first = load_reviews(home.warehouse, frame, report, sha256(path))
    again = load_reviews(home.warehouse, *read_reviews(path, mapping), sha256(path))
    assert not first["replay"] and again["replay"]
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("select count(*), count(distinct review_id) from raw.reviews").fetchone() == (3, 3)
        assert con.execute("select count(*) from raw.review_batches").fetchone() == (1,)


def test_mostly_empty_texts_are_quarantined_by_the_batch_check(tmp_path, home):
    """A mapping that points `text` at the wrong column reads fine, row by row: the batch check catches
    it, the rows move to quarantine.reviews, and reasons.json says why."""
    rows = [f"{i},767,33,,,5,1,Tops" for i in range(8)] + GOOD[:2]  # ids 0, 1 repeat: give GOOD new ids
    rows[-2:] = ['8,767,33,,"nice",4,1,Tops', '9,767,33,,"lovely",5,1,Tops']
    with pytest.raises(DataQualityError, match=r"quarantined.*any_text") as failed:
        import_reviews(_clothing(tmp_path, rows), "womens-clothing", home, score=False, marts=False)
    folder = failed.value.quarantine_path
    assert (folder / "reasons.json").exists() and len((folder / "rows.jsonl").read_text().splitlines()) == 10
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.reviews").fetchone() == (0,)
        assert con.execute("select count(*) from quarantine.reviews").fetchone() == (10,)
        assert con.execute("select status from raw.review_batches").fetchone() == ("quarantined",)


def test_json_lines_without_a_required_field_are_refused_an_optional_one_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"reviewerID": "A1", "asin": "B1", "overall": 4, "summary": "ok"}) + "\n")
    with pytest.raises(IngestError, match=r"no record has field\(s\) reviewText \(ours: text\)"):
        read_reviews(path, load_mapping("amazon-all-beauty"))
    path.write_text(json.dumps({"reviewerID": "A1", "asin": "B1", "overall": 4, "reviewText": "ok"}) + "\n")
    frame, report = read_reviews(path, load_mapping("amazon-all-beauty"))
    assert len(frame) == 1 and "summary (ours: title)" in report["absent_fields"]


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path, home):
    from typer.testing import CliRunner

    from personaflow.cli import app

    path = _clothing(tmp_path, [*GOOD, '3,1077,41,,"Fine",9,1,Dresses'])
    run = CliRunner().invoke(app, ["ingest", str(path), "--kind", "reviews", "--mapping", "womens-clothing"])
    assert run.exit_code == 1
    assert "ingest failed:" in run.output and ":4: column 'Rating' (ours: rating): '9'" in run.output
    run = CliRunner().invoke(app, ["ingest", str(path), "--kind", "reviews"])
    assert run.exit_code == 2 and "--mapping" in run.output
    run = CliRunner().invoke(app, ["ingest", str(path), "--kind", "vouchers"])
    assert run.exit_code == 2 and "events, reviews" in run.output
