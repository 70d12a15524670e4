"""The scale path of serving: Feast's online store on a real Redis, live counters changed atomically
there, the /events dedupe shared by workers, group commit of the landing file, and a real `bentoml
serve` with two workers answering from the same store."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import httpx
import pytest
import redis

from personaflow.core.feature_store import feast_redis_connection
from personaflow.core.landing import live_path
from personaflow.ingest.live import LiveLog, read_live
from personaflow.serving.live_counters import RedisCounters, RedisSeen
from tests._serving_setup import running_server

DAY = date(2026, 12, 1)


def event(n: int, user: str = "u1", kind: str = "view", price: float = 2.5) -> dict:
    return {
        "event_id": f"live-{n}",
        "user_id": user,
        "item_id": f"item-{n % 7}",
        "event_type": kind,
        "event_ts": f"{DAY} 10:00:{n % 60:02d}",
        "session_id": f"s-{n}",
        "quantity": 2,
        "price": price,
        "received_at": "2026-12-01T10:00:00+00:00",
    }


def at_once(n: int, fn) -> list:
    """Run fn(i) for i < n from n threads released together."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_group_commit_lands_every_event_with_fewer_fsyncs(tmp_path):
    log = LiveLog(tmp_path)
    results = at_once(48, lambda i: log.append_once(DAY, event(i)))
    assert all(earlier is None for _, earlier in results)
    landed = read_live(live_path(tmp_path, DAY))
    assert sorted(r["event_id"] for r in landed) == sorted(f"live-{i}" for i in range(48))
    assert log.appended == 48 and 1 <= log.fsyncs < 48, log.fsyncs
    # a retry of an accepted event is answered with the first one's id and not written again
    assert log.append_once(DAY, {**event(3), "event_id": "live-retry"})[1] == "live-3"
    assert len(read_live(live_path(tmp_path, DAY))) == 48
    # copies sent at once (one batch) store one line; the others name it
    copies = [log.submit(DAY, {**event(100), "event_id": f"live-copy-{k}"}) for k in range(5)]
    answers = [f.result()[1] for f in copies]
    first = next(f"live-copy-{k}" for k, a in enumerate(answers) if a is None)
    assert sorted(answers, key=str) == sorted([None] + [first] * 4, key=str)
    assert len(read_live(live_path(tmp_path, DAY))) == 49


def test_redis_counters_count_every_concurrent_event(redis_url):
    counters = RedisCounters(redis.Redis.from_url(redis_url))
    kinds = ["view", "cart", "purchase", "return"]
    at_once(40, lambda i: counters.record("u1", DAY, event(i, kind=kinds[i % 4]), None))
    buckets, last = counters.read("u1")
    day = buckets[DAY.isoformat()]
    assert (day["n_views"], day["n_carts"], day["n_purchases"], day["n_returns"], day["n_events"]) == (
        10, 10, 10, 10, 40,
    )  # fmt: skip
    assert day["revenue"] == pytest.approx(0.0)  # ten purchases and ten returns of 2 x 2.5
    assert sorted(day["purchased"]) == sorted({f"item-{i % 7}" for i in range(2, 40, 4)})
    assert last == f"{DAY} 10:00:39"
    # Once the nightly features hold DAY, the next event's write drops it and counts only its own day.
    assert counters.record("u1", date(2026, 12, 2), event(99), as_of=DAY) == 1
    assert list(counters.read("u1")[0]) == ["2026-12-02"]


def test_two_logs_sharing_redis_dedupe_and_append_whole_lines(redis_url, tmp_path):
    """Two workers: each its own LiveLog and Redis client, one landing folder."""
    logs = [LiveLog(tmp_path, seen=RedisSeen(redis.Redis.from_url(redis_url))) for _ in range(2)]
    at_once(40, lambda i: logs[i % 2].append_once(DAY, event(i)))
    retry = logs[1].append_once(DAY, {**event(0), "event_id": "live-again"})
    assert retry[1] == "live-0"  # first written through the other log
    landed = read_live(live_path(tmp_path, DAY))  # raises on a line torn by interleaving
    assert sorted(r["event_id"] for r in landed) == sorted(f"live-{i}" for i in range(40))


def test_redis_url_becomes_feasts_connection_string():
    assert feast_redis_connection("redis://:s3cret@10.0.0.5:6380/2") == "10.0.0.5:6380,db=2,password=s3cret"
    with pytest.raises(ValueError, match="PERSONAFLOW_REDIS_URL"):
        feast_redis_connection("http://localhost:6379")


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # db 0 only: the celery stacks keep their broker and store on db 1 and 2
    env = {"PERSONAFLOW_REDIS_URL": redis_server.url, "PERSONAFLOW_SERVE_WORKERS": "2"}
    with running_server(tmp_path_factory.mktemp("redis-serve"), extra_env=env) as srv:
        yield {**srv, "redis": client}


def ask(client: httpx.Client, server, path: str, body) -> httpx.Response:
    return client.post(server["base"] + path, json=body, headers=server["auth"], timeout=10)


def test_materialized_into_redis_and_profile_reads_it(server):
    assert not (server["home"] / "features" / "online_store.db").exists()  # nothing went to SQLite
    assert server["redis"].dbsize() > len(server["users"])  # a hash per user and item
    with httpx.Client() as c:
        profile = ask(c, server, "/profile", {"user_id": server["users"][3]}).json()
    # users[3] in the marts: n = 3 -> frequency 4, monetary 40.0, 8 views, Hibernating
    assert (profile["frequency"], profile["monetary"], profile["n_views"]) == (4, 40.0, 8)
    assert profile["segment"] == "Hibernating" and profile["live_events"] == 0


def test_an_event_sent_to_one_worker_is_seen_by_the_other(server):
    user = server["users"][5]
    answers: dict[int, list[dict]] = {}
    sent_by = None
    # Each connection stays on the worker that accepted it: /metadata names it, /profile then reads.
    for attempt in range(60):  # noqa: B007 (named in the failure)
        with httpx.Client() as c:
            pid = ask(c, server, "/metadata", {}).json()["worker_pid"]
            if sent_by is None:
                sent = ask(c, server, "/events", {"user_id": user, "item_id": server["items"][1],
                                                  "event_type": "view"})  # fmt: skip
                assert sent.status_code == 200, sent.text
                sent_by = pid
            answers.setdefault(pid, []).append(ask(c, server, "/profile", {"user_id": user}).json())
        if len(answers) == 2:
            break
    assert len(answers) == 2, f"one worker answered {attempt + 1} connections"
    other = next(p for p in answers if p != sent_by)
    assert all(a["live_events"] == 1 and a["n_views"] == 11 for a in answers[other])


def test_concurrent_events_on_two_workers_all_count_and_land(server):
    user, n = server["users"][8], 40

    def send(i):
        with httpx.Client() as c:
            body = {"user_id": user, "item_id": server["items"][i % 5], "event_type": "view",
                    "session_id": f"burst-{i}"}  # fmt: skip
            resp = ask(c, server, "/events", body)
            assert resp.status_code == 200, resp.text
            return resp.json()["event_id"]

    ids = at_once(n, send)
    with httpx.Client() as c:
        profile = ask(c, server, "/profile", {"user_id": user}).json()
    assert profile["live_events"] == n and profile["n_views"] == 5 + 8 + n  # nightly 13 views + n
    today = datetime.now(UTC).date()
    landed = {r["event_id"] for r in read_live(live_path(server["home"] / "landing", today))}
    assert set(ids) <= landed


def test_an_unreachable_dedupe_never_costs_an_event(tmp_path):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from personaflow.ops.local_servers import free_port

    nobody = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    log = LiveLog(tmp_path, seen=RedisSeen(nobody))
    assert log.append_once(DAY, event(1)) == (live_path(tmp_path, DAY), None)
    assert [r["event_id"] for r in read_live(live_path(tmp_path, DAY))] == ["live-1"]


def test_several_workers_need_redis(monkeypatch):
    from personaflow.core import settings
    from personaflow.serving.process import serve_workers

    monkeypatch.setenv("PERSONAFLOW_SERVE_WORKERS", "2")
    monkeypatch.delenv("PERSONAFLOW_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="PERSONAFLOW_SERVE_WORKERS=2 needs PERSONAFLOW_REDIS_URL"):
        serve_workers(settings.load())
    monkeypatch.setenv("PERSONAFLOW_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert serve_workers(settings.load()) == 2


def test_forget_erases_the_user_from_redis(server):
    from personaflow.serving.live_counters import forget_in_redis, redis_holds

    user, url = server["users"][11], server["env"]["PERSONAFLOW_REDIS_URL"]
    with httpx.Client() as c:
        view = {"user_id": user, "item_id": server["items"][2], "event_type": "view"}
        sent = ask(c, server, "/events", view)
        assert sent.status_code == 200 and ask(c, server, "/profile", {"user_id": user}).status_code == 200
        assert len(redis_holds(url, user)) == 2  # forget's check sees both keys
        assert forget_in_redis(url, user) == 2  # Feast hash + live
        assert redis_holds(url, user) == []
        assert ask(c, server, "/profile", {"user_id": user}).status_code == 404  # nothing left to serve
    assert not [k for k in server["redis"].scan_iter() if user.encode() in k]
