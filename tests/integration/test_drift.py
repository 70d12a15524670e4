"""Drift: PSI is ~0 for the same population and large for a shifted one; the nightly check compares
tonight's snapshot with the night before and warns by email when a feature shifted."""

from datetime import date

import numpy as np
import pandas as pd

from personaflow.quality.drift import drift_table, psi


def test_psi_is_near_zero_for_the_same_population_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.lognormal(3, 1, 5000))
    assert psi(reference, pd.Series(rng.lognormal(3, 1, 5000))) < 0.02
    assert psi(reference, pd.Series(rng.lognormal(3.8, 1, 5000))) > 0.25
    segments = pd.Series(["Champions"] * 500 + ["Lost"] * 500, dtype=object)
    assert psi(segments, segments.sample(frac=1, random_state=1)) < 1e-9
    assert psi(segments, pd.Series(["Lost"] * 900 + ["Champions"] * 100, dtype=object)) > 0.25
    with_nulls = pd.Series([1.0, 2.0, None, 4.0] * 100)
    assert psi(with_nulls, pd.Series([1.0, 2.0, 3.0, 4.0] * 100)) > 0.25  # the null bin emptied


def test_drift_table_is_worst_first_with_ks_for_scores():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"monetary": rng.gamma(2, 100, 3000), "churn_score": rng.beta(2, 5, 3000)})
    cur = pd.DataFrame({"monetary": rng.gamma(2, 100, 3000), "churn_score": rng.beta(5, 2, 3000)})
    rows = drift_table(ref, cur, ["monetary", "churn_score", "absent"], scores=("churn_score",))
    assert [r.feature for r in rows] == ["churn_score", "monetary"]
    assert rows[0].status == "significant" and rows[0].ks > 0.3 and rows[1].status == "stable"


def _snapshots(path, nights: dict[str, pd.DataFrame]) -> None:
    frames = [f.assign(feature_ts=pd.Timestamp(f"{day} 23:59:59", tz="UTC")) for day, f in nights.items()]
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def test_nightly_check_warns_by_email_when_a_feature_shifted(tmp_path, monkeypatch, inbox):
    from personaflow.core import settings
    from personaflow.pipeline.drift import check_drift

    controller, handler = inbox
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("PERSONAFLOW_SMTP_PORT", str(controller.port))
    s = settings.load()
    s.features_dir.mkdir(parents=True)
    rng = np.random.default_rng(2)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(2000)], "frequency": rng.poisson(3, 2000)})
    first = users.assign(monetary=rng.gamma(2, 100, 2000))
    path = s.features_dir / "user_features.parquet"
    _snapshots(path, {"2026-11-29": first})
    assert check_drift(date(2026, 11, 29), s)["status"] == "skipped"  # nothing to compare with yet
    _snapshots(path, {"2026-11-29": first, "2026-11-30": first.assign(monetary=first["monetary"] * 3)})
    result = check_drift(date(2026, 11, 30), s)
    assert result["compared_with"] == "2026-11-29"
    assert result["warnings"] == [
        f"user_features.monetary (PSI {result['tables']['user_features'][0]['psi']:.2f})"
    ]
    assert result["alert_sent"] is True
    [mail] = handler.wait_for("drift WARNING: as_of 2026-11-30")
    assert "user_features.monetary" in mail.get_payload()
