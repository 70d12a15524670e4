"""BentoML service: POST /recommend answers top-k items from the production model.

The model is whatever the production pointer names (not BentoML's `:latest`). It is loaded in
`__init__`, never at import, and re-loaded when the pointer file changes (checked at most once a
second), so a promotion or rollback is live without a restart. Invalid input answers 422 naming the
field: BentoML answers 400 for pydantic errors, so a small ASGI middleware re-labels those.
"""

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import bentoml
from pydantic import BaseModel, Field, StringConstraints

from personaflow import settings
from training.registry import LoadedModel, load_production

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
MAX_K = 100

UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
TopK = Annotated[int, Field(ge=1, le=MAX_K, description=f"number of items, 1..{MAX_K}")]


class ScoredItem(BaseModel):
    item_id: str
    score: float


class Recommendations(BaseModel):
    user_id: str
    items: list[ScoredItem]
    model_version: str
    fallback: Literal["popularity"] | None = None


class ValidationAs422:
    """ASGI middleware: BentoML's 400 for a pydantic validation error becomes 422 with a readable message.

    Only 400s whose JSON body carries pydantic's `detail` list are touched; anything else passes as is.
    """

    def __init__(self, app, paths: tuple[str, ...] = ("/recommend",)) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
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
            status, body = _rewrite(b"".join(chunks))
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, relabel)


def _rewrite(body: bytes) -> tuple[int, bytes]:
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


@bentoml.service(name="personaflow-recommender", workers=1, traffic={"timeout": 10})
class Recommender:
    def __init__(self) -> None:
        self.pointer = Path(
            os.environ.get("PERSONAFLOW_PRODUCTION_POINTER") or settings.load().production_pointer
        )
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._mtime = self._pointer_mtime()
        self.model: LoadedModel = load_production(self.pointer)
        log.info("serving %s from pointer %s", self.model.tag, self.pointer)

    def _pointer_mtime(self) -> int | None:
        try:
            return self.pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            mtime = self._pointer_mtime()
            if mtime is None or mtime == self._mtime:
                return
            try:
                model = load_production(self.pointer)
            except Exception:  # keep serving the old model rather than failing requests
                log.exception("reload from %s failed; still serving %s", self.pointer, self.model.tag)
                return
            self._mtime = mtime
            if model.tag != self.model.tag:
                log.info("production model changed: %s -> %s", self.model.tag, model.tag)
            self.model = model

    @bentoml.api(route="/recommend")
    def recommend(self, user_id: UserId, k: TopK = 10) -> Recommendations:
        """Top-k items for a user; unknown users get the popularity list, flagged in `fallback`."""
        self._maybe_reload()
        model = self.model
        items, fallback = model.recommend(user_id, k)
        return Recommendations(
            user_id=user_id,
            items=[ScoredItem(item_id=i, score=s) for i, s in items],
            model_version=model.tag,
            fallback=fallback,
        )


Recommender.add_asgi_middleware(ValidationAs422)
