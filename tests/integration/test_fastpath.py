"""The guard's fast path (personaflow/serving/fastpath.py) answers exactly as BentoML's own endpoint: the same
service, driven in-process over ASGI once through BentoML and once through the fast path, gives the
same status and body for a good request, a bad one (the field-naming 422), our own error answer and an
exception; A/B exposures are written by group commit (personaflow/experiments/exposures.py)."""

from __future__ import annotations

import asyncio
import json
import threading

import bentoml
import pytest
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse

from personaflow.experiments.exposures import ExposureLog, read_exposures
from personaflow.serving import fastpath
from personaflow.serving.fastpath import FastPath, routes
from personaflow.serving.guard import Guard


class Ask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    k: int = 3


class Told(BaseModel):
    user_id: str
    items: list[int]


@bentoml.service(name="fastpath-probe")
class Probe:
    @bentoml.api(route="/ask", input_spec=Ask)
    async def ask(self, user_id: str, k: int = 3) -> Told:
        if user_id == "gone":
            return JSONResponse({"error": f"user_id {user_id!r}: gone"}, 404)
        if user_id == "boom":
            raise RuntimeError("boom")
        return Told(user_id=user_id, items=list(range(k)))

    @bentoml.api(route="/sync")
    def sync(self, user_id: str) -> Told:
        return Told(user_id=user_id, items=[])


async def _call(app, body: bytes) -> tuple[int, dict, dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/ask", "raw_path": b"/ask", "query_string": b"", "root_path": "",
             "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 5000), "state": {},
             "headers": [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json")]}  # fmt: skip
    sent: list[dict] = []
    given = False

    async def receive() -> dict:
        nonlocal given
        if given:
            await asyncio.sleep(3600)
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:])), headers


async def _both(bodies: list[bytes]) -> list[tuple]:
    inner = Probe.to_asgi(is_main=True)
    options = dict(paths=("/ask",), tokens=[], protect_reads=False, body_timeout=5.0, max_per_client=64,
                   hosts=None)  # fmt: skip
    slow = Guard(inner, **options)
    fast = Guard(inner, **options, fast=FastPath(Probe, ("/ask",)))
    events: asyncio.Queue = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    replies: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.create_task(
        inner({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, events.get, replies.put)
    )
    assert (await replies.get())["type"] == "lifespan.startup.complete"
    out = [(await _call(slow, body), await _call(fast, body)) for body in bodies]
    await events.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan
    return out


def test_fast_path_answers_as_bentoml_does(caplog, monkeypatch, tmp_path):
    # prometheus_client picks its multiprocess values at import when BentoML (imported by an earlier
    # test) had PROMETHEUS_MULTIPROC_DIR set; BentoML's metrics middleware then needs the folder
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(fastpath, "invalid_bodies", fastpath.InvalidBodyLog())  # a fresh 10 s window
    bodies = [b'{"user_id": "u1", "k": 2}', b'{"user_id": "u1", "kk": 2}', b'{"user_id": 5}', b"",
              b'{"user_id": "gone"}', b'{"user_id": "boom"}']  # fmt: skip
    answers = asyncio.run(_both(bodies))
    statuses = [fast[0] for _, fast in answers]
    assert statuses == [200, 422, 422, 422, 404, 500]
    for (slow_status, slow_body, _), (fast_status, fast_body, fast_headers) in answers:
        assert (fast_status, fast_body) == (slow_status, slow_body)
        assert fast_headers["server"] == "BentoML Service/fastpath-probe"
    assert answers[0][1][1] == {"user_id": "u1", "items": [0, 1]}
    assert "kk" in answers[1][1][1]["error"]
    # BentoML logs a traceback for each of the three bad bodies and the exception; the fast path logs
    # the exception alike, and the bad bodies (the client's fault) as one rate-limited warning line
    assert sum("Exception on /ask [POST]" in r.getMessage() for r in caplog.records) == 4 + 1
    assert sum("invalid request body on /ask" in r.getMessage() for r in caplog.records) == 1


def test_only_plain_async_json_apis_take_the_fast_path():
    assert set(routes(Probe, ("/ask",))) == {"/ask"}
    with pytest.raises(ValueError, match="/sync: a sync API"):
        routes(Probe, ("/ask", "/sync"))


def test_exposures_share_fsyncs_and_none_is_lost(tmp_path):
    log = ExposureLog(tmp_path / "ab")
    futures = []
    lock = threading.Lock()

    def answer(n: int) -> None:
        for m in range(50):
            future = log.submit({"user_id": f"u{n}-{m}", "arm": "control", "model_version": "m:1",
                                 "items": ["i1"], "status": 200, "latency_ms": 0.1})  # fmt: skip
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for future in futures:
        assert future.result(timeout=10) is None
    frame = read_exposures(tmp_path / "ab")
    assert len(frame) == 400 and frame["user_id"].nunique() == 400
    assert log.fsyncs < 400  # grouped: answers in flight together shared an fsync
    log.append({"user_id": "last", "arm": "challenger", "model_version": "m:2", "items": [], "status": 200,
                "latency_ms": 0.2})  # fmt: skip
    assert read_exposures(tmp_path / "ab")["user_id"].iloc[-1] == "last"
