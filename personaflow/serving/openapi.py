"""The OpenAPI document the server publishes (`GET /docs.json`): BentoML's own, corrected to say what the
API really answers.

BentoML 1.4.39 generates the document from the service, and three things in it were not true here
(schemathesis, with its response checks, found each; tests/integration/test_fuzz.py):
- an optional answer field (`arm`, `mean_recency_days`) lost its `null`: BentoML flattens pydantic's
  `anyOf: [X, {type: null}]` to X, so every `/recommend` answer broke its own schema. The answer
  schemas are rebuilt here from our pydantic models, in OpenAPI 3.0's form (`nullable: true`);
- the guard's answers (personaflow/serving/guard.py: 401, 403, 408, 413, 415, 422, 429, 503) were not
  documented, nor that a request body is required;
- `/metrics` is listed as an infrastructure endpoint even with metrics off (it then answers 404).

Pure functions over the document's dict; the guard serves the result, built once per worker.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

from pydantic import BaseModel

ERROR_SCHEMA = "PersonaflowError"
# What the guard (and the APIs' own refusals) may answer on every API path, and why.
GUARD_ANSWERS = {
    "401": "Authorization: Bearer <token> missing or wrong (POST /events; reads when api_protect_reads)",
    "403": "a Host or Origin this server does not answer to",
    "408": "the body did not arrive within serve_body_timeout seconds",
    "413": "the body is larger than the server's limit",
    "415": "the body is not application/json",
    "422": "invalid request: the field at fault and why (schema or business rule)",
    "429": "too many slow uploads from one client address",
    "503": "server overloaded: too many requests in flight; retry after the Retry-After seconds",
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


def answer_models(service: Any) -> dict[str, type[BaseModel]]:
    """route -> the pydantic model its API returns (its return annotation)."""
    out = {}
    for api in service.apis.values():
        returned = typing.get_type_hints(api.func).get("return")
        if isinstance(returned, type) and issubclass(returned, BaseModel):
            out[api.route] = returned
    return out


def published(spec: dict, answers: dict[str, type[BaseModel]], metrics_enabled: bool) -> dict:
    """BentoML's `spec`, corrected: answer schemas from `answers` (route -> model), the guard's answers
    and a required body on every API path, `/metrics` only when metrics are on."""
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
    for route, model in answers.items():
        operation = paths.get(route, {}).get("post")
        if operation is None:
            continue
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in body.pop("$defs", {}).items():
            schemas[name] = openapi30(sub)
        ok = operation.setdefault("responses", {}).setdefault("200", {"description": "Successful Response"})
        ok["content"] = {"application/json": {"schema": openapi30(body)}}
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
        for status, why in GUARD_ANSWERS.items():
            operation["responses"].setdefault(status, {"description": why, **copy.deepcopy(error)})
    return spec
