"""Tonight's recommendation-popularity profile, kept night by night and compared with the night before.

The production model's top-k for a fixed sample of users (the SAMPLE_USERS with the lowest stable hash
among the users it knows: the same people night after night, as long as they exist) is placed on
tonight's catalogue popularity ranks (the item snapshot the features stage appends) by
personaflow/quality/popularity_drift.py. One row per night goes to features/recommendation_popularity.parquet
(a re-run of a night replaces its row), so the comparison needs no stored recommendations. The scores
are the model's own (`LoadedModel.scores`, what serving ranks a known user with), so this is what
/recommend answers those users, without a server.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personaflow.core.settings import Settings
from personaflow.experiments.assign import bucket
from personaflow.quality.popularity_drift import compare, profile, warning

SAMPLE_USERS = 2000
K = 10
SALT = "recommendation-popularity"  # its own hash space: not the arms of any A/B test
HISTORY_FILE = "recommendation_popularity.parquet"
NIGHTS_SHOWN = 7


def sample_users(user_ids: list[str], n: int = SAMPLE_USERS) -> list[str]:
    """The `n` users with the lowest stable hash: a fixed sample that a new user rarely enters."""
    return sorted(user_ids, key=lambda u: bucket(SALT, u))[:n]


def top_items(model, users: list[str], k: int = K, batch: int = 512) -> list[str]:
    """Every sampled user's top-k item ids (order inside a user's k does not matter here)."""
    idx = np.array([model.maps.user_index[u] for u in users], dtype=np.int64)
    k = min(k, model.maps.n_items)
    ids = np.asarray(model.maps.item_ids, dtype=object)
    out: list[str] = []
    for start in range(0, len(idx), batch):
        scores = np.atleast_2d(model.scores(idx[start : start + batch]))
        out.extend(ids[np.argpartition(-scores, k - 1, axis=1)[:, :k]].ravel().tolist())
    return out


def _ranks(features_dir: Path, as_of: date) -> pd.Series | None:
    """item_id -> popularity rank in tonight's item snapshot; None before the features stage ran."""
    path = features_dir / "item_features.parquet"
    if not path.exists():
        return None
    items = pd.read_parquet(path, columns=["item_id", "popularity_rank", "feature_ts"])
    tonight = items[items["feature_ts"].dt.date == as_of]
    if tonight.empty:
        return None
    latest = tonight[tonight["feature_ts"] == tonight["feature_ts"].max()]
    return latest.set_index("item_id")["popularity_rank"].astype(float)


def record(path: Path, row: dict[str, Any]) -> pd.DataFrame:
    """Append tonight's row (replacing an earlier run of the same night); the whole history, by night."""
    frame = pd.DataFrame([row])
    if path.exists():
        old = pd.read_parquet(path)
        frame = pd.concat([old[old["as_of"] != row["as_of"]], frame], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.sort_values("as_of").to_parquet(tmp, index=False)
    tmp.replace(path)  # a reader never sees half a file
    return frame.sort_values("as_of", ignore_index=True)


def check_recommendations(as_of: date, s: Settings) -> dict[str, Any]:
    """Tonight's profile recorded and compared with the latest earlier night (module docstring)."""
    from personaflow.training.registry.loading import load_production

    ranks = _ranks(s.features_dir, as_of)
    if ranks is None:
        return {"status": "skipped", "reason": f"no item snapshot for {as_of} (features stage not run)"}
    try:
        model = load_production(s.production_pointer)
    except FileNotFoundError as exc:
        return {"status": "skipped", "reason": str(exc)}
    users = sample_users(list(model.maps.user_ids))
    if not users:
        return {"status": "skipped", "reason": f"production model {model.tag} knows no users to sample"}
    tonight = {"as_of": as_of.isoformat(), "model_tag": model.tag, "n_users": len(users), "k": K,
               **profile(top_items(model, users), ranks)}  # fmt: skip
    history = record(s.features_dir / HISTORY_FILE, tonight)
    earlier = history[history["as_of"] < tonight["as_of"]]
    shown = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in night.items()}  # JSON: no NaN
        for night in history[history["as_of"] <= tonight["as_of"]].tail(NIGHTS_SHOWN).to_dict("records")
    ]
    out = {"status": "ok", "tonight": tonight, "nights": shown, "compared_with": None, "warning": None}
    if earlier.empty:
        return out | {"reason": "first night with a recommendation profile: nothing to compare with"}
    before = earlier.iloc[-1].to_dict()
    compared = compare(before, tonight)
    changed = None if before["model_tag"] == model.tag else f"production {before['model_tag']} -> {model.tag}"
    # "status" stays the check's (ok / skipped); the reading of the comparison is "drift"
    out |= {"compared_with": before["as_of"], "model_change": changed, **compared, "status": "ok",
            "drift": compared["status"]}  # fmt: skip
    if compared["status"] == "significant":
        out["warning"] = warning(compared, changed)
    return out
