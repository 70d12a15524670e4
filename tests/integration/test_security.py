"""Issue 13 over real HTTP on 127.0.0.1: nobody without the token changes state, one event cannot stop a
night, bodies are JSON only, browsers on other sites are refused, and request types are strict. Each test
here failed on the code before the fix. Slow clients are the reverse proxy's (issue 22): the slowloris
tests that were here run with the shipped nginx in front, in tests/integration/test_nginx.py.

One real `bentoml serve` for the module (tests/_serving_setup.py); the token is the one the server
generated into its token file at first start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from datetime import time as dtime

import duckdb
import httpx
import psutil
import pytest
from fastapi import Depends, FastAPI

from personaflow.core.landing import live_path
from personaflow.core.settings import REPO_ROOT
from personaflow.ingest.live import read_live
from personaflow.ingest.load import load_batch
from personaflow.quality import contract
from personaflow.quality.checks import check_raw_batch
from personaflow.quality.suites import Thresholds
from personaflow.serving import process
from personaflow.serving.api import Checks, Policy, make_app
from tests._serving_setup import free_port, running_server
from tests._warehouse import make_events, write_landing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("security")) as srv:
        yield srv


def event(server, **fields) -> dict:
    """A valid event; each one its own session, so no two are exact duplicates (a batch rule)."""
    base = {"user_id": server["users"][3], "item_id": server["items"][2], "event_type": "view"}
    return {**base, "session_id": f"s-{uuid.uuid4().hex[:12]}", **fields}


def landed(server) -> list[dict]:
    return read_live(live_path(server["home"] / "landing", datetime.now(UTC).date()))


# -- authentication ------------------------------------------------------------------------------------


def test_events_need_the_bearer_token_and_reads_stay_open(server):
    url, before = server["base"] + "/events", len(landed(server))
    for headers, error in [
        ({}, None),
        ({"Authorization": "Bearer not-the-token"}, "invalid_token"),
        ({"Authorization": f"Basic {server['token']}"}, "invalid_token"),
        ({"Authorization": "Bearer"}, "invalid_token"),
    ]:
        resp = httpx.post(url, json=event(server), headers=headers, timeout=10)
        assert resp.status_code == 401, (headers, resp.text)
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith("Bearer realm=") and (error is None or error in challenge)
        assert resp.json()["error"].startswith("authorization:")
        assert server["token"] not in resp.text
    assert len(landed(server)) == before  # nothing refused reached the landing file
    ok = httpx.post(url, json=event(server), headers=server["auth"], timeout=10)
    assert ok.status_code == 200, ok.text
    assert len(landed(server)) == before + 1
    # Reads are open by default.
    recs = httpx.post(server["base"] + "/recommend", json={"user_id": server["users"][0], "k": 2})
    assert recs.status_code == 200 and len(recs.json()["items"]) == 2
    assert httpx.get(server["base"] + "/metadata").status_code == 200


def test_generated_token_file_is_private_and_the_token_is_never_logged(server):
    path = server["home"] / "secrets" / "api_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    httpx.post(server["base"] + "/events", json=event(server), headers=server["auth"], timeout=10)
    httpx.post(server["base"] + "/events", json=event(server, quantity=0), headers=server["auth"], timeout=10)
    log = (server["home"] / "serve.log").read_text(errors="replace")
    assert log and server["token"] not in log


def test_protect_reads_setting_puts_the_read_endpoints_behind_the_token():
    def guarded(protect: bool) -> FastAPI:
        # the read routes' dependencies, as personaflow/serving/service.py declares them (READ)
        checks = Checks(lambda: Policy(tokens=(b"s3cret",), protect_reads=protect))
        app = make_app()

        @app.post("/recommend", dependencies=[Depends(checks.host), Depends(checks.origin),
                                              Depends(checks.reader)])  # fmt: skip
        async def recommend() -> dict:
            return {}

        return app

    async def call(protect: bool, headers: dict) -> int:
        transport = httpx.ASGITransport(app=guarded(protect))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.post("/recommend", json={"user_id": "u"}, headers=headers)).status_code

    assert asyncio.run(call(False, {})) == 200
    assert asyncio.run(call(True, {})) == 401
    assert asyncio.run(call(True, {"Authorization": "Bearer s3cret"})) == 200


# -- one event cannot stop a night ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"price": 1e-300}, "price"),
        ({"price": 0.009}, "price"),
        ({"price": 0}, "price"),
        ({"price": contract.MAX_PRICE + 1}, "price"),
        ({"quantity": contract.MAX_QUANTITY + 1}, "quantity"),
        ({"quantity": -1, "event_type": "return"}, "quantity"),
        ({"user_id": "   "}, "user_id"),
        ({"item_id": "x" * (contract.ID_MAX_LENGTH + 1)}, "item_id"),
        ({"event_type": "refund"}, "event_type"),
        ({"event_ts": "2001-01-01T00:00:00"}, "event_ts"),
    ],
)
def test_an_event_outside_the_batch_contract_is_refused_naming_the_field(server, fields, field):
    before = len(landed(server))
    resp = httpx.post(server["base"] + "/events", json=event(server, **fields), headers=server["auth"])
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith(f"invalid request: {field}:"), resp.json()
    assert len(landed(server)) == before


def test_events_the_api_accepts_pass_the_nightly_batch_check(server):
    assert Thresholds().min_price == contract.MIN_PRICE and Thresholds().max_price == contract.MAX_PRICE
    assert Thresholds().max_quantity == contract.MAX_QUANTITY
    edge = [
        event(server, event_type="purchase", price=contract.MIN_PRICE, quantity=contract.MAX_QUANTITY),
        event(server, event_type="purchase", price=contract.MAX_PRICE, quantity=1),
        event(server, event_type="return", price=contract.MIN_PRICE),
        event(server, event_type="cart"),
    ]
    for body in edge:
        resp = httpx.post(server["base"] + "/events", json=body, headers=server["auth"], timeout=10)
        assert resp.status_code == 200, resp.text
    httpx.post(server["base"] + "/events", json=event(server, price=1e-300), headers=server["auth"])
    today = datetime.now(UTC).date()
    landing, warehouse = server["home"] / "landing", server["home"] / "warehouse.duckdb"
    write_landing(make_events(today, 20, seed=3), landing, today)
    load_batch(warehouse, landing, today)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select * from raw.events where batch_date = ?", [today]).df()
    assert (rows["event_id"].str.startswith("live-")).sum() >= len(edge)
    assert rows["price"].min() >= contract.MIN_PRICE
    # The batch's own rows are spread over the whole day: judge "no future events" at the day's end.
    result = check_raw_batch(rows, today, now=datetime.combine(today, dtime.max))
    assert result.success, [f.__dict__ for f in result.failures]


# -- JSON only, CORS closed ---------------------------------------------------------------------------


def test_only_json_bodies_are_accepted(server):
    url, before = server["base"] + "/events", len(landed(server))
    for content, ctype in [
        (b"user_id=u1&item_id=i1&event_type=view", "application/x-www-form-urlencoded"),
        (b'{"user_id": "u1", "item_id": "i1", "event_type": "view"}', "text/plain"),
        (b'{"user_id": "u1", "item_id": "i1", "event_type": "view"}', "multipart/form-data; boundary=x"),
        (b'{"user_id": "u1", "item_id": "i1", "event_type": "view"}', None),
    ]:
        headers = {**server["auth"], **({"content-type": ctype} if ctype else {})}
        resp = httpx.post(url, content=content, headers=headers, timeout=10)
        assert resp.status_code == 415, (ctype, resp.status_code, resp.text)
        assert resp.json()["error"].startswith("content-type:")
    for path in ("/recommend", "/profile"):
        plain = {"content-type": "text/plain"}
        resp = httpx.post(server["base"] + path, content=b"user_id=u1", headers=plain)
        assert resp.status_code == 415, path
    assert len(landed(server)) == before
    # GET /metadata takes no input: a body it comes with is not parsed (the fuzz found a 500 here).
    odd = httpx.request(
        "GET", server["base"] + "/metadata", content=b"\x00", headers={"content-type": "text/x"}
    )
    assert odd.status_code == 415
    ignored = httpx.request(
        "GET", server["base"] + "/metadata", content=b"\x00", headers={"content-type": "application/json"}
    )
    assert ignored.status_code == 200 and ignored.json()["model_version"] == server["tag"]
    charset = {**server["auth"], "content-type": "application/json; charset=utf-8"}
    body = b'{"user_id": "u1", "item_id": "%s", "event_type": "view"}' % server["items"][1].encode()
    assert httpx.post(url, content=body, headers=charset).status_code == 200


def test_cross_origin_browser_requests_are_refused_and_no_cors_header_is_sent(server):
    url, evil = server["base"] + "/events", {"Origin": "http://evil.example"}
    form = {"content-type": "application/x-www-form-urlencoded", **evil}
    before = len(landed(server))
    # A form on another site posting here (the browser sends Origin, never our token).
    resp = httpx.post(url, content=b"user_id=u1&item_id=i1&event_type=view", headers=form)
    assert resp.status_code in (401, 403, 415) and "access-control-allow-origin" not in resp.headers
    # Even with a valid token and JSON, another site's page is refused.
    resp = httpx.post(url, json=event(server), headers={**server["auth"], **evil})
    assert resp.status_code == 403 and resp.json()["error"].startswith("origin:")
    assert "access-control-allow-origin" not in resp.headers
    assert len(landed(server)) == before
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    preflight = httpx.options(url, headers={**evil, **asks})
    assert "access-control-allow-origin" not in preflight.headers
    reads = httpx.post(server["base"] + "/recommend", json={"user_id": "u1"}, headers=evil)
    assert "access-control-allow-origin" not in reads.headers
    # The docs page at `/` calls the API from the server's own origin: allowed.
    own = {"Origin": server["base"]}
    same = httpx.post(server["base"] + "/recommend", json={"user_id": "u1", "k": 1}, headers=own)
    assert same.status_code == 200


def test_dns_rebinding_another_name_for_127_0_0_1_is_refused(server):
    """A site whose name resolves to 127.0.0.1 makes the browser send its own Host and Origin."""
    port = server["base"].rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    resp = httpx.post(server["base"] + "/profile", json={"user_id": server["users"][0]}, headers=rebound)
    assert resp.status_code == 403 and resp.json()["error"].startswith("host:")
    for name in ("localhost", "127.0.0.1"):
        ok = httpx.post(server["base"] + "/profile", json={"user_id": server["users"][0]},
                        headers={"Host": f"{name}:{port}"})  # fmt: skip
        assert ok.status_code == 200, name


def test_allowed_host_names():
    from personaflow.serving.headers import allowed_hosts, host_name

    assert allowed_hosts((), "127.0.0.1") >= {"127.0.0.1", "localhost", "[::1]"}
    assert allowed_hosts((), "0.0.0.0") is None and allowed_hosts(("*",), "127.0.0.1") is None
    assert allowed_hosts(("api.shop.example",), "0.0.0.0") == {"api.shop.example"}
    assert [host_name(h) for h in (b"Localhost:3000", b"[::1]:3000", b"example.com", None)] == [
        "localhost",
        "[::1]",
        "example.com",
        "",
    ]


# -- strict request types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/recommend", {"user_id": "u1", "k": True}, "k"),
        ("/recommend", {"user_id": "u1", "k": "3"}, "k"),
        ("/recommend", {"user_id": "u1", "k": 3.0}, "k"),
        ("/recommend", {"user_id": "u1", "exclude_purchased": "true"}, "exclude_purchased"),
        ("/recommend", {"user_id": "u1", "exclude_purchased": 1}, "exclude_purchased"),
        ("/recommend", {"user_id": 42}, "user_id"),
        ("/similar_items", {"item_id": "i1", "k": False}, "k"),
        ("/events", {"user_id": "u1", "item_id": "i1", "event_type": "view", "quantity": True}, "quantity"),
        ("/events", {"user_id": "u1", "item_id": "i1", "event_type": "view", "quantity": "3"}, "quantity"),
        ("/events", {"user_id": "u1", "item_id": "i1", "event_type": "view", "price": "9.5"}, "price"),
        ("/events", {"user_id": "u1", "item_id": "i1", "event_type": "view", "price": True}, "price"),
        ("/events", {"user_id": "u1", "item_id": "i1", "event_type": "view", "event_ts": 0}, "event_ts"),
    ],
)
def test_no_bool_or_string_coercion_into_numbers(server, path, payload, field):
    resp = httpx.post(server["base"] + path, json=payload, headers=server["auth"], timeout=10)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith(f"invalid request: {field}:"), resp.json()


# -- process hygiene: `personaflow serve` ----------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "personaflow.cli", *args]


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


def test_serve_on_a_port_in_use_exits_non_zero_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            _cli("serve"),
            env=_cli_env({"PERSONAFLOW_SERVE_PORT": str(port)}),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} is already in use" in lines[0], done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_serve_stopped_by_a_signal_stops_its_whole_process_group(server, sig):
    port = free_port()
    env = _cli_env({**server["env"], "PERSONAFLOW_SERVE_PORT": str(port)})
    cli = subprocess.Popen(_cli("serve"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[psutil.Process] = []
    try:
        process.wait_ready(f"http://127.0.0.1:{port}", timeout=120, proc=cli)
        children = psutil.Process(cli.pid).children(recursive=True)
        assert children, "serve started no server"
        cli.send_signal(sig)
        assert cli.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
        assert not process.port_in_use("127.0.0.1", port)
    finally:
        for proc in [psutil.Process(cli.pid)] if cli.poll() is None else []:
            proc.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_a_retried_event_is_not_stored_twice(server):
    """Exact duplicates over 5% of a batch stop the night: a client's retries must not add up to that."""
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()
    body = event(server, event_type="purchase", price=3.5, quantity=2, event_ts=now)
    first = httpx.post(server["base"] + "/events", json=body, headers=server["auth"], timeout=10).json()
    before = len(landed(server))
    for _ in range(5):
        again = httpx.post(server["base"] + "/events", json=body, headers=server["auth"], timeout=10)
        assert again.status_code == 200 and again.json()["event_id"] == first["event_id"]
        assert again.json()["duplicate"] is True and first["duplicate"] is False
    assert len(landed(server)) == before
    other = httpx.post(server["base"] + "/events", json={**body, "quantity": 3}, headers=server["auth"])
    assert other.json()["duplicate"] is False and len(landed(server)) == before + 1


def test_duplicates_are_known_across_a_restart(tmp_path):
    from personaflow.ingest.live import LiveLog

    day = datetime.now(UTC).date()
    record = {"event_id": "live-1", "user_id": "u", "item_id": "i", "event_type": "view",
              "event_ts": f"{day} 10:00:00", "session_id": "s", "quantity": 1, "price": 2.0}  # fmt: skip
    assert LiveLog(tmp_path).append_once(day, record)[1] is None
    restarted = LiveLog(tmp_path)  # a new server process reads today's file first
    assert restarted.append_once(day, {**record, "event_id": "live-2"})[1] == "live-1"
    assert [r["event_id"] for r in read_live(live_path(tmp_path, day))] == ["live-1"]


def test_the_api_server_listens_on_loopback_only(server):
    port = int(server["base"].rsplit(":", 1)[1])

    def listening(root: psutil.Process) -> list[tuple[str, int, int]]:
        return [
            (c.laddr.ip, c.laddr.port, p.pid)
            for p in [root, *root.children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]

    # the `bentoml serve` (circusd) that tests/_serving_setup.py started, and everything below it
    found = [listening(p) for p in psutil.Process().children()]
    (sockets,) = [f for f in found if ("127.0.0.1", port) in {s[:2] for s in f}]
    assert all(ip == "127.0.0.1" for ip, _, _ in sockets), sockets
    # What docs/operations/security.md lists, and nothing else: the API port (circusd holds it for its
    # workers) and circusd's own two control ports (BentoML 1.4.39 hard-codes them as loopback TCP).
    others = {(p, pid) for _, p, pid in sockets if p != port}
    assert len({p for p, _ in others}) == 2, sockets
    assert {psutil.Process(pid).name() for _, pid in others} == {"circusd"}, sockets


def test_invalid_json_floods_no_log(server):
    """50 unauthenticated bodies that are not JSON: each answered 400/422, and the server log gains at
    most a few lines, none a traceback (a log flood would let anyone fill the disk)."""
    log = server["home"] / "serve.log"
    before = log.read_text(errors="replace")
    for n in range(50):
        resp = httpx.post(
            server["base"] + "/recommend", content=b'{"user_id": "u' + str(n).encode(),
            headers={"content-type": "application/json"}, timeout=10,
        )  # fmt: skip
        assert resp.status_code in (400, 422), resp.text
        assert "error" in resp.json()
    time.sleep(0.5)
    added = log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in added, added[-2000:]
    assert len(added.splitlines()) <= 5, added[-2000:]
