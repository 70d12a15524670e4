"""End to end, with every real part: a generated shop, the DAG run by Airflow, dbt on DuckDB, Great
Expectations, Feast, PyTorch, a `bentoml serve` process answering HTTP, and a real SMTP server.

One module-scoped shop; the good night runs first, then a corrupted night must stop at validation,
email the data team, quarantine the batch and leave the marts and the production model untouched.
"""

from __future__ import annotations

import json
from datetime import timedelta
from email import message_from_bytes

import duckdb
import httpx
import pytest
from aiosmtpd.controller import Controller

from ingest.generate import batch_path, generate_shop, write_shop
from personaflow import settings as config
from personaflow import stages
from personaflow.demo import free_port
from personaflow.orchestrate import airflow_env, run_once

pytestmark = pytest.mark.e2e


class Inbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture(scope="module")
def shop_settings(tmp_path_factory, inbox):
    controller, _ = inbox
    home = tmp_path_factory.mktemp("e2e")
    env = {
        "PERSONAFLOW_HOME": str(home),
        "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
        "AIRFLOW_HOME": str(home / "airflow"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_SMTP_PORT": str(controller.port),
        "PERSONAFLOW_ALERT_TO": "data-team@example.test",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        s = config.load()
        shop = generate_shop(users=400, items=120, days=21, seed=11)
        write_shop(shop, s.landing_dir)
        last = shop.events["event_ts"].max().date()
        stages.ingest_history(last - timedelta(days=1), s)
        yield s, shop, last


def _marts_fingerprint(s) -> tuple:
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        return con.execute(
            "select count(*), max(as_of_date), round(sum(monetary), 2), sum(n_views) from marts.user_features"
        ).fetchone()


def test_nightly_run_through_airflow_then_served_over_http(shop_settings):
    s, shop, last = shop_settings
    run = run_once(s, last)
    assert run["state"] == "success", run
    assert set(run["tasks"]) == {
        "ingest", "validate_batch", "transform", "validate_marts", "features", "train", "promote",
    }  # fmt: skip
    assert all(state == "success" for state in run["tasks"].values()), run["tasks"]

    pointer = json.loads(s.production_pointer.read_text())
    from serving.process import start, stop, wait_ready

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start("127.0.0.1", port, env=airflow_env(s))
    try:
        wait_ready(base, timeout=120)
        known = shop.events.loc[shop.events["event_type"] == "purchase", "user_id"].iloc[0]
        answer = httpx.post(f"{base}/recommend", json={"user_id": known, "k": 5}, timeout=30).json()
        assert answer["model_version"] == pointer["tag"]
        assert answer["fallback"] is None
        assert len(answer["items"]) == 5
        assert set(i["item_id"] for i in answer["items"]) <= set(shop.items["item_id"])
        scores = [i["score"] for i in answer["items"]]
        assert scores == sorted(scores, reverse=True)

        stranger = httpx.post(f"{base}/recommend", json={"user_id": "nobody", "k": 3}, timeout=30).json()
        assert stranger["fallback"] == "popularity" and len(stranger["items"]) == 3
        bad = httpx.post(f"{base}/recommend", json={"user_id": known, "k": 0}, timeout=30)
        assert bad.status_code == 422 and "k" in bad.text
    finally:
        stop(proc)
    assert proc.poll() is not None


def test_corrupted_batch_stops_at_validation_and_emails(shop_settings, inbox):
    s, _, last = shop_settings
    _, handler = inbox
    before_marts = _marts_fingerprint(s)
    before_pointer = s.production_pointer.read_text()

    # The next day's file: yesterday's rows moved one day on, with a negative price and a bogus type.
    bad_day = last + timedelta(days=1)
    lines = batch_path(s.landing_dir, last).read_text().splitlines()
    rows = [line.replace(last.isoformat(), bad_day.isoformat()) for line in lines[1:]]
    rows[0] = rows[0].rsplit(",", 1)[0] + ",-5.0"
    for kind in ('"view"', '"cart"', '"purchase"'):
        rows[1] = rows[1].replace(kind, '"teleport"')
    bad_file = batch_path(s.landing_dir, bad_day)
    bad_file.write_text("\n".join([lines[0], *rows]) + "\n")

    run = run_once(s, bad_day)
    assert run["state"] == "failed"
    assert run["tasks"]["ingest"] == "success"
    assert run["tasks"]["validate_batch"] == "failed"
    for downstream in ("transform", "validate_marts", "features", "train", "promote"):
        assert run["tasks"][downstream] == "upstream_failed", run["tasks"]

    assert _marts_fingerprint(s) == before_marts
    assert s.production_pointer.read_text() == before_pointer
    assert bad_file.exists()
    assert (s.quarantine_dir / bad_day.isoformat() / "reasons.json").exists()

    mails = [m for m in handler.messages if bad_day.isoformat() in m["Subject"]]
    assert mails, [m["Subject"] for m in handler.messages]
    body = mails[-1].get_payload(decode=True).decode()
    assert "price" in body and "event_type" in body
    assert "teleport" in body
    assert mails[-1]["To"] == "data-team@example.test"
