"""`bentoml build` packs a Bento whose own sources import the service (nothing missing from include)."""

import os
import subprocess
import sys
from pathlib import Path

from personaflow.core.settings import REPO_ROOT


def test_bento_build_contains_everything_the_service_imports(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml = Path(sys.executable).parent / "bentoml"
    subprocess.run(
        [str(bentoml), "build", "."],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    (src,) = (tmp_path / "bentoml" / "bentos" / "personaflow-recommender").glob("*/src")
    assert (src / "feature_repo" / "feature_store.yaml").exists()
    # Import the service from the Bento's copy alone: the repo must not leak onto the path.
    isolated = {**env, "PYTHONPATH": str(src), "PERSONAFLOW_HOME": str(tmp_path / "home")}
    code = (
        "import personaflow.serving.service as s, personaflow.core.settings as p; "
        "print(s.__file__, p.REPO_ROOT)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=isolated, check=True, capture_output=True, text=True
    ).stdout
    assert str(src) in out.split()[0] and out.split()[1] == str(src)
