"""ASGI middleware in front of the API: body size limit, load shedding, readable 422s, GET /metadata.

- A body over `max_body` bytes answers 413 before anything parses it (checked while reading, so a
  missing or lying Content-Length does not get past it).
- More than `max_in_flight` API requests at once answers 503 with Retry-After at once, instead of
  queueing without bound (BentoML's own `max_concurrency` answers 429, which means "you, slow down",
  not "the server is full").
- BentoML answers 400 for a pydantic validation error; it becomes 422 with `error` naming each field.
- BentoML APIs are POST only: GET /metadata is passed on as POST /metadata with an empty body.

Security (README "Security"):
- State-changing paths (POST /events) need `Authorization: Bearer <token>` (personaflow/serving/auth.py), and
so do the read paths when `protect_reads` is set: 401 with WWW-Authenticate otherwise.
- A Host header that is not one of ours answers 403: a page on another site that resolves its own
  name to 127.0.0.1 (DNS rebinding) cannot read the API through the visitor's browser.
- Bodies are JSON only: any other Content-Type, or a body without one, answers 415. A request whose
  Origin is not the server's own (a browser on another site: a cross-origin form post) answers 403;
  no Access-Control-Allow-Origin is ever sent (CORS closed).
- Slow clients: the whole body must arrive within `body_timeout` seconds (408, connection closed);
  a request only counts against `max_in_flight` once its body is in, so clients that never finish
  sending cannot take the slots of real requests. One client address holds at most `max_per_client`
  *slow uploads* at once (a body still arriving after `SLOW_AFTER` seconds); more are told 429 and
  closed. Requests whose body arrives at once are never counted, so slow clients behind one address
  (a proxy, a NAT) cannot lock that address's real requests out, and 270 slow connections from one
  address still cannot crowd out the others.
  Headers must be complete within `serve_header_timeout` seconds or the connection is closed
  (personaflow/serving/header_timeout.py, a hook in uvicorn: no middleware sees a request before its headers).

The Host, Origin and Content-Type checks themselves are in personaflow/serving/headers.py. Past every check,
the hot JSON APIs are answered by personaflow/serving/fastpath.py (BentoML's answers without its per-request
layers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from personaflow.serving.auth import bearer_ok
from personaflow.serving.fastpath import FastPath
from personaflow.serving.headers import allowed_hosts, header, host_name, is_json, same_origin

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


CLOSE = [(b"connection", b"close")]
# A body still arriving after this long makes its request a slow upload, counted against its address.
SLOW_AFTER = 0.25
BEARER_CHALLENGE = b'Bearer realm="personaflow"'


class Guard:
    def __init__(
        self,
        app,
        paths: tuple[str, ...],
        max_body: int = 65_536,
        max_in_flight: int = 256,
        write_paths: tuple[str, ...] = ("/events",),
        tokens: list[bytes] | None = None,
        protect_reads: bool | None = None,
        body_timeout: float | None = None,
        max_per_client: int | None = None,
        hosts: frozenset[str] | None | str = "settings",
        fast: FastPath | None = None,
        docs: Callable[[], dict] | None = None,
    ) -> None:
        from personaflow.core import settings as config
        from personaflow.serving.auth import load_tokens

        s = config.load()  # in the server process, when the app is built (not at import)
        self.app = app
        self.paths = frozenset(paths)
        self.write_paths = frozenset(write_paths)
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.tokens = load_tokens(s) if tokens is None else tokens
        self.protect_reads = s.api_protect_reads if protect_reads is None else protect_reads
        self.body_timeout = s.serve_body_timeout if body_timeout is None else body_timeout
        self.max_per_client = s.serve_max_per_client if max_per_client is None else max_per_client
        self.hosts = allowed_hosts(s.api_allowed_hosts, s.serve_host) if hosts == "settings" else hosts
        self.in_flight = 0
        self.per_client: dict[str, int] = {}
        self.fast = fast  # the hot APIs, answered past every check here without BentoML's layers
        self.docs = docs  # the corrected OpenAPI document (serving/openapi.py), built on first GET
        self._docs_body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.docs is not None and scope["type"] == "http" and scope["path"] == "/docs.json":
            if self._docs_body is None:
                self._docs_body = json.dumps(self.docs()).encode()
            headers = [*JSON_HEADERS, (b"content-length", str(len(self._docs_body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self._docs_body})
            return
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        await self._checked(scope, receive, send)

    async def _checked(self, scope, receive, send) -> None:
        """Host, origin, token and content type from the headers, then the body within the time limit."""
        host = header(scope, b"host")
        if self.hosts is not None and host_name(host) not in self.hosts:
            await _answer(send, 403, {"error": "host: not a name this server answers to"}, CLOSE)
            return
        origin = header(scope, b"origin")
        if origin is not None and not same_origin(origin, host):
            await _answer(send, 403, {"error": "origin: cross-origin requests are not accepted"}, CLOSE)
            return
        if scope["path"] in self.write_paths or self.protect_reads:
            authorization = header(scope, b"authorization")
            if not bearer_ok(authorization, self.tokens):
                challenge = BEARER_CHALLENGE + (b', error="invalid_token"' if authorization else b"")
                reason = "invalid token" if authorization else "missing"
                await _answer(
                    send,
                    401,
                    {"error": f"authorization: {reason}; send 'Authorization: Bearer <token>'"},
                    [(b"www-authenticate", challenge), *CLOSE],
                )
                return
        content_type = header(scope, b"content-type")
        if content_type is not None and not is_json(content_type):
            await _answer(send, 415, {"error": "content-type: must be application/json"}, CLOSE)
            return
        client = (scope.get("client") or ("?", 0))[0]
        body = await self._read_body(receive, send, client)
        if body is None:
            return
        if body and content_type is None:
            await _answer(send, 415, {"error": "content-type: must be application/json"}, CLOSE)
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
            await self._guarded(scope, body, receive, send)
        finally:
            self.in_flight -= 1

    async def _read_body(self, receive, send, client: str) -> bytes | None:
        """The whole body, or None after answering (413 too big, 408 too slow, 429 one slow upload too
        many from this address) or a disconnect."""
        chunks = {"body": b"", "more": True}

        async def read() -> bool:  # False: answered or disconnected
            while chunks["more"]:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                chunks["body"] += message.get("body", b"")
                chunks["more"] = message.get("more_body", False)
                if len(chunks["body"]) > self.max_body:
                    await _answer(send, 413, {"error": f"body: larger than {self.max_body} bytes"}, CLOSE)
                    return False
            return True

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout  # one timer for the whole body
        slow = False
        try:
            try:  # most bodies are in at once: no task, no count
                async with asyncio.timeout(min(SLOW_AFTER, self.body_timeout)):
                    done = await read()
            except TimeoutError:
                held = self.per_client.get(client, 0)
                if held >= self.max_per_client:
                    most = self.max_per_client
                    error = f"too many slow uploads from {client} at once (at most {most})"
                    await _answer(send, 429, {"error": error}, [(b"retry-after", b"1"), *CLOSE])
                    return None
                self.per_client[client], slow = held + 1, True
                async with asyncio.timeout_at(deadline):
                    done = await read()
        except TimeoutError:
            await _answer(send, 408, {"error": f"body: not received within {self.body_timeout:g} s"}, CLOSE)
            return None
        finally:
            if slow:
                left = self.per_client[client] - 1
                if left:
                    self.per_client[client] = left
                else:
                    del self.per_client[client]
        return chunks["body"] if done else None

    async def _guarded(self, scope, body: bytes, receive, send) -> None:
        if scope["method"] == "GET" and scope["path"] == "/metadata":
            # takes no input: whatever body a GET came with is dropped, not parsed
            dropped = (b"content-type", b"content-length")
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in dropped]
            scope, body = {**scope, "method": "POST", "headers": headers}, b""
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
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

        route = self.fast.routes.get(scope["path"]) if self.fast is not None else None
        if route is not None and scope["method"] == "POST":
            await self.fast.answer(route, scope, body, relabel)
            return
        await self.app(scope, replay, relabel)
