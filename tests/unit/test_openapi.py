"""The published OpenAPI document: optional fields stay nullable, the guard's answers are documented."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from personaflow.serving.openapi import GUARD_ANSWERS, openapi30, published


class Answer(BaseModel):
    arm: Literal["control", "challenger"] | None = Field(None, description="the arm")
    days: float | None = Field(description="mean days")
    n: int


def test_optional_fields_become_nullable_in_openapi_3_0():
    schema = openapi30(Answer.model_json_schema())
    assert schema["properties"]["arm"] == {
        "enum": ["control", "challenger"], "type": "string", "default": None, "description": "the arm",
        "title": "Arm", "nullable": True,
    }  # fmt: skip
    assert schema["properties"]["days"]["type"] == "number" and schema["properties"]["days"]["nullable"]
    assert "nullable" not in schema["properties"]["n"] and "anyOf" not in str(schema)


def test_published_document_lists_what_the_server_answers():
    raw = {
        "paths": {
            "/metrics": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/recommend": {
                "post": {"requestBody": {"content": {}}, "responses": {"200": {"description": "ok"}}}
            },
        },
    }  # fmt: skip
    doc = published(raw, {"/recommend": Answer}, metrics_enabled=False)
    assert "/metrics" not in doc["paths"] and "/metrics" in raw["paths"]  # the input is left as it was
    op = doc["paths"]["/recommend"]["post"]
    assert op["requestBody"]["required"] is True
    assert set(GUARD_ANSWERS) <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["arm"]["nullable"]
    assert "/metrics" in published(raw, {}, metrics_enabled=True)["paths"]
