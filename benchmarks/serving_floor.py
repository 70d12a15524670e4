"""The floor of the Python stack for the serving benchmark: bare FastAPI + uvicorn giving the same answers as
the BentoML server, none of BentoML's layers and none of our request checks.

Each route calls the same service method as the server (`Recommender.inner`, the plain class under
`@bentoml.service`: the same Ranker, reasons, answer models, forgotten ids and Feast online reads), with
FastAPI's own body parsing. The benchmark checks that both give byte-identical answers to the same
requests before timing them (`<size>_floor_same_answers`), so the ratio measures the serving stack and
nothing else: BentoML's middlewares and mount, and our Host/Origin/token/body/in-flight checks.

    uvicorn benchmarks.serving_floor:app --host 127.0.0.1 --port 3001   (env as for `bentoml serve`)
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from personaflow.serving.schemas import ProfileRequest, RecommendRequest
from personaflow.serving.service import Recommender

_service = Recommender.inner()
app = FastAPI()


def _json(body: object) -> Response:
    if isinstance(body, Response):
        return body
    return Response(body.model_dump_json(), media_type="application/json")  # type: ignore[attr-defined]


@app.post("/recommend")
async def recommend(ask: RecommendRequest) -> Response:
    return _json(await _service.recommend(**dict(ask)))


@app.post("/profile")
async def profile(ask: ProfileRequest) -> Response:
    return _json(await _service.profile(**dict(ask)))
