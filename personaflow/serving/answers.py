"""How the API answers: bodies built against our own schemas (a failure there is our 500, never the
client's 422), a field-naming 422, the 404 for a user with no profile (the same for a customer who was
forgotten: the answer must not tell a caller the id was ever a customer), and the refusal of events for
a forgotten customer (POST /events, which only the shop's own token may call)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

log = logging.getLogger("personaflow.serving.service")


def invalid(field: str, message: str, status: int = 422) -> JSONResponse:
    detail = [{"loc": [field], "msg": message, "type": "value_error"}]
    return JSONResponse({"error": f"invalid request: {field}: {message}", "detail": detail}, status)


class AnswerError(RuntimeError):
    """Our own answer failed its schema: a fault of ours (or of the shop's data), never the client's."""


def answer(model: type[BaseModel], **fields: Any) -> Any:
    """Build a response body; a validation failure here is a 500 with a log line, not a 422 that would
    blame the request."""
    try:
        return model(**fields)
    except ValidationError as exc:
        log.error("answer %s failed its own schema: %s", model.__name__, exc.errors(include_url=False))
        raise AnswerError(f"internal error building {model.__name__}") from None


def no_profile(user_id: str) -> JSONResponse:
    """/profile of an id neither the nightly features nor live events know, or of a forgotten one."""
    message = f"user_id {user_id!r}: no profile (not in the nightly features, no live events)"
    return JSONResponse({"error": message}, 404)


def gone(user_id: str) -> JSONResponse:
    """POST /events for a forgotten customer (bearer token only: the shop asked to forget them)."""
    return JSONResponse({"error": f"user_id {user_id!r}: erased on request (personaflow forget); "
                                  "no data is kept or accepted for them"}, 404)  # fmt: skip
