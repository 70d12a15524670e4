"""Reviews on the scale path's PostgreSQL warehouse (PERSONAFLOW_WAREHOUSE_URL): the same import (a real
slice of the beauty set: repeats dropped), scores, dbt review marts on PostgreSQL (no `numeric` columns),
a re-run that changes nothing, and a quarantined batch moving to quarantine.reviews."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from personaflow.core import settings as config
from personaflow.core import warehouse as wh
from personaflow.pipeline.reviews import import_reviews
from personaflow.quality.validate import DataQualityError

BEAUTY = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "reviews"
    / "amazon-all-beauty"
    / "All_Beauty_5.json.gz"
)


@pytest.fixture
def pg_settings(tmp_path, monkeypatch, postgres_url):
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "home" / "features"))
    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE_URL", postgres_url)
    return config.load()


def test_reviews_import_score_and_marts_on_postgres(pg_settings, tmp_path):
    s = pg_settings
    with gzip.open(BEAUTY, "rt") as handle:
        lines = [next(handle) for _ in range(1500)]
    path = tmp_path / "beauty.jsonl"
    path.write_text("".join(lines))
    records = pd.DataFrame([json.loads(line) for line in lines])
    repeats = int(records.duplicated(["reviewerID", "asin", "unixReviewTime", "reviewText"]).sum())

    first = import_reviews(path, "amazon-all-beauty", s)
    assert first["repeats_dropped"] == repeats and first["rows"] == 1500 - repeats
    customers = records["reviewerID"].nunique()
    assert first["marts"]["rows"]["marts.customer_reviews"] == customers
    again = import_reviews(path, "amazon-all-beauty", s, marts=False)
    assert again["replay"] and again["source_rows"] == 1500 - repeats
    with wh.connect(s.warehouse_url, read_only=True) as con:
        numeric = con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' and table_name like '%reviews' and data_type = 'numeric'"
        ).fetchall()
        assert numeric == []
        [(n, share)] = con.execute(
            "select count(*), max(share_negative) from marts.customer_reviews"
        ).fetchall()
        assert n == customers and 0 < share <= 1

    empty = tmp_path / "empty.jsonl"  # most reviews without words: quarantined
    wordless = [{"reviewerID": f"Z{i}", "asin": "B1", "overall": 5, "reviewText": ""} for i in range(6)]
    empty.write_text("".join(json.dumps(r) + "\n" for r in wordless))
    with pytest.raises(DataQualityError, match="quarantined"):
        import_reviews(empty, "amazon-all-beauty", s, score=False, marts=False)
    with wh.connect(s.warehouse_url, read_only=True) as con:
        assert con.execute("select count(*) from quarantine.reviews").fetchone()[0] == 6
        assert con.execute("select count(*) from raw.reviews where user_id like 'Z%'").fetchone()[0] == 0
