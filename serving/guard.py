"""ASGI middleware in front of the API: body size limit, load shedding, readable 422s, GET /metadata.

- A body over `max_body` bytes answers 413 before anything parses it (checked while reading, so a
  missing or lying Content-Length does not get past it).
- More than `max_in_flight` API requests at once answers 503 with Retry-After at once, instead of
  queueing without bound (BentoML's own `max_concurrency` answers 429, which means "you, slow down",
  not "the server is full").
- BentoML answers 400 for a pydantic validation error; it becomes 422 with `error` naming each field.
- BentoML APIs are POST only: GET /metadata is passed on as POST /metadata with an empty body.
"""

from __future__ import annotations

import json

JSON_HEADERS = [(b"content-type", b"application/json")]


async def _answer(send, status: int, payload: dict, extra_headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def relabel_validation_error(body: bytes) -> tuple[int, bytes]:
    """(422, readable body) for pydantic's error list; (400, body) for anything else."""
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, body
    if not isinstance(payload, dict) or not isinstance(payload.get("detail"), list):
        return 400, body
    problems = []
    for err in payload["detail"]:
        field = ".".join(str(p) for p in err.get("loc", ())) or "body (not a JSON object)"
        problems.append(f"{field}: {err.get('msg', 'invalid')}")
    payload["error"] = "invalid request: " + "; ".join(problems)
    return 422, json.dumps(payload).encode()


class Guard:
    def __init__(self, app, paths: tuple[str, ...], max_body: int = 65_536, max_in_flight: int = 256) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await _answer(
                send,
                503,
                {"error": f"server overloaded: {self.in_flight} requests in flight; retry shortly"},
                [(b"retry-after", b"1")],
            )
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope, receive, send) -> None:
        if scope["method"] == "GET" and scope["path"] == "/metadata":
            scope = {**scope, "method": "POST"}
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _answer(send, 413, {"error": f"body: larger than {self.max_body} bytes"})
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        held: dict | None = None
        chunks: list[bytes] = []

        async def relabel(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] == 400:
                held = message
                return
            if held is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, out = relabel_validation_error(b"".join(chunks))
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({**held, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, replay, relabel)
