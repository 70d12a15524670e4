"""A forgotten customer, asked about on a running `bentoml serve`, is answered exactly as an id the
platform never saw (issue 26): /profile gives the same 404, /recommend the same fallback list (no
"erased on request" that would tell a caller the id was a customer), whatever written form the id
comes in (`14911.0`, `014911`); /events refuses them in every form and writes nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from personaflow.core import settings as config
from personaflow.pipeline.forget import forget_user
from tests._serving_setup import running_server

NUMERIC = "14911"  # in the marts (a profile), unknown to the model
UNKNOWN = "99999"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("forget-serving")
    with running_server(home, extra_env={"PERSONAFLOW_HOME": str(home)}, extra_users=(NUMERIC,)) as srv:
        yield srv


def post(server, path: str, body) -> httpx.Response:
    return httpx.post(server["base"] + path, json=body, headers=server["auth"], timeout=10)


def _live_lines(server) -> list[dict]:
    return [json.loads(ln) for p in (server["home"] / "landing").rglob("*.jsonl") for ln in p.open()]


def test_forgotten_ids_are_answered_like_unknown_ones(server, monkeypatch):
    home, model_user = server["home"], server["users"][0]  # users[0] bought items[0]
    profile = post(server, "/profile", {"user_id": "14911.0"})
    assert profile.status_code == 200 and profile.json()["user_id"] == NUMERIC  # one customer, any form
    assert post(server, "/recommend", {"user_id": model_user}).json()["fallback"] is None
    event = {"user_id": "014911", "item_id": server["items"][1], "event_type": "view"}
    assert post(server, "/events", event).status_code == 200
    assert [e["user_id"] for e in _live_lines(server)] == [NUMERIC]  # landed in its normal form

    for key, value in {**server["env"], "PERSONAFLOW_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
                       "PERSONAFLOW_WAREHOUSE": str(home / "warehouse.duckdb"),
                       "PERSONAFLOW_REPORTS_DIR": str(home / "reports")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PERSONAFLOW_FORGET_KEY", raising=False)
    monkeypatch.delenv("PERSONAFLOW_FORGET_KEY_FILE", raising=False)
    s = config.load()
    for user in ("14911.0", model_user):
        result = forget_user(user, s)
        assert result["still_holding"] == [] and result["warehouse_rows"] > 0, result
    assert _live_lines(server) == []

    for user, forms in ((NUMERIC, (NUMERIC, "14911.0", "014911")), (model_user, (model_user,))):
        for asked in forms:
            gone = post(server, "/profile", {"user_id": asked})
            never = post(server, "/profile", {"user_id": UNKNOWN})
            assert gone.status_code == never.status_code == 404
            assert gone.text.replace(repr(user), repr(UNKNOWN)) == never.text and "erased" not in gone.text
            for extra in ({}, {"k": 5, "exclude_purchased": True}):
                gone = post(server, "/recommend", {"user_id": asked, **extra})
                never = post(server, "/recommend", {"user_id": UNKNOWN, **extra})
                assert gone.status_code == never.status_code == 200
                gone_body, never_body = gone.json(), never.json()
                assert gone_body.pop("user_id") == user and never_body.pop("user_id") == UNKNOWN
                assert gone_body == never_body and gone_body["fallback"] == "popularity"
            # events: refused in every form (only the shop's token may send them), nothing written
            refused = post(server, "/events", {**event, "user_id": asked})
            assert refused.status_code == 404
    assert _live_lines(server) == []
