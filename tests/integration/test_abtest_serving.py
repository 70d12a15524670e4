"""A/B test at serving over real HTTP: stable arms of the asked size, every answer names its arm and
model version, exposures are logged, stopping the test serves production to everyone again."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from personaflow.core import settings
from personaflow.experiments.exposures import read_exposures
from personaflow.experiments.state import exposures_dir, start, stop
from personaflow.pipeline.abtest import report
from tests._serving_setup import running_server


def test_arms_answers_and_exposures_over_http(tmp_path):
    home = Path(os.environ["PERSONAFLOW_HOME"])  # the server's home (tests/conftest.py)
    with running_server(tmp_path) as srv:
        challenger = srv["save"](0.25)
        users = [*srv["users"], *(f"new{i}" for i in range(40))]
        try:
            start(home, challenger, 0.5, experiment="test-ab")
            with httpx.Client(base_url=srv["base"], timeout=10) as client:
                first = {u: client.post("/recommend", json={"user_id": u, "k": 3}).json() for u in users}
                again = {u: client.post("/recommend", json={"user_id": u, "k": 3}).json() for u in users}
            arms = {u: a["arm"] for u, a in first.items()}
            assert arms == {u: a["arm"] for u, a in again.items()}  # stable per user
            assert set(arms.values()) == {"control", "challenger"}
            for answer in first.values():
                expected = challenger if answer["arm"] == "challenger" else srv["tag"]
                assert answer["model_version"] == expected
            exposures = read_exposures(exposures_dir(home, "test-ab"))
            assert len(exposures) == 2 * len(users) and set(exposures["arm"]) == {"control", "challenger"}
            assert (exposures.groupby("user_id")["arm"].nunique() == 1).all()
            summary = report(settings.load(), "test-ab")
            assert summary["verdict"].startswith("keep running") and set(summary["arms"]) == {
                "control",
                "challenger",
            }
        finally:
            stop(home)
        with httpx.Client(base_url=srv["base"], timeout=10) as client:
            after = client.post("/recommend", json={"user_id": users[0], "k": 3}).json()
        assert after["arm"] is None and after["model_version"] == srv["tag"]
