"""BentoML service: recommendations, similar items, profiles, live events and model metadata over HTTP.

The model is whatever the production pointer names (not BentoML's `:latest`). It is loaded in
`__init__`, never at import; a watcher thread re-loads it when the pointer file (or the item
catalogue) changes and swaps one immutable `Ranker` reference (personaflow/serving/hotswap.py), so a promotion
or a rollback is live without a restart and a request in flight finishes on the model it started with.
Profiles and live events go through one Feast FeatureStore per process (personaflow/serving/online.py);
accepted
events are first appended and fsynced to the landing area (personaflow/ingest/live.py, group commit), which
the nightly run loads.

Workers: PERSONAFLOW_SERVE_WORKERS processes, which needs PERSONAFLOW_REDIS_URL: then the online store,
the live counters and the /events dedupe are in Redis and nothing two workers must agree on is in a
process. What stays per process is either a cache of a shared file, re-read when the file changes (the
model and its pointer, the A/B test state, erased customers, audience inputs) or a limit meant per
process (the in-flight limit, BentoML's `traffic.max_concurrency`: the server takes workers x the limit).

The API is a FastAPI app (personaflow/serving/api.py) mounted in the service with BentoML's documented
`@bentoml.asgi_app`; its routes (below the class) call this worker's service instance. Bad input
answers 4xx naming the field, overload answers 429; POST /events needs a bearer token, bodies are JSON
only (FastAPI dependencies, personaflow/serving/api.py). Slow clients are cut by the reverse proxy
(deploy/nginx/personaflow.conf).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import bentoml
from fastapi import Depends
from starlette.responses import JSONResponse, Response

from personaflow.core import settings
from personaflow.core.forgotten import Forgotten
from personaflow.core.tool_env import export_tool_env
from personaflow.ingest.live import LiveLog, live_record
from personaflow.profiles.audiences import AudienceError, AudienceSpec
from personaflow.quality import contract
from personaflow.serving.answers import answer as _answer
from personaflow.serving.answers import gone as _gone
from personaflow.serving.answers import invalid as _invalid
from personaflow.serving.answers import no_profile as _no_profile
from personaflow.serving.api import Checks, Policy, make_app
from personaflow.serving.audiences import AudienceInputs
from personaflow.serving.audiences import answer as answer_audience
from personaflow.serving.experiment import ExperimentRouter
from personaflow.serving.hotswap import ModelWatcher
from personaflow.serving.live_counters import RedisSeen
from personaflow.serving.online import OnlineFeatures, purchased_in
from personaflow.serving.openapi import published
from personaflow.serving.personas import PersonaTexts
from personaflow.serving.process import serve_workers
from personaflow.serving.profile import profile_fields
from personaflow.serving.ranking import Ranker
from personaflow.serving.reviews import ReviewSummaries
from personaflow.serving.schemas import (
    MAX_K,
    AudienceAnswer,
    AudienceRequest,
    EventAccepted,
    EventRequest,
    Metadata,
    Profile,
    ProfileRequest,
    Recommendations,
    RecommendRequest,
    SimilarItems,
    SimilarItemsRequest,
)
from personaflow.serving.shop_tables import ShopTables

log = logging.getLogger(__name__)

API_PATHS = ("/recommend", "/similar_items", "/profile", "/events", "/audiences", "/metadata")
# route -> (request model or None, answer model): what /docs.json documents for each API
MODELS = {
    "/recommend": (RecommendRequest, Recommendations), "/similar_items": (SimilarItemsRequest, SimilarItems),
    "/profile": (ProfileRequest, Profile), "/events": (EventRequest, EventAccepted),
    "/audiences": (AudienceRequest, AudienceAnswer), "/metadata": (None, Metadata),
}  # fmt: skip
__all__ = ["MAX_K", "Recommender", "app"]

app = make_app()
# The policy (tokens, Host names) is the one this worker's service instance loaded at start.
checks = Checks(lambda: bentoml.get_current_service().policy)
READ = [Depends(checks.host), Depends(checks.origin), Depends(checks.reader)]


# Each route's checks and body, parsed strictly by its request model (personaflow/serving/api.py: 403, 401,
# 415, 413, 422), as one dependency.
RecommendBody = Annotated[RecommendRequest, Depends(checks.request(RecommendRequest))]
SimilarItemsBody = Annotated[SimilarItemsRequest, Depends(checks.request(SimilarItemsRequest))]
ProfileBody = Annotated[ProfileRequest, Depends(checks.request(ProfileRequest))]
AudienceBody = Annotated[AudienceRequest, Depends(checks.request(AudienceRequest))]
EventBody = Annotated[EventRequest, Depends(checks.request(EventRequest, write=True))]


def _json(body: Any) -> Response:
    """An answer model as JSON (one model_dump_json, no second validation); our own Responses as they are."""
    if isinstance(body, Response):
        return body
    return Response(body.model_dump_json(), media_type="application/json")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


METRICS_ENABLED = False  # /docs.json then leaves /metrics out (personaflow/serving/openapi.py)
# Per-request work BentoML lets a service turn off, all of it costing more than our scoring: no access
# log, no Prometheus metrics middleware (/metrics then has nothing of ours), and the OpenTelemetry
# middleware (always installed) passes our API paths straight through (no span per request).
_settings = settings.load()
_workers = serve_workers(_settings)


# Load shedding is BentoML's: past `max_concurrency` requests in flight (which it divides among the
# workers, hence the product: the setting is per worker) it answers 429 at once rather than queue.
@bentoml.service(
    name="personaflow-recommender",
    workers=_workers,
    traffic={"timeout": 10, "max_concurrency": _settings.serve_max_in_flight * _workers},
    logging={"access": {"enabled": False}},
    metrics={"enabled": METRICS_ENABLED, "namespace": "personaflow"},
    tracing={"excluded_urls": list(API_PATHS)},
)
@bentoml.asgi_app(app, path="/")
class Recommender:
    def __init__(self) -> None:
        s = settings.load()
        export_tool_env(s)  # the server's process edge: BentoML and Feast see our paths from here on
        self.policy = Policy.from_settings(s)  # tokens (generated on the first start), Host names
        self.pointer = s.production_pointer
        self.online = OnlineFeatures(s.feature_repo_dir, s.features_dir)
        shared = self.online.counters  # Redis: the dedupe of /events is shared by the workers too
        self.live = LiveLog(s.landing_dir, seen=RedisSeen(shared.client) if shared is not None else None)
        self.audience_inputs = AudienceInputs(s.features_dir)
        self.reviews = ReviewSummaries(s.features_dir)  # /profile's review fields, where present
        self.persona_texts = PersonaTexts(s.features_dir)  # what tonight's personas mean
        self.shop_tables = ShopTables(s.features_dir)  # /profile's demographics and campaigns, where present
        # erased customers (personaflow forget): answered as ids never seen, and no new data
        self.forgotten = Forgotten(s)
        self.experiment = ExperimentRouter(s.home)  # A/B arms while `personaflow abtest` runs one
        watcher = ModelWatcher(self.pointer, s.features_dir)
        self.ranker, self.meta = watcher.build()
        log.info("serving %s from pointer %s", self.ranker.tag, self.pointer)
        watcher.start(lambda: self.ranker, self._swap)
        # Everything loaded so far (torch, pandas, Feast, the model) lives as long as the process: moved
        # out of the collector's reach, a full collection no longer walks it in the middle of a request
        # (those pauses were the /recommend p99 tail).
        gc.freeze()

    def _swap(self, ranker: Ranker, meta: dict) -> None:
        # One assignment each; a request reads self.ranker once, so it never mixes two models.
        self.meta = meta
        self.ranker = ranker

    # -- the answers ------------------------------------------------------------------------------------
    async def recommend(
        self, user_id: str, k: int = 10, exclude_purchased: bool = False, category: str | None = None
    ) -> Recommendations:
        """Top-k items for a user, best first, each with its reason (personaflow/serving/reasons.py). Users
        the model does not know get their RFM segment's
        best sellers (`fallback: "segment"`) or, unknown to the online store too, the popularity list
        (`fallback: "popularity"`); `exclude_purchased` reads the user's purchases from the online
        store, live purchases included; `category` keeps one catalogue category. A forgotten customer
        gets exactly an unknown id's answer, and no exposure of theirs is recorded."""
        forgotten = user_id in self.forgotten
        # A forgotten id is looked up nowhere: a model or purchase history loaded before the deletion
        # may still hold it; "" is no one's id (ids are non-empty), so they get what an unknown id gets.
        who = "" if forgotten else user_id
        started = time.perf_counter()
        arm, ranker = self.experiment.route(user_id, self.ranker)  # production unless an A/B test runs
        if category is not None and not ranker.knows_category(category):
            return _invalid("category", f"unknown category {category!r}")
        known = not forgotten and ranker.knows_user(user_id)
        # The online store is only read when needed: a known user without filters costs no lookup; an
        # unknown id's row is empty (no purchases, no segment), which is what a forgotten id gets.
        read = not forgotten and (exclude_purchased or not known)
        row = await self.online.user_async(user_id) if read else {}
        exclude = purchased_in(row) if exclude_purchased and row else None
        segment = None if known else row.get("rfm_segment")
        items, fallback, excluded = ranker.recommend(who, k, exclude, category, segment)
        reasons = ranker.reasons(who, [i for i, _, _ in items], segment)
        body = _answer(
            Recommendations,
            user_id=user_id,
            # plain dicts: validated inside _answer, so a bad value is our 500, not the client's 422
            items=[
                dict(
                    item_id=i,
                    score=s,
                    category=c,
                    name=ranker.name_of(i),
                    reason=why.text,
                    reason_source=why.source,
                    reason_item=why.item_id,
                )
                for (i, s, c), why in zip(items, reasons, strict=True)
            ],
            model_version=ranker.tag,
            fallback=fallback,
            excluded=excluded,
            arm=arm,
        )
        # the exposure is durable before the answer leaves (the A/B report attributes purchases to it)
        if forgotten:
            return body
        exposed = self.experiment.expose(user_id, arm, ranker.tag, [i for i, _, _ in items], _ms(started))
        if exposed is not None:  # group commit: answers in flight share one fsync
            await asyncio.wrap_future(exposed)
        return body

    async def similar_items(self, item_id: str, k: int = 10) -> SimilarItems:
        """Items bought together with `item_id` (co-purchase confidence, best first), then its nearest items
        by cosine of the model's item embeddings, up to k; each item names its `source`."""
        ranker = self.ranker
        items = ranker.similar(item_id, k)
        if items is None:
            return JSONResponse(
                {"error": f"item_id {item_id!r}: not in model {ranker.tag}, the catalogue or co-purchases"},
                404,
            )
        return _answer(
            SimilarItems,
            item_id=item_id,
            items=[
                dict(item_id=i, score=s, category=c, name=ranker.name_of(i), source=src)
                for i, s, c, src in items
            ],
            model_version=ranker.tag,
        )

    async def profile(self, user_id: str) -> Profile:
        """The user's RFM scores, RFM and K-means segments and churn score from the nightly run, plus live
        activity since then (one online-store read for all of it). A forgotten customer gets an unknown
        id's 404."""
        if user_id in self.forgotten:
            return _no_profile(user_id)
        row = await self.online.user_async(user_id)
        fields = profile_fields(user_id, row, self.ranker.category_by_item)
        if fields is None:
            return _no_profile(user_id)
        return _answer(
            Profile, **fields, **self.persona_texts.fields(fields["persona_id"]),
            reviews=self.reviews.get(user_id), **self.shop_tables.fields(user_id),
        )  # fmt: skip

    async def audiences(self, limit: int = 100, **definition: Any) -> AudienceAnswer:
        """Customers picked by profile (RFM / K-means segment, churn range, R/F/M ranges, country, what
        they bought), from tonight's profiles: size, share, the first `limit` members."""
        try:
            spec = AudienceSpec(**definition)
            found = answer_audience(self.audience_inputs, spec, limit)
        except AudienceError as exc:
            return _invalid(str(exc).split("=")[0].split(" ")[0], str(exc))
        if found is None:
            missing = "no audience inputs yet: the nightly profiles.audiences task writes them"
            return JSONResponse({"error": missing}, 404)
        return _answer(AudienceAnswer, **found)

    # async: requests wait for their fsync on the event loop, so many share one (group commit); a sync
    # API would run them one at a time in BentoML's single-thread pool.
    async def events(
        self,
        user_id: str,
        item_id: str,
        event_type: str,
        quantity: int = 1,
        price: float | None = None,
        event_ts: datetime | None = None,
        session_id: str | None = None,
    ) -> EventAccepted:
        """Accept a live event: appended and fsynced to today's landing file (the nightly run loads it),
        then added to the user's live features, so the next /profile and /recommend see it."""
        if user_id in self.forgotten:
            return _gone(user_id)
        now = datetime.now(UTC)
        ts = event_ts or now
        if price is None:
            known = self.ranker.catalogue["price"].get(item_id)
            if known is None:
                return _invalid("price", f"required: item {item_id!r} is not in the catalogue")
            price = float(known)
            if not contract.MIN_PRICE <= price <= contract.MAX_PRICE:  # the batch would refuse the row
                return _invalid(
                    "price",
                    f"required: the catalogue price {price:g} of item {item_id!r} is outside "
                    f"{contract.MIN_PRICE}..{contract.MAX_PRICE:.0f}",
                )
        record = live_record(user_id, item_id, event_type, ts, now, session_id, quantity, price)
        # durable before anything else happens; an exact duplicate of today's event is not written twice
        path, earlier = await asyncio.wrap_future(self.live.submit(ts.date(), record))
        if earlier is not None:
            try:
                n_live = (await self.online.user_async(user_id))["live"]["n_events"]
            except Exception:  # the answer does not depend on it
                log.exception("live event count of %r not readable", user_id)
                n_live = 0
            return EventAccepted(
                event_id=earlier,
                batch_date=ts.date().isoformat(),
                landing_file=str(path),
                live_events=n_live,
                duplicate=True,
            )
        try:
            n_live = await self.online.record_async(user_id, ts.date(), record)
        except Exception:  # the event is safe on disk; the nightly run will include it
            log.exception("event %s is in %s but not in the online store", record["event_id"], path)
            n_live = 0
        return _answer(
            EventAccepted,
            event_id=record["event_id"],
            batch_date=ts.date().isoformat(),
            landing_file=str(path),
            live_events=n_live,
        )

    async def metadata(self) -> Metadata:
        """The production model being served (also answers GET /metadata)."""
        as_of = self.online.as_of()
        return Metadata(
            **self.meta, features_as_of=as_of.isoformat() if as_of else None, worker_pid=os.getpid()
        )


# -- API: the FastAPI routes, each given this worker's service instance ------------------------------
# Looked up in the route, not injected: a dependency is solved on every request and costs more than this
# context-variable read (BentoML's FastAPI class views inject `self` with a plain `def`, which FastAPI runs
# in its thread pool).
_service = bentoml.get_current_service


def _doc(name: str) -> str | None:
    return inspect.getdoc(getattr(Recommender.inner, name))


@app.post("/recommend", description=_doc("recommend"))
async def recommend(ask: RecommendBody) -> Response:
    return _json(await _service().recommend(**dict(ask)))


@app.post("/similar_items", description=_doc("similar_items"))
async def similar_items(ask: SimilarItemsBody) -> Response:
    return _json(await _service().similar_items(**dict(ask)))


@app.post("/profile", description=_doc("profile"))
async def profile(ask: ProfileBody) -> Response:
    return _json(await _service().profile(**dict(ask)))


@app.post("/audiences", description=_doc("audiences"))
async def audiences(ask: AudienceBody) -> Response:
    return _json(await _service().audiences(**dict(ask)))


@app.post("/events", description=_doc("events"))
async def events(ask: EventBody) -> Response:
    return _json(await _service().events(**dict(ask)))


# GET and POST: it takes no input, so a body is checked (JSON, size) and then dropped, not parsed.
@app.get("/metadata", dependencies=[*READ, Depends(checks.body)], description=_doc("metadata"))
@app.post("/metadata", dependencies=[*READ, Depends(checks.body)], description=_doc("metadata"))
async def metadata() -> Response:
    return _json(await _service().metadata())


# The document BentoML builds (our FastAPI routes included), corrected (personaflow/serving/openapi.py);
# built once per worker, on the first GET.
_docs: list[bytes] = []


def published_doc() -> dict:
    """/docs.json: BentoML's document of the service, corrected (also the site's REST reference)."""
    return published(Recommender.openapi_spec.asdict(), {r: m[1] for r, m in MODELS.items()},
                     METRICS_ENABLED, requests={r: m[0] for r, m in MODELS.items() if m[0]})  # fmt: skip


@app.get("/docs.json", include_in_schema=False)
async def docs_json() -> Response:
    if not _docs:
        _docs.append(json.dumps(published_doc()).encode())
    return Response(_docs[0], media_type="application/json")
