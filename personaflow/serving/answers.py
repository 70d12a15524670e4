"""How the API answers: bodies built against our own schemas (a failure there is our 500, never the
client's 422), a field-naming 422, and the 404 for a customer who was forgotten."""

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


def gone(user_id: str) -> JSONResponse:
    return JSONResponse({"error": f"user_id {user_id!r}: erased on request (personaflow forget); "
                                  "no data is kept or accepted for them"}, 404)  # fmt: skip
