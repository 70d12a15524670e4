"""Live events over real HTTP: event in -> the next /profile and /recommend reflect it -> the event is in
raw.events after the nightly load of its day."""

from datetime import UTC, datetime

import duckdb
import httpx
import pytest

from personaflow.core.landing import live_path
from personaflow.ingest.live import read_live
from personaflow.ingest.load import load_batch
from tests._serving_setup import running_server
from tests._warehouse import make_events, write_landing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("live")) as srv:
        yield srv


def post(server, path: str, body) -> httpx.Response:
    resp = httpx.post(server["base"] + path, json=body, headers=server["auth"], timeout=10)
    return resp


def test_event_changes_profile_and_recommendations_then_lands_in_raw(server):
    user, today = server["users"][4], datetime.now(UTC).date()
    before = post(server, "/profile", {"user_id": user}).json()
    assert before["live_events"] == 0 and before["n_views"] == 9 and before["n_purchases"] == 1

    first = post(server, "/events", {"user_id": user, "item_id": server["items"][7], "event_type": "view"})
    assert first.status_code == 200, first.text
    after_view = post(server, "/profile", {"user_id": user}).json()
    assert after_view["n_views"] == 10 and after_view["live_events"] == 1
    assert after_view["churn_risk"] == "low" and after_view["churn_basis"] == "live"
    assert after_view["churn_score"] == before["churn_score"] is not None  # the nightly score stays
    assert after_view["last_event_ts"].startswith(today.isoformat())

    top = post(server, "/recommend", {"user_id": user, "k": 1, "exclude_purchased": True}).json()["items"][0]
    bought = post(
        server,
        "/events",
        {"user_id": user, "item_id": top["item_id"], "event_type": "purchase", "quantity": 2, "price": 4.5},
    ).json()
    assert bought["live_events"] == 2 and bought["batch_date"] == today.isoformat()
    after_buy = post(server, "/profile", {"user_id": user}).json()
    assert after_buy["n_purchases"] == 2 and after_buy["monetary"] == pytest.approx(50.0 + 9.0)
    again = post(server, "/recommend", {"user_id": user, "k": 5, "exclude_purchased": True}).json()
    assert top["item_id"] not in {it["item_id"] for it in again["items"]} and again["excluded"] == 1

    returned = post(
        server, "/events", {"user_id": user, "item_id": top["item_id"], "event_type": "return", "price": 4.5}
    )
    assert returned.status_code == 200
    assert post(server, "/profile", {"user_id": user}).json()["n_returns"] == 1

    # Durable: every accepted event is a complete line of today's landing file already.
    landed = read_live(live_path(server["home"] / "landing", today))
    assert {first.json()["event_id"], bought["event_id"], returned.json()["event_id"]} <= {
        r["event_id"] for r in landed
    }

    # The nightly load of today's batch takes the live events with it, returns included.
    landing, warehouse = server["home"] / "landing", server["home"] / "warehouse.duckdb"
    write_landing(make_events(today, 5), landing, today)
    result = load_batch(warehouse, landing, today)
    assert (result["live_rows"], result["live_returns"]) == (len(landed), 1), result
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select event_id, event_type, quantity, price, batch_date from raw.events "
            "where user_id = ? and event_id like 'live-%'",
            [user],
        ).fetchall()
    assert sorted(rows) == sorted(
        [
            (first.json()["event_id"], "view", 1, 5.0 + 7, today),
            (bought["event_id"], "purchase", 2, 4.5, today),
            (returned.json()["event_id"], "return", 1, 4.5, today),
        ]
    )
    assert load_batch(warehouse, landing, today)["rows"] == result["rows"]  # idempotent re-run


def test_live_only_user_gets_a_profile_and_a_flagged_fallback(server):
    assert post(server, "/profile", {"user_id": "brand-new"}).status_code == 404
    event = {"user_id": "brand-new", "item_id": server["items"][0], "event_type": "cart"}
    assert post(server, "/events", event).status_code == 200
    profile = post(server, "/profile", {"user_id": "brand-new"}).json()
    assert profile["segment"] is None and profile["n_carts"] == 1 and profile["live_events"] == 1
    recs = post(server, "/recommend", {"user_id": "brand-new", "k": 3}).json()
    assert recs["fallback"] == "popularity" and len(recs["items"]) == 3


def test_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / "events.jsonl"
    good = '{"event_id":"e1","user_id":"u","item_id":"i","event_type":"view",'
    good += '"event_ts":"2026-01-01 00:00:00","session_id":"s","quantity":1,"price":1.0}'
    path.write_text(good + "\n" + '{"event_id":"e2","us')
    assert [r["event_id"] for r in read_live(path)] == ["e1"]
    path.write_text(good + "\nnot json\n" + good + "\n")
    with pytest.raises(ValueError, match="events.jsonl:2"):
        read_live(path)


def test_concurrent_events_are_counted_exactly_in_groups(server):
    """SQLite: events fsynced in one group commit are counted by one read-modify-write of their users'
    buckets; none is lost, repeated users included."""
    from concurrent.futures import ThreadPoolExecutor

    users, n = server["users"][12:15], 36

    def send(i):
        body = {"user_id": users[i % 3], "item_id": server["items"][i % 4], "event_type": "view",
                "session_id": f"burst-{i}"}  # fmt: skip
        with httpx.Client() as c:
            resp = c.post(server["base"] + "/events", json=body, headers=server["auth"], timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()["live_events"]

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(send, range(n)))
    for user in users:
        assert post(server, "/profile", {"user_id": user}).json()["live_events"] == n // 3
    assert sorted(answers)[-1] == n // 3  # each answer counts its own event and those before it
