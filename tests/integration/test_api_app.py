"""The API's one path (personaflow/serving/api.py): a FastAPI app mounted in a `@bentoml.service` with
`@bentoml.asgi_app`, its routes given the worker's service instance, driven in-process over ASGI
through BentoML's own app (what `bentoml serve` runs): a good request, bad ones (the field-naming
422), our own error answer and an exception each answer as the API did before; A/B exposures are
written by group commit (personaflow/experiments/exposures.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Annotated

import bentoml
from fastapi import Depends
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response

from personaflow.experiments.exposures import ExposureLog, read_exposures
from personaflow.serving import api
from personaflow.serving.api import Checks, Policy, make_app


class Ask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    k: int = 3


class Told(BaseModel):
    user_id: str
    items: list[int]


probe_app = make_app()
checks = Checks(lambda: Policy(tokens=(), hosts=None))
AskBody = Annotated[Ask, Depends(checks.request(Ask))]  # as the service's routes: one dependency


@bentoml.service(name="api-probe")
@bentoml.asgi_app(probe_app, path="/")
class Probe:
    def __init__(self) -> None:
        self.offset = 7  # the route sees this worker's instance (bentoml.get_current_service)


@probe_app.post("/ask")
async def ask(ask: AskBody) -> Response:
    service = bentoml.get_current_service()
    if ask.user_id == "gone":
        return JSONResponse({"error": f"user_id {ask.user_id!r}: gone"}, 404)
    if ask.user_id == "boom":
        raise RuntimeError("boom")
    told = Told(user_id=ask.user_id, items=[service.offset + n for n in range(ask.k)])
    return Response(told.model_dump_json(), media_type="application/json")


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

    try:
        await app(scope, receive, send)
    except RuntimeError:  # Starlette answers 500, then re-raises for the server to log
        pass
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:])), headers


async def _through_bentoml(bodies: list[bytes]) -> list[tuple]:
    app = Probe.to_asgi(is_main=True)
    events: asyncio.Queue = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    replies: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, events.get, replies.put)
    )
    assert (await replies.get())["type"] == "lifespan.startup.complete"
    out = [await _call(app, body) for body in bodies]
    await events.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan
    return out


def test_the_mounted_app_answers_as_the_api_did(caplog, monkeypatch, tmp_path):
    # prometheus_client picks its multiprocess values at import when BentoML (imported by an earlier
    # test) had PROMETHEUS_MULTIPROC_DIR set; BentoML's metrics middleware then needs the folder
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(api, "invalid_bodies", api.InvalidBodyLog())  # a fresh 10 s window
    bodies = [b'{"user_id": "u1", "k": 2}', b'{"user_id": "u1", "kk": 2}', b'{"user_id": 5}', b"",
              b'{"user_id": "gone"}', b'{"user_id": "boom"}', b'{"user_id": "u1", "k": NaN}']  # fmt: skip
    answers = asyncio.run(_through_bentoml(bodies))
    assert [status for status, _, _ in answers] == [200, 422, 422, 422, 404, 500, 422]
    assert all(headers["content-type"] == "application/json" for _, _, headers in answers)
    assert answers[0][1] == {"user_id": "u1", "items": [7, 8]}
    assert answers[1][1]["error"].startswith("invalid request: kk:")
    assert [e["loc"] for e in answers[1][1]["detail"]] == [["kk"]]
    assert answers[2][1]["error"].startswith("invalid request: user_id:")
    assert answers[3][1]["error"].startswith("invalid request: user_id:")  # no body: the field is missing
    assert answers[4][1] == {"error": "user_id 'gone': gone"}
    assert answers[5][1] == {"error": api.INTERNAL_ERROR}
    assert answers[6][1]["error"].startswith("invalid request: k:")  # NaN is no number here
    # the exception is logged with its traceback once; the four bad bodies (the client's fault) as one
    # rate-limited warning line
    assert sum("Exception on /ask [POST]" in r.getMessage() for r in caplog.records) == 1
    assert sum("invalid request body on /ask" in r.getMessage() for r in caplog.records) == 1


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
