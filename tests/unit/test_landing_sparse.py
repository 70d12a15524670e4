"""A long, sparse log lands only its days with events (personaflow/ingest/landing.py `empty_days`): the
whole Amazon All Beauty review set (4,216 reviews over 5,085 days) was 5,085 batches, each loaded and
validated, and did not finish in 48 min. A dense log (a shop closed now and then) keeps its header-only
files for the closed days, as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from personaflow.core.landing import batch_dates
from personaflow.ingest.landing import import_events, lands_empty_days


def _export(tmp_path: Path, days: list[str]) -> Path:
    path = tmp_path / "events.csv"
    lines = [f"c{i},p{i % 3},view,{day} 10:00:00" for i, day in enumerate(days)]
    path.write_text("user_id,item_id,event_type,event_ts\n" + "\n".join(lines) + "\n")
    return path


SPARSE = ["2015-01-01", "2015-03-10", "2015-03-10", "2015-12-31"]  # 3 days with events of 365


def test_a_sparse_log_lands_only_its_days_with_events(tmp_path: Path) -> None:
    report = import_events(_export(tmp_path, SPARSE), "csv", tmp_path / "auto", empty_days="auto")
    batches = report["batches"]
    assert (batches["days"], batches["days_with_events"]) == (365, 3)
    assert (batches["written"], batches["empty_days"], batches["empty_days_not_landed"]) == (3, 0, 362)
    landed_days = [d.isoformat() for d in batch_dates(tmp_path / "auto")]
    assert landed_days == ["2015-01-01", "2015-03-10", "2015-12-31"]
    assert (batches["first_day"], batches["last_day"]) == ("2015-01-01", "2015-12-31")
    # asked for, the empty days land as header-only files, as a dense log's do
    landed = import_events(_export(tmp_path, SPARSE), "csv", tmp_path / "land", empty_days="land")
    assert (landed["batches"]["written"], landed["batches"]["empty_days"]) == (365, 362)
    assert len(batch_dates(tmp_path / "land")) == 365


def test_a_dense_log_keeps_its_closed_days_and_the_rule_is_stated() -> None:
    assert lands_empty_days("auto", days_with_events=305, span_days=374)  # Online Retail: Sundays closed
    assert not lands_empty_days("auto", days_with_events=3, span_days=365)
    assert lands_empty_days("land", 3, 365) and not lands_empty_days("skip", 305, 374)
    with pytest.raises(ValueError, match="empty_days='sometimes'"):
        lands_empty_days("sometimes", 3, 365)


def test_the_closed_days_of_a_dense_log_still_land_on_auto(tmp_path: Path) -> None:
    days = [f"2015-01-{d:02d}" for d in (1, 2, 3, 5, 6, 7, 8, 9, 10)]  # the 4th closed
    report = import_events(_export(tmp_path, days), "csv", tmp_path / "landing", empty_days="auto")
    assert (report["batches"]["empty_days"], report["batches"]["empty_days_not_landed"]) == (1, 0)
    assert len(batch_dates(tmp_path / "landing")) == 10
    header_only = (tmp_path / "landing" / "events" / "events_2015-01-04.csv").read_text()
    assert header_only.count("\n") == 1
