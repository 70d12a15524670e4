"""A real `bentoml serve` on 127.0.0.1 over a tiny promoted model and a tiny Feast store.

One server for the whole module; the in-flight limit is low (8) so the overload test can reach it.
"""

import asyncio
import threading
import time

import httpx
import pandas as pd
import pytest

from personaflow.profiles.personas import NO_PURCHASE_TEXT
from personaflow.training.registry.pointer import promote, rollback
from tests._serving_setup import CATEGORIES, COLD_USER, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("serving"), max_in_flight=8) as srv:
        yield srv
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{srv['base']}/recommend", json={"user_id": "u1"}, timeout=2)


def post(server, path: str, body) -> httpx.Response:
    return httpx.post(server["base"] + path, json=body, headers=server["auth"], timeout=10)


def test_known_user_gets_k_items_and_model_version(server):
    user = server["users"][3]
    body = post(server, "/recommend", {"user_id": user, "k": 5}).json()
    assert body["user_id"] == user and body["model_version"] == server["tag"] and body["fallback"] is None
    assert len(body["items"]) == 5
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert {it["item_id"] for it in body["items"]} <= set(server["items"])
    assert len(post(server, "/recommend", {"user_id": user}).json()["items"]) == 10


def test_unknown_user_gets_popularity_fallback(server):
    body = post(server, "/recommend", {"user_id": "never-seen", "k": 3}).json()
    assert body["fallback"] == "popularity"
    assert [it["item_id"] for it in body["items"]] == [i for i, _ in server["popular"][:3]]


def test_cold_user_with_a_segment_gets_the_segments_best_sellers(server):
    # Known to the online store (Champions) but not to the model: Champions bought segment_hit (2 buyers)
    # and items[0] (1 buyer); the rest of k comes from overall popularity.
    body = post(server, "/recommend", {"user_id": COLD_USER, "k": 4}).json()
    ids = [it["item_id"] for it in body["items"]]
    assert body["fallback"] == "segment" and ids[:2] == [server["segment_hit"], server["items"][0]], body
    assert [it["score"] for it in body["items"][:2]] == [2.0, 1.0]
    rest = [i for i, _ in server["popular"] if i not in ids[:2]][:2]
    assert ids[2:] == rest and len(set(ids)) == 4
    # A category filter that leaves none of the segment's items: plain popularity, flagged so.
    other = next(
        c for c in CATEGORIES if c not in {body["items"][0]["category"], body["items"][1]["category"]}
    )
    filtered = post(server, "/recommend", {"user_id": COLD_USER, "k": 2, "category": other}).json()
    assert filtered["fallback"] == "popularity" and {it["category"] for it in filtered["items"]} == {other}


def test_category_filter_and_exclude_purchased(server):
    user = server["users"][0]  # bought items[0] in the nightly history
    toys = post(server, "/recommend", {"user_id": user, "k": 5, "category": "toys"}).json()
    assert len(toys["items"]) == 5 and {it["category"] for it in toys["items"]} == {"toys"}
    everything = post(server, "/recommend", {"user_id": user, "k": 60}).json()
    assert server["items"][0] in {it["item_id"] for it in everything["items"]}
    excluded = post(server, "/recommend", {"user_id": user, "k": 60, "exclude_purchased": True}).json()
    assert server["items"][0] not in {it["item_id"] for it in excluded["items"]}
    assert excluded["excluded"] == 1 and len(excluded["items"]) == 59


def test_similar_items_blend_co_purchase_confidence_then_embeddings(server):
    items = server["items"]
    body = post(server, "/similar_items", {"item_id": items[5], "k": 4}).json()
    assert body["method"] == "co_purchase_confidence_then_embedding_cosine"
    got = [(it["item_id"], it["source"]) for it in body["items"]]
    # Rules with lift > 1 on >= 3 orders, best score (confidence) first; the 2-order and the lift-0.8
    # rule are left out.
    assert got[:2] == [(items[9], "co_purchase"), (items[11], "co_purchase")], got
    assert [it["score"] for it in body["items"][:2]] == [0.4, 0.3]
    rest = body["items"][2:]
    assert len(rest) == 2 and {it["source"] for it in rest} == {"embedding"}
    assert not {it["item_id"] for it in rest} & {items[5], items[9], items[11], items[12], items[13]}
    scores = [it["score"] for it in rest]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    only_rules = post(server, "/similar_items", {"item_id": items[5], "k": 1}).json()["items"]
    assert [(it["item_id"], it["source"]) for it in only_rules] == [(items[9], "co_purchase")]
    no_rules = post(server, "/similar_items", {"item_id": items[20], "k": 3}).json()["items"]
    assert len(no_rules) == 3 and {it["source"] for it in no_rules} == {"embedding"}
    missing = post(server, "/similar_items", {"item_id": "no-such-item"})
    assert missing.status_code == 404 and "no-such-item" in missing.json()["error"]


def test_every_recommended_item_says_why(server):
    users, items = server["users"], server["items"]
    # users[0] bought items[0] on the nightly as-of day (one day): the model ranks it somewhere in 60
    body = post(server, "/recommend", {"user_id": users[0], "k": 60}).json()
    why = {it["item_id"]: it for it in body["items"]}
    assert why[items[0]]["reason_source"] == "history" and why[items[0]]["reason"] == "bought today"
    assert all(it["reason"] and it["reason_source"] != "history" for i, it in why.items() if i != items[0])
    # nothing else names an item: users[0] bought nothing that a rule or a name links to
    assert {it["reason_item"] for it in body["items"]} == {None}
    # users[0] is a Champion: the segment's best seller says so, the shop's top 100 say best seller
    hit = server["segment_hit"]
    assert why[hit]["reason"] == "popular with Champions", why[hit]
    best = {i for i, _ in server["popular"][:100]} - {items[0], hit}
    assert {why[i]["reason_source"] for i in best if i in why} == {"popularity"}
    # users[2] bought the segment's best seller: their own history wins over the segment
    theirs = post(server, "/recommend", {"user_id": users[2], "k": 60}).json()["items"]
    assert next(it for it in theirs if it["item_id"] == hit)["reason"] == "bought today"
    # the cold Champion's segment list says so; the popularity top-up says best seller
    cold = post(server, "/recommend", {"user_id": COLD_USER, "k": 4}).json()["items"]
    assert [it["reason"] for it in cold[:2]] == ["popular with Champions"] * 2
    assert {it["reason_source"] for it in cold[2:]} == {"popularity"}


def test_profile_from_online_store_and_404_for_unknown(server):
    user = server["users"][2]
    body = post(server, "/profile", {"user_id": user}).json()
    assert body["segment"] == "Champions" and body["r_score"] == 3
    assert body["n_views"] == 7 and body["monetary"] == pytest.approx(30.0)
    assert body["features_as_of"] == server["as_of"].isoformat() and body["live_events"] == 0
    missing = post(server, "/profile", {"user_id": "nobody-at-all"})
    assert missing.status_code == 404 and "nobody-at-all" in missing.json()["error"]


def test_profile_answers_the_nightly_segments_and_churn_model(server):
    """The segments and churn stages' outputs went through Feast (snapshot -> materialize -> online
    store) into /profile; churn_risk rests on the model's score (planted: 15+ days without an order)."""
    churn, segments = server["profiles"]["churn"], server["profiles"]["segments"]
    assert churn["status"] == segments["status"] == "ok" and churn["users_scored_as_of"] == 21
    features = server["home"] / "features"
    scores = pd.read_parquet(features / "user_churn.parquet").set_index("user_id")["churn_score"]
    labels = pd.read_parquet(features / "user_segment.parquet").set_index("user_id")
    seen = {}
    for n in (0, 2, 14, 19):  # recency_days = n
        user = server["users"][n]
        body = post(server, "/profile", {"user_id": user}).json()
        assert body["churn_basis"] == "model" and body["churn_score"] == pytest.approx(scores[user]), body
        expected = "high" if body["churn_score"] >= 0.6 else "medium" if body["churn_score"] >= 0.3 else "low"
        assert body["churn_risk"] == expected
        assert body["segment_id"] == labels.loc[user, "segment_id"]
        assert body["segment_label"] == labels.loc[user, "segment_label"] and body["segment_label"]
        assert body["segment"] in ("Champions", "Hibernating")  # the RFM segment stays
        # ...and the behaviour persona comes beside it
        assert body["persona_id"] == labels.loc[user, "persona_id"]
        assert body["persona"] == labels.loc[user, "persona"] and body["persona"]
        # what the persona means, tonight's text for its id (once per persona, not per customer)
        meant = next((p for p in segments["personas"]["personas"] if p["persona_id"] == body["persona_id"]),
                     NO_PURCHASE_TEXT)  # fmt: skip
        assert body["persona_description"] == meant["description"]
        assert body["persona_action"] == meant["action"]
        seen[n] = body
    # planted: churn grows with recency (here 0.0 / 0.14 / 0.43: low, low, medium)
    assert seen[0]["churn_score"] < seen[14]["churn_score"] < seen[19]["churn_score"], seen
    assert seen[0]["churn_risk"] == "low" and seen[19]["churn_risk"] in ("medium", "high"), seen
    cold = post(server, "/profile", {"user_id": COLD_USER}).json()
    assert cold["churn_basis"] == "model" and cold["segment_label"]


def test_metadata_names_the_model_get_and_post(server):
    for resp in (httpx.get(server["base"] + "/metadata"), post(server, "/metadata", {})):
        body = resp.json()
        assert resp.status_code == 200 and body["model_version"] == server["tag"]
        assert body["metrics"]["ndcg_at_10"] == 0.3 and body["trained_at"] and body["max_k"] == 100


def test_openapi_documents_every_endpoint_and_field(server):
    spec = httpx.get(server["base"] + "/docs.json").json()
    for path in ("/recommend", "/similar_items", "/profile", "/events", "/metadata"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    request = next(v for k, v in schemas.items() if k.startswith("RecommendRequest"))
    assert all(p.get("description") for p in request["properties"].values()), request
    assert request.get("additionalProperties") is False


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/recommend", {"user_id": "u000001", "k": 0}, "k"),
        ("/recommend", {"user_id": "u000001", "k": -1}, "k"),
        ("/recommend", {"user_id": "u000001", "k": 101}, "k"),
        ("/recommend", {"user_id": "u000001", "k": "ten"}, "k"),
        ("/recommend", {"k": 3}, "user_id"),
        ("/recommend", {"user_id": "", "k": 3}, "user_id"),
        ("/recommend", {"user_id": "u000001", "kk": 3}, "kk"),
        ("/recommend", {"user_id": "u000001", "exclude_purchased": "perhaps"}, "exclude_purchased"),
        ("/recommend", {"user_id": "u000001", "category": "no-such-category"}, "category"),
        ("/recommend", {}, "user_id"),
        ("/similar_items", {"item_id": "i00001", "k": 1000}, "k"),
        ("/profile", {"user_id": ["u1"]}, "user_id"),
        ("/events", {"user_id": "u1", "item_id": "i00001", "event_type": "like"}, "event_type"),
        ("/events", {"user_id": "u1", "item_id": "i00001", "event_type": "view", "quantity": 0}, "quantity"),
        ("/events", {"user_id": "u1", "item_id": "i00001", "event_type": "view", "price": -2}, "price"),
        ("/events", {"user_id": "u1", "item_id": "zzz", "event_type": "view"}, "price"),
        (
            "/events",
            {"user_id": "u1", "item_id": "i00001", "event_type": "view", "event_ts": "2020-01-01T10:00:00"},
            "event_ts",
        ),
    ],
)
def test_invalid_input_answers_422_naming_the_field(server, path, payload, field):
    resp = post(server, path, payload)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"].startswith(f"invalid request: {field}:"), body
    assert [e["loc"] for e in body["detail"]] == [[field]]


def test_non_json_and_huge_bodies(server):
    resp = httpx.post(
        server["base"] + "/recommend", content=b"user_id=u1", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422 and "body" in resp.json()["error"] and "JSON" in resp.json()["error"]
    huge = httpx.post(server["base"] + "/recommend", json={"user_id": "u1", "pad": "x" * 100_000})
    assert huge.status_code == 413 and huge.json()["error"].startswith("body:")


def test_overload_sheds_with_429_and_recovers(server):
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=server["base"], limits=limits, headers=server["auth"], timeout=30
        ) as client:
            body = {"user_id": "overload-user", "item_id": server["items"][1], "event_type": "view"}
            answers = await asyncio.gather(*(client.post("/events", json=body) for _ in range(64)))
        return [r.status_code for r in answers]

    codes = asyncio.run(burst())
    assert set(codes) == {200, 429}, codes
    assert codes.count(200) >= 8
    again = post(server, "/recommend", {"user_id": server["users"][1], "k": 2})
    assert again.status_code == 200


def test_requests_keep_succeeding_across_promotion_and_rollback(server):
    user = server["users"][1]
    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server["base"], timeout=10) as client:
            while not stop.is_set():
                try:
                    resp = client.post("/recommend", json={"user_id": user, "k": 3})
                    if resp.status_code != 200:
                        errors.append(f"{resp.status_code} {resp.text}")
                    else:
                        seen.append(resp.json()["model_version"])
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    def version_becomes(tag: str) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if seen and seen[-1] == tag:
                return True
            time.sleep(0.1)
        return False

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        assert version_becomes(server["tag"])  # the hammer is answered before anything changes
        newer = server["save"](0.5)
        assert promote(newer, server["pointer"])["promoted"]
        assert version_becomes(newer)
        assert rollback(server["pointer"]) == server["tag"]
        assert version_becomes(server["tag"])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert errors == []
    assert newer in seen and seen[0] == server["tag"] and len(seen) > 20


def test_new_co_purchase_rules_are_served_without_a_restart(server):
    path, items = server["home"] / "features" / "co_purchase.parquet", server["items"]
    original = pd.read_parquet(path)
    rule = {"item_id": items[20], "other_item_id": items[21], "n_orders_both": 7, "confidence": 0.7}

    def replace(frame: pd.DataFrame) -> None:  # as the features stage does: whole file, atomically
        frame.to_parquet(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").replace(path)

    def top_of_item20(wanted_source: str) -> tuple[str, str]:
        deadline = time.monotonic() + 10
        while True:
            top = post(server, "/similar_items", {"item_id": items[20], "k": 1}).json()["items"][0]
            if top["source"] == wanted_source or time.monotonic() > deadline:
                return top["item_id"], top["source"]
            time.sleep(0.1)

    assert top_of_item20("embedding")[1] == "embedding"
    replace(pd.concat([original, pd.DataFrame([{**rule, "lift": 4.0}])], ignore_index=True))
    try:
        assert top_of_item20("co_purchase") == (items[21], "co_purchase")
    finally:
        replace(original)
    assert top_of_item20("embedding")[1] == "embedding"


def test_profile_shows_review_fields_where_present(server):
    """The nightly review summaries (features/customer_reviews.parquet, from marts.customer_reviews) reach
    /profile without a restart; a customer without reviews answers `reviews: null`."""
    import pandas as pd

    user, other = server["users"][2], server["users"][3]
    path = server["home"] / "features" / "customer_reviews.parquet"
    pd.DataFrame({
        "user_id": [user], "n_reviews": [3], "mean_rating": [2.0], "mean_sentiment": [-0.41],
        "share_negative": [0.6667], "last_review_ts": [pd.Timestamp("2026-10-01 12:00")],
        "last_review_sentiment_label": ["negative"], "last_review_sentiment": [-0.9],
        "top_complaint_aspects": ["size, fabric"], "top_complaint_keywords": ["cheap"],
        "as_of_date": [server["as_of"]],
    }).to_parquet(path, index=False)  # fmt: skip
    try:
        reviews = post(server, "/profile", {"user_id": user}).json()["reviews"]
        assert reviews == {
            "n_reviews": 3, "mean_rating": 2.0, "mean_sentiment": -0.41, "share_negative": 0.6667,
            "last_review_sentiment": "negative", "last_review_ts": "2026-10-01 12:00:00",
            "top_complaint_aspects": ["size", "fabric"], "top_complaint_keywords": ["cheap"],
        }  # fmt: skip
        assert post(server, "/profile", {"user_id": other}).json()["reviews"] is None
    finally:
        path.unlink()
    assert post(server, "/profile", {"user_id": user}).json()["reviews"] is None
