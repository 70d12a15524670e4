"""The REST API's HTTP layer: a FastAPI app that the `@bentoml.service` mounts with BentoML's documented
`@bentoml.asgi_app` (personaflow/serving/service.py holds the routes, as methods of the service).

What a request goes through, in this order (the order the checks had before, so answers are the same):
- Host: a name this server answers to, else 403 (DNS rebinding: another site's name resolving to
  127.0.0.1 cannot read the API through a visitor's browser);
- Origin: absent or the server's own, else 403 (a cross-origin form post); CORS stays closed: Starlette's
  CORSMiddleware with no allowed origin, so no Access-Control-Allow-Origin is ever sent;
- bearer token (POST /events always, the reads with `api_protect_reads`): 401 with WWW-Authenticate;
- JSON only (415), a body of at most MAX_BODY_BYTES (413, counted while reading: a missing or lying
  Content-Length does not get past it), then the request model: 422 naming each field.
- More than `PERSONAFLOW_SERVE_MAX_IN_FLIGHT` requests at once in a worker: 429 at once, not an unbounded
  queue. That is BentoML's own `traffic.max_concurrency` (personaflow/serving/service.py), not code here.

Each check is a FastAPI dependency; the refusals are HTTPExceptions rendered as `{"error": ...}`. Every
dependency is `async def`: FastAPI runs a plain `def` one in its thread pool, a thread hop per request
that cost more than the whole answer (benchmarks/serving.py).
Slow clients (slow headers, slow bodies, connections per address) are the reverse proxy's
(deploy/nginx/personaflow.conf, docs/operations/reverse-proxy.md): no in-process code sees a request
before its headers are in, and nginx buffers bodies before the API gets them.

Memory: one request body at a time per request, at most MAX_BODY_BYTES; a constant per worker otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from personaflow.core.settings import Settings
from personaflow.serving.auth import bearer_ok, load_tokens
from personaflow.serving.headers import allowed_hosts, host_name, is_json, same_origin

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16_384
BEARER_CHALLENGE = 'Bearer realm="personaflow"'
CLOSE = {"connection": "close"}
INTERNAL_ERROR = "An unexpected error has occurred, please check the server log."


@dataclass(frozen=True)
class Policy:
    """Who may call what: the accepted tokens, whether reads need one, the Host names answered (None: any)."""

    tokens: tuple[bytes, ...]
    protect_reads: bool = False
    hosts: frozenset[str] | None = None
    max_body: int = MAX_BODY_BYTES

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        """In the server process, at start (generates the token file when no token is set anywhere)."""
        return cls(
            tokens=tuple(load_tokens(s)),
            protect_reads=s.api_protect_reads,
            hosts=allowed_hosts(s.api_allowed_hosts, s.serve_host),
        )


class InvalidBodyLog:
    """One warning line per `every` seconds for bodies that fail their schema, with how many came since the
    last line: a client's bad request is its own fault, not a traceback worth 800 bytes each (anyone
    could fill the disk by posting garbage)."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.last = -float("inf")
        self.suppressed = 0

    def note(self, path: str, errors: int) -> bool:
        """Log (and return True) at most once per `every` seconds; count the rest."""
        now = self.clock()
        if now - self.last < self.every:
            self.suppressed += 1
            return False
        log.warning(
            "invalid request body on %s (%d validation errors); %d more since the last such line",
            path, errors, self.suppressed,
        )  # fmt: skip
        self.last, self.suppressed = now, 0
        return True


invalid_bodies = InvalidBodyLog()


class InvalidBody(Exception):
    """A body that failed its request model: answered 422 naming each field."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__(f"{len(errors)} validation errors")
        self.errors = errors


def readable(errors: list[dict]) -> dict:
    """pydantic's error list -> `{"error": "invalid request: field: why; ...", "detail": [...]}`."""
    problems = []
    for err in errors:
        field = ".".join(str(p) for p in err.get("loc", ())) or "body (not a JSON object)"
        problems.append(f"{field}: {err.get('msg', 'invalid')}")
    return {"error": "invalid request: " + "; ".join(problems), "detail": errors}


def _refuse(status: int, error: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, error, headers={**(headers or {}), **CLOSE})


class Checks:
    """The request checks as FastAPI dependencies, over a Policy that `policy()` gives (built once, in the
    server process: the service's `__init__` loads tokens and settings)."""

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self._policy = policy
        self._cached: Policy | None = None

    @property
    def policy(self) -> Policy:
        if self._cached is None:
            self._cached = self._policy()
        return self._cached

    async def host(self, request: Request) -> None:
        hosts = self.policy.hosts
        if hosts is not None and host_name(_raw(request, b"host")) not in hosts:
            raise _refuse(403, "host: not a name this server answers to")

    async def origin(self, request: Request) -> None:
        origin = _raw(request, b"origin")
        if origin is not None and not same_origin(origin, _raw(request, b"host")):
            raise _refuse(403, "origin: cross-origin requests are not accepted")

    async def _bearer(self, request: Request) -> None:
        authorization = _raw(request, b"authorization")
        if not bearer_ok(authorization, list(self.policy.tokens)):
            challenge = BEARER_CHALLENGE + (', error="invalid_token"' if authorization else "")
            reason = "invalid token" if authorization else "missing"
            raise _refuse(401, f"authorization: {reason}; send 'Authorization: Bearer <token>'",
                          {"www-authenticate": challenge})  # fmt: skip

    async def writer(self, request: Request) -> None:
        """State-changing calls: a bearer token always."""
        await self._bearer(request)

    async def reader(self, request: Request) -> None:
        """Read calls: a bearer token only with `api_protect_reads`."""
        if self.policy.protect_reads:
            await self._bearer(request)

    async def body(self, request: Request) -> bytes:
        """The raw body, JSON only and at most `max_body` bytes (415 / 413)."""
        content_type = _raw(request, b"content-type")
        if content_type is not None and not is_json(content_type):
            raise _refuse(415, "content-type: must be application/json")
        limit = self.policy.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _refuse(413, f"body: larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _refuse(413, f"body: larger than {limit} bytes")
        if body and content_type is None:
            raise _refuse(415, "content-type: must be application/json")
        return bytes(body)

    def json(
        self, model: type[BaseModel], guards: tuple[Callable[[Request], Any], ...] = ()
    ) -> Callable[[Request], Awaitable[BaseModel]]:
        """A dependency giving the body parsed strictly into `model`, after the `guards` (checks above, in
        order). A plain `async def`, not a `yield` dependency: FastAPI enters an exit stack for each of
        those on every request."""

        async def parsed(request: Request) -> BaseModel:
            for guard in guards:
                await guard(request)
            body = await self.body(request)
            try:
                return model.model_validate_json(body or b"{}")
            except ValidationError as exc:
                invalid_bodies.note(request.url.path, exc.error_count())
                raise InvalidBody(exc.errors(include_context=False, include_input=False)) from None

        parsed.__name__ = f"{model.__name__}_body"
        return parsed

    def request(
        self, model: type[BaseModel], write: bool = False
    ) -> Callable[[Request], Awaitable[BaseModel]]:
        """A route's whole check as one dependency: Host, Origin, the token (always for a write, with
        `api_protect_reads` for a read), then `json(model)`. One dependency, not five: FastAPI solves each
        one separately on every request, and five of them cost about a tenth of a /recommend answer
        (benchmarks/serving.py)."""
        return self.json(model, (self.host, self.origin, self.writer if write else self.reader))


def _raw(request: Request, name: bytes) -> bytes | None:
    for key, value in request.scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def _invalid_body(request: Request, exc: InvalidBody) -> JSONResponse:
    return JSONResponse(readable(exc.errors), 422)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(readable(errors), 422)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("Exception on %s [%s]", request.url.path, request.method, exc_info=exc)
    return JSONResponse({"error": INTERNAL_ERROR}, 500)


def make_app() -> FastAPI:
    """The FastAPI app, without routes (the service adds them): no docs of its own (BentoML publishes
    /docs.json and the page at `/`), our error bodies, CORS closed."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(InvalidBody, _invalid_body)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _internal)
    # No origin is allowed: a preflight from another site gets no Access-Control-Allow-Origin.
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_methods=["GET", "POST"])
    return app
