"""Fuzz every endpoint of the running API (from its own OpenAPI spec, /docs.json) with Hypothesis: odd
JSON of every shape, near-valid bodies, wrong types, raw bytes under random content types, with and
without the token. No answer may be a 5xx, and the server must still answer normally afterwards.

More examples: PERSONAFLOW_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/integration/test_fuzz.py
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._serving_setup import running_server

EXAMPLES = int(os.environ.get("PERSONAFLOW_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run; raise EXAMPLES to look further
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz")) as srv:
        spec = httpx.get(srv["base"] + "/docs.json", timeout=10).json()
        srv["client"] = httpx.Client(base_url=srv["base"], timeout=15)
        srv["spec"] = spec
        yield srv
        srv["client"].close()


def _fields(spec: dict, path: str) -> list[str]:
    body = spec["paths"][path]["post"].get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return list(schema.get("properties", {}))


def _plausible(server, field: str) -> st.SearchStrategy:
    """Values near the valid ones for the fields we know, anything for the others."""
    today = datetime.now(UTC).replace(microsecond=0)
    near = {
        "user_id": st.sampled_from([*server["users"][:5], "nobody", " ", "x" * 129]),
        "item_id": st.sampled_from([*server["items"][:5], "no-such-item", "", "\u0000"]),
        "category": st.sampled_from(["toys", "home", "nope", ""]),
        "event_type": st.sampled_from(["view", "cart", "purchase", "return", "refund", "VIEW"]),
        "k": st.integers(min_value=-5, max_value=200),
        "quantity": st.integers(min_value=-5, max_value=2000),
        "price": st.floats(min_value=-1, max_value=200_000, allow_nan=False) | st.sampled_from([1e-300]),
        "event_ts": st.sampled_from(
            [
                today.isoformat(),
                (today - timedelta(days=2)).isoformat(),
                (today + timedelta(hours=3)).isoformat(),
                "2026-13-45T99:00:00",
                "yesterday",
                today.strftime("%Y-%m-%d %H:%M:%SZ"),
            ]
        ),
        "exclude_purchased": st.booleans(),
        "session_id": st.text(max_size=20),
    }
    return near.get(field, json_values) | json_values


def _bodies(server, path: str) -> st.SearchStrategy:
    fields = _fields(server["spec"], path)
    shaped = st.fixed_dictionaries({}, optional={f: _plausible(server, f) for f in fields})
    with_extra = st.tuples(shaped, st.dictionaries(st.text(max_size=8), json_values, max_size=2)).map(
        lambda pair: {**pair[1], **pair[0]}
    )
    return shaped | with_extra | json_values


# JSON that Python's json module would take but the standard does not (and a few near misses).
NON_STANDARD_JSON = [
    b'{"user_id": "u1", "k": NaN}',
    b'{"user_id": "u1", "k": Infinity}',
    b'{"user_id": "u1", "item_id": "i1", "event_type": "view", "price": -Infinity}',
    b'{"user_id": "u1", "user_id": "u2"}',
    b'{"user_id": "u1", "k": 1e400}',
    b'{"user_id": "\\ud800"}',
    b"\xef\xbb\xbf{}",
    b"[]",
    b"null",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/octet-stream",
    "",
    "application/jsonx",
]


def _check(resp: httpx.Response, what) -> None:
    assert resp.status_code < 500, (what, resp.status_code, resp.text[:500])


PATHS = ["/recommend", "/similar_items", "/profile", "/events", "/metadata"]


def test_the_spec_lists_every_endpoint(server):
    assert set(PATHS) <= set(server["spec"]["paths"])


@pytest.mark.parametrize("path", PATHS)
def test_fuzz_json_bodies_never_give_a_5xx(server, path):
    assert "post" in server["spec"]["paths"][path]

    @FUZZ
    @given(body=_bodies(server, path), with_token=st.booleans())
    def run(body, with_token):
        headers = server["auth"] if with_token else {}
        _check(server["client"].post(path, json=body, headers=headers), body)

    run()


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    raw=st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from(NON_STANDARD_JSON),
    content_type=st.sampled_from(CONTENT_TYPES),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE"]),
)
def test_fuzz_raw_bodies_methods_and_content_types_never_give_a_5xx(server, path, raw, content_type, method):
    headers = {**server["auth"], **({"content-type": content_type} if content_type else {})}
    _check(server["client"].request(method, path, content=raw, headers=headers), (method, raw, content_type))


def test_the_server_still_answers_after_the_fuzz(server):
    resp = server["client"].post("/recommend", json={"user_id": server["users"][0], "k": 3})
    assert resp.status_code == 200 and len(resp.json()["items"]) == 3


# -- the published schema against every answer (schemathesis, response checks on) -------------------


def test_every_answer_matches_the_published_openapi(server):
    """Every operation, valid and invalid bodies: status codes, content types, headers and bodies all as
    /docs.json says (a field documented as a number that answers null fails here).

    One check is left out: "a schema-valid body is accepted". The API refuses some schema-valid bodies
    on rules a schema cannot state (an item not in the catalogue, a segment name the shop does not
    have): those are documented 422s, each asserted in tests/integration/test_security.py."""
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(server["base"] + "/docs.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/recommend", "/profile", "/events", "/audiences"}
    failures = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=min(EXAMPLES, 40), deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def answers_as_published(case):
            case.call_and_validate(
                base_url=server["base"], headers=server["auth"], timeout=15,
                excluded_checks=[positive_data_acceptance],
            )  # fmt: skip

        try:
            answers_as_published()
        except BaseExceptionGroup as exc:  # schemathesis' FailureGroup: list every operation's failures
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{op}: {msg}" for op, msg in failures.items())
