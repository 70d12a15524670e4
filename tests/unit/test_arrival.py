"""The nightly sensor's question: has the day's file arrived, is it late, or is the data historic?"""

from datetime import date, datetime

from personaflow.pipeline.arrival import batch_arrival


def _land(landing, day: date) -> None:
    path = landing / "events" / f"events_{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("event_id\n")


def test_arrived_waiting_missing_and_historic(tmp_path):
    landing = tmp_path / "landing"
    _land(landing, date(2026, 11, 28))
    day = date(2026, 11, 29)
    assert batch_arrival(landing, day, datetime(2026, 11, 30, 3), wait_hours=6).status == "waiting"
    missing = batch_arrival(landing, day, datetime(2026, 11, 30, 6), wait_hours=6)
    assert missing.status == "missing" and "2026-11-30 06:00" in missing.reason
    assert "personaflow trigger --date 2026-11-29" in missing.reason
    _land(landing, day)
    assert batch_arrival(landing, day, datetime(2026, 11, 30, 6), wait_hours=6).status == "arrived"
    # a landing area that ended long before the run's day (a historic import): nothing to wait for
    historic = batch_arrival(landing, date(2026, 12, 31), datetime(2027, 1, 1, 1), wait_hours=6)
    assert historic.status == "historic" and "ends on 2026-11-29" in historic.reason
