"""The REST API reference, from the BentoML service's own OpenAPI document.

BentoML 1.4 builds the document from the service class (`Service.openapi_spec`, which takes in the
mounted FastAPI app's routes) without starting a server, corrected as `/docs.json` serves it
(personaflow/serving/openapi.py); the page renders each path's request fields and answers, and the site
carries the document itself as reference/openapi.json.
"""

from __future__ import annotations

import inspect
import json

from . import _md


def spec() -> dict:
    from personaflow.serving.service import published_doc

    # the document /docs.json serves: BentoML's (the mounted FastAPI routes included), corrected
    return json.loads(json.dumps(published_doc(), default=str))


def _resolve(doc: dict, schema: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc.get("components", {}).get("schemas", {}).get(name, {})
    return schema or {}


def _type(doc: dict, schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(_type(doc, s) for s in schema[key])
    t = schema.get("type", "")
    if t == "array":
        return f"array of {_type(doc, schema.get('items', {}))}"
    return t or "any"


def _limits(schema: dict) -> str:
    names = {
        "minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<",
        "minLength": "min length", "maxLength": "max length", "pattern": "pattern", "enum": "one of",
    }  # fmt: skip
    parts = [f"{label} `{schema[k]}`" for k, label in names.items() if k in schema]
    for sub in schema.get("anyOf", []):
        parts += [f"{label} `{sub[k]}`" for k, label in names.items() if k in sub]
    return ", ".join(parts)


def _fields(doc: dict, schema: dict) -> str:
    schema = _resolve(doc, schema)
    props = schema.get("properties", {})
    if not props:
        return f"Schema: `{_type(doc, schema) if schema else 'any'}`\n"
    required = set(schema.get("required", []))
    rows = []
    for name, prop in props.items():
        default = json.dumps(prop["default"]) if "default" in prop else ""
        rows.append([_md.code(name), _type(doc, prop), "yes" if name in required else "",
                     _md.code(default), _limits(prop), prop.get("description", "")])  # fmt: skip
    title = schema.get("title", "")
    head = f"`{title}`:\n\n" if title else ""
    return head + _md.table(["field", "type", "required", "default", "limits", "description"], rows)


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def render(doc: dict | None = None) -> str:
    doc = doc or spec()
    info = doc.get("info", {})
    out = [
        "# REST API\n",
        f"Generated at build time from the OpenAPI document of the BentoML service "
        f"`{info.get('title', '')}` (OpenAPI {doc.get('openapi', '')}, built from "
        "`personaflow/serving/service.py` without starting a server); the document itself: "
        "[openapi.json](openapi.json). A running server serves the same at `/docs.json`.\n",
    ]
    paths = doc.get("paths", {})
    rows = [[f"`{m.upper()}`", f"`{p}`", _first_paragraph(op.get("summary") or op.get("description") or "")]
            for p, ops in paths.items() for m, op in ops.items()]  # fmt: skip
    out.append(_md.table(["method", "path", "summary"], rows))
    for path, ops in paths.items():
        for method, op in ops.items():
            out.append(f"\n## `{method.upper()} {path}`\n")
            if op.get("description"):
                out.append(inspect.cleandoc(op["description"]) + "\n")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, media in body.items():
                out.append(f"**Request** (`{ctype}`): " + _fields(doc, media.get("schema", {})))
            for code, resp in op.get("responses", {}).items():
                content = resp.get("content", {})
                desc = resp.get("description", "")
                if content:
                    for ctype, media in content.items():
                        out.append(f"**{code}** {desc} (`{ctype}`): " + _fields(doc, media.get("schema", {})))
                else:
                    out.append(f"**{code}** {desc}\n")
    return "\n".join(out)
