"""A real `bentoml serve` on 127.0.0.1, serving a tiny promoted model from a temp BENTOML_HOME."""

import socket
import time

import httpx
import pytest

from serving import process
from training import registry
from training.data import time_split
from training.evaluate import popularity_ranking
from training.synthetic import make_interactions
from training.train import fit_bpr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("serving")
    pointer = home / "production.json"
    env = {"BENTOML_HOME": str(home / "bentoml"), "PERSONAFLOW_PRODUCTION_POINTER": str(pointer)}
    split = time_split(make_interactions(seed=31), holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=3, batch_size=256, seed=2, device="cpu")
    popular = popularity_ranking(split)

    def save(ndcg: float) -> str:
        metrics = {"ndcg_at_10": ndcg, "baseline_ndcg_at_10": 0.1}
        return registry.save_candidate(model, split.maps, popular, metrics, {"seed": 2})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", env["BENTOML_HOME"])
        tag = save(0.3)
        assert registry.promote(tag, pointer)["promoted"]
        port = free_port()
        proc = process.start("127.0.0.1", port, env=env, log_file=home / "serve.log")
        try:
            process.wait_ready(f"http://127.0.0.1:{port}", timeout=90, proc=proc)
            yield {
                "url": f"http://127.0.0.1:{port}/recommend",
                "tag": tag,
                "split": split,
                "popular": popular,
                "pointer": pointer,
                "save": save,
            }
        finally:
            process.stop(proc)
            assert proc.poll() is not None
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": "u1"}, timeout=2)


def test_known_user_gets_k_items_and_model_version(server):
    user = server["split"].maps.user_ids[0]
    resp = httpx.post(server["url"], json={"user_id": user, "k": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == user and body["model_version"] == server["tag"] and body["fallback"] is None
    assert len(body["items"]) == 5
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert {it["item_id"] for it in body["items"]} <= set(server["split"].maps.item_ids)
    default = httpx.post(server["url"], json={"user_id": user}).json()
    assert len(default["items"]) == 10


def test_unknown_user_gets_popularity_fallback(server):
    resp = httpx.post(server["url"], json={"user_id": "never-seen", "k": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fallback"] == "popularity"
    assert [it["item_id"] for it in body["items"]] == [i for i, _ in server["popular"][:3]]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": "u000001", "k": 0}, "k"),
        ({"user_id": "u000001", "k": -1}, "k"),
        ({"user_id": "u000001", "k": 1000}, "k"),
        ({"user_id": "u000001", "k": "ten"}, "k"),
        ({"k": 3}, "user_id"),
        ({"user_id": "", "k": 3}, "user_id"),
    ],
)
def test_invalid_input_answers_422_naming_the_field(server, payload, field):
    resp = httpx.post(server["url"], json=payload)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"].startswith(f"invalid request: {field}:")
    assert [e["loc"] for e in body["detail"]] == [[field]]


def test_non_json_body_answers_422(server):
    resp = httpx.post(server["url"], content=b"user_id=u1", headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert "body" in resp.json()["error"] and "JSON" in resp.json()["error"]


def test_promotion_and_rollback_are_picked_up_without_restart(server):
    user = server["split"].maps.user_ids[1]

    def version_becomes(tag: str) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if httpx.post(server["url"], json={"user_id": user, "k": 1}).json()["model_version"] == tag:
                return True
            time.sleep(0.3)
        return False

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(server["pointer"].parent / "bentoml"))
        newer = server["save"](0.5)
        assert registry.promote(newer, server["pointer"])["promoted"]
        assert version_becomes(newer)
        assert registry.rollback(server["pointer"]) == server["tag"]
        assert version_becomes(server["tag"])
