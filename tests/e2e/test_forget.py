"""`personaflow forget USER_ID` on a home that a real nightly run (Airflow, dbt, GX, Feast, BentoML)
filled: afterwards no customer column holds the id (and, as these generated ids cannot collide with a
row number or a price, no byte of any file under the home does), serving answers them as it answers
an id it never saw, the deletion is in the audit log as a keyed hash, and a re-sent export cannot
bring them back."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pandas as pd
import pytest

from personaflow.core.forgotten import subject
from personaflow.core.landing import batch_path
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline.forget import forget_user, holding
from personaflow.serving import process
from personaflow.serving.auth import read_token_file
from tests._serving_setup import free_port

pytestmark = pytest.mark.e2e


def _holding(home, user_id: str) -> list[str]:
    pattern = re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(user_id.encode()) + rb"(?![A-Za-z0-9_])")
    return [str(p) for p in home.rglob("*") if p.is_file() and pattern.search(p.read_bytes())]


def test_forget_leaves_no_byte_and_the_next_import_does_not_bring_them_back(
    airflow_stack, good_run, tmp_path
):
    s = airflow_stack.s
    assert good_run.state == "success"
    events = airflow_stack.shop.events
    user_id = events["user_id"].value_counts().index[0]  # the most active customer
    assert len(_holding(s.home, user_id)) >= 5  # landing, warehouse, Feast, models, ...
    assert len(holding(user_id, s)) >= 5
    export = tmp_path / "export.csv"  # the shop's own export, kept outside the platform's home
    events.to_csv(export, index=False)

    result = forget_user(user_id, s)
    assert result["still_holding"] == [] and result["warehouse_rows"] > 0 and result["model_versions"] >= 1
    assert _holding(s.home, user_id) == [] and holding(user_id, s) == []
    [audit] = [json.loads(line) for line in (s.home / "audit" / "forget.jsonl").read_text().splitlines()]
    assert audit["subject"] == subject(user_id, s) and user_id not in json.dumps(audit)

    env = {"PERSONAFLOW_HOME": str(s.home), "BENTOML_HOME": str(s.bentoml_home),
           "PERSONAFLOW_FEATURES_DIR": str(s.features_dir)}  # fmt: skip
    port = free_port()
    proc = process.start("127.0.0.1", port, env=env, log_file=tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        process.wait_ready(base, timeout=120, proc=proc)
        unknown = "u999999"  # the same length: the answers compare as text
        for path in ("/profile", "/recommend"):
            gone = httpx.post(f"{base}{path}", json={"user_id": user_id})
            never = httpx.post(f"{base}{path}", json={"user_id": unknown})
            assert gone.status_code == never.status_code == (404 if path == "/profile" else 200)
            assert gone.text.replace(user_id, unknown) == never.text, (gone.text, never.text)  # never seen
        other = events["user_id"].value_counts().index[1]
        assert httpx.post(f"{base}/profile", json={"user_id": other}).status_code == 200
        [token] = read_token_file(s.home / "secrets" / "api_token")
        event = {"user_id": user_id, "item_id": events["item_id"].iloc[0], "event_type": "view"}
        refused = httpx.post(f"{base}/events", json=event, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 404 and "erased" in refused.text
    finally:
        process.stop(proc)

    report = ingest_stage.import_events(export, "csv", s, load=False, overwrite=True)
    assert report["forgotten_rows_dropped"] == int((events["user_id"] == user_id).sum())
    landed = pd.concat(pd.read_csv(p, dtype=str) for p in (s.landing_dir / "events").glob("*.csv"))
    assert user_id not in set(landed["user_id"])
    # a later day file the shop sends with them in it: the loader drops them too
    day = airflow_stack.last + timedelta(days=5)
    theirs = events[events["user_id"] == user_id].head(3).assign(event_ts=f"{day} 10:00:00")
    batch_path(s.landing_dir, day).write_text(theirs.to_csv(index=False))
    assert ingest_stage.ingest(day, s)["rows"] == 0
    assert _holding(s.home, user_id) == []
