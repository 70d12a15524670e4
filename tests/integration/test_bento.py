"""`bentoml build` packs a Bento whose own sources import the service, checked with a plain interpreter
in a fresh venv: the project's editable install (whose finder would quietly supply any file the Bento
lacks) is not there, only the third-party packages are."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from personaflow.core.settings import REPO_ROOT


def _plain_venv(root: Path) -> Path:
    """A fresh venv that sees the project venv's third-party packages through a path entry, so none of
    that folder's .pth files run: the editable finder of `personaflow` is never installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (site,) = (root / "lib").glob("python3*/site-packages")
    (site / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


def test_bento_build_contains_everything_the_service_imports(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml = Path(sys.executable).parent / "bentoml"
    subprocess.run(
        [str(bentoml), "build", "."], cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True
    )
    (src,) = (tmp_path / "bentoml" / "bentos" / "personaflow-recommender").glob("*/src")
    assert (src / "feature_repo" / "feature_store.yaml").exists()
    assert (src / "personaflow" / "report" / "template.html").exists()

    python = _plain_venv(tmp_path / "plain")
    plain = {k: v for k, v in env.items() if k != "PYTHONPATH"} | {"PERSONAFLOW_HOME": str(tmp_path / "home")}
    missing = subprocess.run([str(python), "-c", "import personaflow"], cwd=tmp_path, env=plain,
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 1 and "No module named 'personaflow'" in missing.stderr, missing.stderr
    deps = subprocess.run([str(python), "-c", "import bentoml, torch, feast"], cwd=tmp_path, env=plain)
    assert deps.returncode == 0

    # The service from the Bento's copy alone, with every module of ours it pulls in.
    code = (
        "import sys, personaflow.serving.service as s, personaflow.core.settings as p; "
        "ours = [m.__file__ for n, m in sys.modules.items() if n.startswith('personaflow') and m.__file__]; "
        "print(s.__file__, p.REPO_ROOT, len(ours), all(f.startswith(sys.argv[1]) for f in ours))"
    )
    out = subprocess.run(
        [str(python), "-c", code, str(src)], cwd=tmp_path, env={**plain, "PYTHONPATH": str(src)},
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert out[0].startswith(str(src)) and out[1] == str(src), out
    assert int(out[2]) > 10 and out[3] == "True", out
