"""transform.BUILT_ROWS, the rows each model held after the last successful dbt build, and the churn stage
that skips on it without opening a Spark warehouse (a JVM start per night on one machine: issue 24)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from personaflow.core.settings import Settings
from personaflow.pipeline import profiles
from personaflow.pipeline.transform import BUILT_ROWS, _record_rows, built_rows, state_dir

DAY = date(2026, 9, 21)


def test_the_record_names_each_models_rows_for_its_day_only(tmp_path: Path) -> None:
    _record_rows(tmp_path, DAY, {"marts.churn_labels": 0, "marts.user_features": 301})
    assert built_rows(tmp_path, "marts.churn_labels", DAY) == 0
    assert built_rows(tmp_path, "marts.user_features", DAY) == 301
    # another day, a model the run did not build, a run without an as-of day: unknown, not zero
    assert built_rows(tmp_path, "marts.churn_labels", date(2026, 9, 22)) is None
    assert built_rows(tmp_path, "marts.sessions", DAY) is None
    _record_rows(tmp_path, None, {"marts.churn_labels": 0})
    assert built_rows(tmp_path, "marts.churn_labels", DAY) is None
    assert not (tmp_path / f"{BUILT_ROWS}.partial").exists()


@pytest.mark.parametrize(
    "text", [None, "", "{not json", "[1, 2]", '{"marts.churn_labels": {"as_of": "2026-09-21"}}']
)
def test_no_record_or_a_broken_one_is_unknown(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        (tmp_path / BUILT_ROWS).write_text(text)
    assert built_rows(tmp_path, "marts.churn_labels", DAY) is None


def _no_warehouse(*args, **kwargs):
    raise AssertionError("the warehouse was opened")


def test_churn_on_spark_skips_on_an_empty_build_without_opening_the_warehouse(tmp_path, monkeypatch) -> None:
    s = Settings(home=tmp_path / "home", warehouse_url="spark")
    state_dir(s).mkdir(parents=True)
    _record_rows(state_dir(s), DAY, {"marts.churn_labels": 0})
    monkeypatch.setattr(profiles, "read_mart", _no_warehouse)
    monkeypatch.setattr(profiles.wh, "connect", _no_warehouse)
    result = profiles.churn(DAY, s)
    assert result["status"] == "skipped"
    assert "marts.churn_labels is empty (0 rows after the dbt build as of 2026-09-21)" in result["reason"]
    assert "not longer than the 90-day churn horizon" in result["reason"]
    assert Path(result["report"]).is_file()


@pytest.mark.parametrize(
    ("warehouse_url", "record"),
    [
        ("spark", {"marts.churn_labels": 12}),  # rows: the model is trained on them
        ("spark", {"marts.user_features": 0}),  # no word on churn_labels (e.g. a review-marts run since)
        ("", {"marts.churn_labels": 0}),  # DuckDB: asking costs nothing, and the reason names the span
    ],
)
def test_otherwise_churn_reads_the_mart(tmp_path, monkeypatch, warehouse_url: str, record: dict) -> None:
    s = Settings(home=tmp_path / "home", warehouse_url=warehouse_url)
    state_dir(s).mkdir(parents=True)
    _record_rows(state_dir(s), DAY, record)
    asked: list[str] = []

    def read_mart(where, sql, params):
        asked.append(sql)
        return pd.DataFrame({"horizon_days": pd.Series([], dtype="int64")})

    monkeypatch.setattr(profiles, "read_mart", read_mart)
    monkeypatch.setattr(profiles, "_log_span", lambda where, as_of: "2026-09-01 .. 2026-09-21, 21 days")
    result = profiles.churn(DAY, s)
    assert asked == ["select * from marts.churn_labels"]
    assert result["status"] == "skipped" and "(2026-09-01 .. 2026-09-21, 21 days)" in result["reason"]
