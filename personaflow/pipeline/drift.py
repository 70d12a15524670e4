"""The nightly drift check: tonight's Feast snapshots against the night before (personaflow/quality/drift.py).

Reads the point-in-time snapshots the features stage appends (user profile features, item stats) and
the churn scores the churn stage appends, so it needs no extra storage: each night is already kept.
A significant shift (PSI >= 0.25) of any feature is a WARNING: it goes into the drift report, one
email, and the Airflow note; the run goes on (drift is a reason to look, not to stop training).
The production model's recommendations are checked the same way for popularity drift
(personaflow/pipeline/recommendation_drift.py): their profile is recorded every night, even a first one.
"""

from __future__ import annotations

import json
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core.settings import Settings
from personaflow.pipeline.recommendation_drift import check_recommendations
from personaflow.quality.drift import drift_table

USER_COLUMNS = [
    "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment", "n_views",
    "n_carts", "n_purchases", "n_sessions",
]  # fmt: skip
ITEM_COLUMNS = ["item_n_purchases", "item_n_buyers", "price", "category"]


def _nights(path: Path, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(the snapshot before tonight's, tonight's) of a snapshot source; None without both."""
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    stamps = sorted(frame["feature_ts"].unique())
    tonight = [t for t in stamps if pd.Timestamp(t).date() == as_of]
    if not tonight:
        return None
    earlier = [t for t in stamps if t < tonight[-1]]
    if not earlier:
        return None
    return frame[frame["feature_ts"] == earlier[-1]], frame[frame["feature_ts"] == tonight[-1]]


def check_drift(as_of: date, s: Settings) -> dict[str, Any]:
    """Drift of user features, churn scores and item stats; skipped before a second night exists."""
    tables: dict[str, list] = {}
    previous_day = None
    for name, file, columns, scores in (
        ("user_features", "user_features.parquet", USER_COLUMNS, ()),
        ("churn", "user_churn.parquet", ["churn_score"], ("churn_score",)),
        ("items", "item_features.parquet", ITEM_COLUMNS, ()),
    ):
        nights = _nights(s.features_dir / file, as_of)
        if nights is None:
            continue
        reference, current = nights
        previous_day = previous_day or str(pd.Timestamp(reference["feature_ts"].iloc[0]).date())
        tables[name] = [d.to_dict() for d in drift_table(reference, current, columns, scores)]
    recs = check_recommendations(as_of, s)  # tonight's profile is recorded even on a night skipped here
    if not tables and recs.get("compared_with") is None:
        reason = f"no earlier feature snapshot than {as_of} to compare with"
        return {"status": "skipped", "reason": reason, "recommendations": recs}
    shifted = [f"{t}.{d['feature']} (PSI {d['psi']:.2f})" for t, rows in tables.items() for d in rows
               if d["status"] == "significant"]  # fmt: skip
    shifted += [recs["warning"]] if recs.get("warning") else []
    previous_day = previous_day or recs.get("compared_with")
    report = s.reports_dir / "drift" / f"drift_{as_of.isoformat()}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "as_of": as_of.isoformat(),
        "compared_with": previous_day,
        "warnings": shifted,
        "tables": tables,
        "recommendations": recs,
    }
    report.write_text(json.dumps(payload, indent=2) + "\n")
    result = {"status": "ok", **payload, "report": str(report), "alert_sent": None}
    if shifted:
        from personaflow.core.alert import send_alert
        from personaflow.pipeline._common import smtp_config

        smtp = smtp_config(s)
        sent, eml = send_alert(_email(as_of, previous_day, shifted, report, smtp), smtp, s.reports_dir)
        result |= {"alert_sent": sent, "alert_eml": str(eml)}
    return result


def _email(as_of: date, previous: str | None, shifted: list[str], report: Path, smtp) -> EmailMessage:
    from personaflow.core.alert import new_message

    subject = f"[personaflow] drift WARNING: as_of {as_of} ({len(shifted)} significant shift(s))"
    msg = new_message(subject, smtp.sender, smtp.recipients, "warning")
    lines = [
        f"Tonight's features and recommendations ({as_of}) against the night before ({previous}): "
        "significant shift in:", *(f"- {f}" for f in shifted), "", f"Report: {report}",
        "The run goes on: look at the data before trusting tonight's model.",
    ]  # fmt: skip
    msg.set_content("\n".join(lines) + "\n")
    return msg
