"""The OpenAPI document the server publishes (`GET /docs.json`): BentoML's own, corrected to say what the
API really answers.

BentoML 1.4.39 generates the document from the service, and three things in it were not true here
(schemathesis, with its response checks, found each; tests/integration/test_fuzz.py):
- an optional answer field (`arm`, `mean_recency_days`) lost its `null`: BentoML flattens pydantic's
  `anyOf: [X, {type: null}]` to X, so every `/recommend` answer broke its own schema. The answer
  schemas are rebuilt here from our pydantic models, in OpenAPI 3.0's form (`nullable: true`);
- the refusals (personaflow/serving/api.py: 401, 403, 413, 415, 422; BentoML's 429) were not documented,
  nor that a request body is required; the routes parse their bodies themselves (strict JSON, our 422), so the
  request bodies are documented here from the request models;
- `/metrics` is listed as an infrastructure endpoint even with metrics off (it then answers 404).

Pure functions over the document's dict; the service serves the result, built once per worker.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

ERROR_SCHEMA = "PersonaflowError"
# What the request checks (and the APIs' own refusals) may answer on every API path, and why; 408 comes
# from the reverse proxy in front (slow bodies), 429 from it (connections per client) or from BentoML's
# load shedding (requests in flight).
GUARD_ANSWERS = {
    "401": "Authorization: Bearer <token> missing or wrong (POST /events; reads when api_protect_reads)",
    "403": "a Host or Origin this server does not answer to",
    "404": "the user, item or audience inputs asked about are not known (or were erased on request)",
    "408": "behind the reverse proxy: the body did not arrive in time",
    "413": "the body is larger than the server's limit",
    "415": "the body is not application/json",
    "422": "invalid request: the field at fault and why (schema or business rule)",
    "429": "too many requests in flight in the server, or (behind the reverse proxy) too many connections "
    "from one client address; retry shortly",
    "500": "an unexpected error of the server's (logged with its traceback)",
}


def openapi30(schema: Any) -> Any:
    """pydantic's JSON Schema in OpenAPI 3.0's dialect: `anyOf [X, {type: null}]` -> X with `nullable`."""
    if isinstance(schema, list):
        return [openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi30(v) for k, v in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        else:  # a $ref cannot carry siblings in 3.0: keep the alternatives
            out["anyOf"] = rest
        out["nullable"] = True
    if out.get("const") is not None and "enum" not in out:
        out["enum"] = [out.pop("const")]
    return out


def _schema(model: type[BaseModel], schemas: dict) -> dict:
    """`model`'s JSON Schema in OpenAPI 3.0's form, its sub-models put into `schemas`."""
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in body.pop("$defs", {}).items():
        schemas[name] = openapi30(sub)
    return openapi30(body)


def published(
    spec: dict,
    answers: dict[str, type[BaseModel]],
    metrics_enabled: bool,
    requests: dict[str, type[BaseModel]] | None = None,
) -> dict:
    """BentoML's `spec`, corrected: answer schemas from `answers` (route -> model), request bodies from
    `requests` (route -> model: the FastAPI routes parse their bodies themselves, so FastAPI cannot
    document them), the refusals and a required body on every API path, `/metrics` only when metrics
    are on."""
    spec = copy.deepcopy(spec)
    paths = spec.setdefault("paths", {})
    if not metrics_enabled:
        paths.pop("/metrics", None)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string", "description": "what was wrong, naming the field"},
                       "detail": {"description": "per-field problems, when there are several"}},
    }  # fmt: skip
    error = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}}
    for route, model in (requests or {}).items():
        operation = paths.get(route, {}).get("post")
        if operation is not None:
            schemas[model.__name__] = _schema(model, schemas)
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            operation["requestBody"] = {"content": {"application/json": {"schema": ref}}}
    for route, model in answers.items():
        for method, operation in paths.get(route, {}).items():
            if method not in ("get", "post"):
                continue
            responses = operation.setdefault("responses", {})
            ok = responses.setdefault("200", {"description": "Successful Response"})
            ok["content"] = {"application/json": {"schema": _schema(model, schemas)}}
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            for status, why in GUARD_ANSWERS.items():
                operation["responses"].setdefault(status, {"description": why, **copy.deepcopy(error)})
    return spec
