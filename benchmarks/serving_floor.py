"""The floor of the Python stack for the serving benchmark: bare FastAPI + uvicorn doing the same lookup
and scoring as the BentoML service (same Ranker, same Feast online reads), none of BentoML's layers.

    uvicorn benchmarks.serving_floor:app --host 127.0.0.1 --port 3001   (env as for `bentoml serve`)
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from personaflow.core import settings
from personaflow.serving.online import OnlineFeatures, load_catalogue
from personaflow.serving.ranking import Ranker
from personaflow.training.registry.loading import load_production

_s = settings.load()
_ranker = Ranker(
    load_production(Path(os.environ.get("PERSONAFLOW_PRODUCTION_POINTER") or _s.production_pointer)),
    load_catalogue(_s.features_dir),
)
_online = OnlineFeatures(_s.feature_repo_dir, _s.features_dir)
app = FastAPI()


class Ask(BaseModel):
    user_id: str
    k: int = 10


@app.post("/recommend")
async def recommend(ask: Ask) -> dict:
    items, fallback, _ = _ranker.recommend(ask.user_id, ask.k)
    return {
        "user_id": ask.user_id,
        "items": [{"item_id": i, "score": s, "category": c} for i, s, c in items],
        "model_version": _ranker.tag,
        "fallback": fallback,
    }


@app.post("/profile")
async def profile(ask: Ask) -> dict:
    row = _online.user(ask.user_id)
    return {k: v for k, v in row.items() if k not in ("live", "as_of")}
