"""Recommendation-popularity drift (issue 14): the production model's answers for a fixed sample of
users placed on tonight's popularity ranks, recorded night by night; a model that swings to the best
sellers is a warning in the drift report, the alert email and the run's warnings."""

import json
from datetime import date

import numpy as np
import pandas as pd

from personaflow.pipeline.recommendation_drift import HISTORY_FILE, sample_users
from personaflow.quality.popularity_drift import BINS, compare, profile
from personaflow.training.data.interactions import IdMaps
from personaflow.training.export import Embeddings
from personaflow.training.registry.pointer import write_pointer
from personaflow.training.registry.store import save_candidate

ITEMS = [f"i{j:03d}" for j in range(200)]
RANKS = pd.Series(np.arange(1, 201, dtype=float), index=ITEMS)  # i000 is the best seller


def test_profile_places_recommendations_on_popularity_ranks():
    head = profile(["i000", "i001", "i005", "i019"], RANKS)  # ranks 1, 2, 6, 20 of 200
    assert head["top_1pct_share"] == 0.5 and head["top_10pct_share"] == 1.0
    assert head["decile_1"] == 1.0 and sum(head[b] for b in BINS) == 1.0
    gone = profile(["i199", "gone"], RANKS)
    assert gone["decile_10"] == 0.5 and gone["unranked"] == 0.5 and gone["top_10pct_share"] == 0.0


def test_compare_is_stable_for_the_same_spread_and_warns_on_a_swing_to_the_best_sellers():
    spread = profile(ITEMS[::2], RANKS)
    assert compare(spread, profile(ITEMS[1::2], RANKS))["status"] == "stable"
    swung = compare(spread, profile(ITEMS[:20] * 5, RANKS))
    assert swung["status"] == "significant" and swung["psi"] > 1 and swung["top_10pct_share"] == 1.0
    # inside the first decile only: the deciles see nothing, the top-1 % share does
    inside = compare(profile(ITEMS[2:20], RANKS), profile(ITEMS[:2] * 4 + ITEMS[10:20], RANKS))
    assert inside["psi"] < 0.01 and inside["status"] == "significant"
    assert "top-1 % share moved" in inside["reasons"][0]


def test_the_sample_is_fixed_and_barely_moves_when_users_arrive():
    users = [f"u{n}" for n in range(5000)]
    first = sample_users(users, 500)
    assert first == sample_users(list(reversed(users)), 500)
    grown = sample_users(users + [f"new{n}" for n in range(100)], 500)
    assert len(set(first) & set(grown)) >= 480  # ~2 % of newcomers fall into the sample


def _production(store, prefer_popular: bool) -> str:
    """A saved model whose every user gets the least (or the most) popular items first."""
    users = [f"u{n}" for n in range(300)]
    order = -RANKS.to_numpy() if prefer_popular else RANKS.to_numpy()
    emb = Embeddings(
        "bpr-mf", np.ones((len(users), 1), np.float32), order.reshape(-1, 1).astype(np.float32),
        np.zeros(len(ITEMS), np.float32),
    )  # fmt: skip
    tag = save_candidate(emb, IdMaps(users, ITEMS), [(i, 1.0) for i in ITEMS], {}, {"model": "bpr"})
    write_pointer(store, {"tag": tag, "history": []})
    return tag


def _item_snapshot(path, days: list[str]) -> None:
    frames = [
        pd.DataFrame({"item_id": ITEMS, "popularity_rank": RANKS.astype(int).to_numpy()}).assign(
            feature_ts=pd.Timestamp(f"{day} 23:59:59", tz="UTC")
        )
        for day in days
    ]
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def test_a_model_swinging_to_best_sellers_is_a_drift_warning_by_email(tmp_path, monkeypatch, store, inbox):
    from personaflow.core import settings
    from personaflow.pipeline.drift import check_drift

    controller, handler = inbox
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PERSONAFLOW_PRODUCTION_POINTER", str(store))
    monkeypatch.setenv("PERSONAFLOW_SMTP_PORT", str(controller.port))
    s = settings.load()
    s.features_dir.mkdir(parents=True)
    items = s.features_dir / "item_features.parquet"
    _item_snapshot(items, ["2026-10-30"])
    niche = _production(store, prefer_popular=False)
    first = check_drift(date(2026, 10, 30), s)  # no earlier night: skipped, but tonight's profile kept
    assert first["status"] == "skipped" and first["recommendations"]["tonight"]["top_10pct_share"] == 0.0
    assert first["recommendations"]["tonight"]["n_recommendations"] == 300 * 10

    _item_snapshot(items, ["2026-10-30", "2026-10-31"])
    popular = _production(store, prefer_popular=True)
    for _ in range(2):  # a re-run of the night replaces its row: still two nights recorded
        result = check_drift(date(2026, 10, 31), s)
    recs = result["recommendations"]
    assert recs["compared_with"] == "2026-10-30" and recs["top_10pct_share"] == 1.0
    assert recs["status"] == "ok" and recs["drift"] == "significant"
    assert recs["model_change"] == f"production {niche} -> {popular}"
    assert result["warnings"] == [recs["warning"]] and "recommendations.popularity" in recs["warning"]
    saved = json.loads((s.reports_dir / "drift" / "drift_2026-10-31.json").read_text())
    assert saved["recommendations"]["warning"] == recs["warning"]
    history = pd.read_parquet(s.features_dir / HISTORY_FILE)
    assert history["as_of"].tolist() == ["2026-10-30", "2026-10-31"]
    assert history["model_tag"].tolist() == [niche, popular]
    mails = handler.wait_for("drift WARNING: as_of 2026-10-31")
    assert "top-10 % share 0% -> 100%" in mails[-1].get_payload()
