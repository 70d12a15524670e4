"""The hot JSON APIs answered straight from the API guard (personaflow/serving/guard.py), the way BentoML's
own endpoint answers them, without the per-request layers our APIs do not use.

For a plain JSON API (a pydantic `input_spec`, no context parameter, no streaming, no batching, a
pydantic model or a starlette Response returned) BentoML's endpoint does: validate the body with the
input model, call the method with its fields, serialise the returned model with `model_dump_json`.
Around that it also builds a request context, routes, re-reads the method's signature and the
logging config, and sends the body in chunks: about half of a /recommend request's time in the
server (benchmarks/serving.py). Here the same three steps run directly, with the same answers:

- a body that fails the input model answers 400 with pydantic's error list, which the guard relabels
  to the 422 naming each field (as for BentoML's own 400);
- an exception in the method answers BentoML's 500 body; both are logged as BentoML logs them;
- every answer carries BentoML's `Server` header and a Content-Length.

The APIs stay BentoML APIs: same routes, same OpenAPI docs, same workers, and any path or method not
listed here (GET /metadata, /audiences with its free-form fields) still goes through BentoML.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import Response

log = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML logs an API's exception
INTERNAL_ERROR = b'{"error":"An unexpected error has occurred, please check the server log."}'


@dataclass(frozen=True)
class Route:
    func: Callable[..., Awaitable[Any]]  # the API's own function (self first), not BentoML's wrapper
    model: type[BaseModel]  # its input model (BentoML's input_spec)
    fields: tuple[str, ...]  # passed as keyword arguments, as BentoML does


def routes(service: Any, paths: tuple[str, ...]) -> dict[str, Route]:
    """path -> Route for the plain JSON APIs of a `@bentoml.service` among `paths`; refuses an API this
    path cannot answer exactly as BentoML would."""
    out: dict[str, Route] = {}
    for method in service.apis.values():
        if method.route not in paths:
            continue
        spec = method.input_spec
        plain = not (method.batchable or method.is_stream or method.is_task or method.ctx_param)
        if not plain or getattr(spec, "__root_input__", False) or getattr(spec, "multipart_fields", None):
            raise ValueError(f"{method.route}: not a plain JSON API, leave it to BentoML")
        if not inspect.iscoroutinefunction(method.func):
            raise ValueError(f"{method.route}: a sync API runs in BentoML's thread pool, leave it there")
        fields = tuple(spec.model_fields)
        if any(f.startswith("__") for f in fields):  # *args / **kwargs: BentoML spreads them
            raise ValueError(f"{method.route}: takes *args/**kwargs, leave it to BentoML")
        out[method.route] = Route(method.func, spec, fields)
    return out


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


class FastPath:
    """Answers `routes` (from `routes()`) on the service instance BentoML created in this worker."""

    def __init__(self, service: Any, paths: tuple[str, ...]) -> None:
        self.routes = routes(service, paths)
        self.server = f"BentoML Service/{service.name}".encode()
        self._instance: Any = None

    def instance(self) -> Any:
        if self._instance is None:  # created by BentoML at startup, before any request is served
            import bentoml

            self._instance = bentoml.get_current_service()
        return self._instance

    async def answer(
        self, route: Route, scope: dict, body: bytes, send: Callable[..., Awaitable[None]]
    ) -> None:
        try:
            request = route.model.model_validate_json(body or b"{}")
        except ValidationError as exc:  # the guard's send turns this 400 into the field-naming 422
            invalid_bodies.note(scope["path"], exc.error_count())
            detail = {
                "error": f"{exc.error_count()} validation error for {exc.title}",
                "detail": exc.errors(include_context=False, include_input=False),
            }
            await self._send(send, 400, _json(detail))
            return
        kwargs = {f: getattr(request, f) for f in route.fields}
        try:
            output = await route.func(self.instance(), **kwargs)
        except Exception as exc:
            log.error("Exception on %s [%s]", scope["path"], scope["method"], exc_info=True)
            status = getattr(getattr(exc, "error_code", None), "value", 500)  # a BentoMLException's own
            await self._send(send, status if 400 <= status < 500 else 500, INTERNAL_ERROR)
            return
        if isinstance(output, Response):  # our own error answers (404, 422): sent as they are
            output.raw_headers.append((b"server", self.server))
            await output(scope, _no_receive, send)
            return
        await self._send(send, 200, output.model_dump_json().encode())

    async def _send(self, send, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"server", self.server),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _json(payload: dict) -> bytes:
    return json.dumps(payload).encode()


async def _no_receive() -> dict:  # a Response sent here never reads the request (its body is in)
    return {"type": "http.disconnect"}
