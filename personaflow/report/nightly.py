"""Render the night's report: one self-contained HTML page (charts inline) that a person opens.

It gathers what the night's stages already wrote — marts.data_quality_days and data_quality_items,
the RFM segments in marts.user_features, the segments / churn / drift / training reports (JSON), the
saved audiences' sizes — and renders personaflow/report/template.html with Jinja2 and matplotlib. A stage that
did not run tonight shows "not available" instead of failing the page, so the report is rendered
even on a night that stopped early (the Airflow task runs with trigger_rule all_done).

    reports/nightly/report_<as_of>.html
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import pandas as pd

matplotlib.use("Agg")  # no display on servers and in Airflow workers
import matplotlib.pyplot as plt  # noqa: E402

from personaflow.core import warehouse as wh  # noqa: E402
from personaflow.core.settings import Settings  # noqa: E402

TEMPLATE = Path(__file__).with_name("template.html")
DAYS_SHOWN = 14


def report_path(s: Settings, as_of: date) -> Path:
    return s.reports_dir / "nightly" / f"report_{as_of.isoformat()}.html"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _query(s: Settings, sql: str, params: list | None = None) -> pd.DataFrame | None:
    where = wh.location(s)
    if not wh.exists(where):
        return None
    with wh.connect(where, read_only=True) as con:
        try:
            return con.execute(sql, params or []).df()
        except wh.MISSING_TABLE:
            return None


def _quality(s: Settings, as_of: date) -> dict[str, Any]:
    days = _query(
        s,
        "select * from marts.data_quality_days where batch_date <= $1 order by batch_date desc limit $2",
        [as_of, DAYS_SHOWN],
    )
    items = _query(
        s, "select reason, n_items, example_item_ids from marts.data_quality_items order by reason"
    )
    rows = []
    for d in days.to_dict("records") if days is not None else []:
        problems = [p for p in (d.get("failed"), d.get("warnings")) if isinstance(p, str)]
        d["problems"] = "; ".join(", ".join(json.loads(p)) for p in problems)[:300]
        d["batch_date"] = str(pd.Timestamp(d["batch_date"]).date())
        rows.append(d)
    bad = [d["batch_date"] for d in rows if d["validation"] == "critical"]
    summary = f"{len(rows)} latest batch days shown; " + (
        f"quarantined: {', '.join(bad)}" if bad else "none failed"
    )
    return {"days": rows, "faults": items.to_dict("records") if items is not None else [], "summary": summary}


def _rfm_chart(s: Settings, as_of: date) -> str | None:
    counts = _query(s, "select rfm_segment, count(*) as n from marts.user_features where as_of_date = $1 "
                    "group by 1 order by 2", [as_of])  # fmt: skip
    if counts is None or counts.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.barh(counts["rfm_segment"], counts["n"], color="#4c72b0")
    ax.set_xlabel("customers")
    ax.set_title(f"RFM segments as of {as_of}")
    return _png(fig)


def _latest(folder: Path, stage: str, as_of: date, ok: bool = False) -> dict[str, Any] | None:
    """The stage's report for `as_of`, else its latest one before (a night that stopped early still
    shows the data that exists, dated); `ok`: only reports whose status is ok."""
    days = []
    for path in folder.glob(f"{stage}_*.json") if folder.exists() else []:
        try:
            day = date.fromisoformat(path.stem.removeprefix(f"{stage}_"))
        except ValueError:
            continue
        if day <= as_of:
            days.append((day, path))
    for day, path in sorted(days, reverse=True):
        found = json.loads(path.read_text())
        if ok and found.get("status", "ok") != "ok":
            if day == as_of:  # tonight's stage ran and said why it could not: that is tonight's answer
                return found
            continue
        return {**found, "report_day": day.isoformat(), "stale": day != as_of}
    return None


def _status(s: Settings, as_of: date, run_id: str | None) -> dict[str, str]:
    """The page's first line: did tonight's run succeed, which stage stopped it, what is served now."""
    from personaflow.core.night import read_night
    from personaflow.training.registry.pointer import read_pointer

    pointer = read_pointer(s.production_pointer) or {}
    serving = (
        f"serving {pointer['tag']} (in production since {str(pointer.get('promoted_at', '?'))[:16]})"
        if pointer.get("tag") else "no model in production yet: /recommend answers the popularity list"
    )  # fmt: skip
    night = read_night(s.reports_dir, as_of)
    tasks = (night or {}).get("tasks", {}) if run_id is None or (night or {}).get("run_id") == run_id else {}
    failed = {t: v for t, v in tasks.items() if v["state"] == "failed"}
    skipped = {t: v for t, v in tasks.items() if v["state"] == "skipped" and "wait_for_batch" in t}
    if failed:
        task, why = min(failed.items(), key=lambda kv: kv[1]["at"])  # the first failure stopped the rest
        return {"state": "failed", "line": f"Tonight's run FAILED at {task}: {why['reason']} — {serving}."}
    if skipped:
        (task, why), = skipped.items()
        return {"state": "skipped", "line": f"No data tonight ({why['reason']}): nothing ran — {serving}."}
    if run_id is None:
        return {"state": "unknown", "line": f"Rendered outside a nightly run; no stage failure recorded for "
                f"{as_of} — {serving}."}  # fmt: skip
    return {"state": "ok", "line": f"Tonight's run succeeded — {serving}."}


def _churn(s: Settings, as_of: date) -> tuple[dict[str, Any] | None, str | None]:
    from personaflow.profiles.churn import merge_sparse_bins

    churn = _latest(s.reports_dir / "churn", "churn", as_of, ok=True)
    if churn is None or churn.get("status") != "ok":
        return None, (churn or {}).get("reason")
    cal = pd.DataFrame(merge_sparse_bins(churn["calibration"]))
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ax.plot([0, 1], [0, 1], ls="--", color="#999")
    ax.plot(cal["mean_predicted"], cal["observed_rate"], marker="o", color="#c44e52")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration (held out)")
    churn["calibration_chart"] = _png(fig)
    churn["roc_chart"] = _roc(s)
    return churn, None


def _roc(s: Settings) -> str | None:
    """ROC over every customer scored at the latest labelled cut-off (labels: marts.churn_labels)."""
    from sklearn.metrics import roc_curve

    path = s.features_dir / "churn_scores.parquet"
    labels = _query(s, "select user_id, cutoff_date, churned from marts.churn_labels")
    if not path.exists() or labels is None or labels.empty:
        return None
    scores = pd.read_parquet(path)
    joined = scores.merge(
        labels.astype({"cutoff_date": scores["cutoff_date"].dtype}), on=["user_id", "cutoff_date"]
    )
    if joined["churned"].nunique() < 2:
        return None
    fpr, tpr, _ = roc_curve(joined["churned"].astype(int), joined["churn_score"])
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ax.plot([0, 1], [0, 1], ls="--", color="#999")
    ax.plot(fpr, tpr, color="#4c72b0")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC, all customers scored at the cut-off",
    )
    return _png(fig)


def _model(s: Settings) -> dict[str, Any] | None:
    folder = s.reports_dir / "training"
    reports = (
        sorted(folder.glob("training_*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    )
    if not reports:
        return None
    latest = json.loads(reports[-1].read_text())
    trained = datetime.fromtimestamp(reports[-1].stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    decision = latest.get("promotion") or {}
    verdict = ("Promoted: " if decision.get("promoted") else "Not promoted: ") + str(
        decision.get("reason", "no gate verdict yet")
    )
    return {
        "tag": latest["tag"], "kind": latest["params"].get("kind"), "table": latest.get("table", {}),
        "n_test_users": latest["metrics"].get("n_test_users"), "verdict": verdict, "report": str(reports[-1]),
        "by_segment": _by_segment(latest), "trained": trained,
        # repeat/explore (training/evaluation/metrics.py): users with a repeat, an explore item in their truth
        "repeat_users": latest["metrics"].get("repeat_users"),
        "explore_users": latest["metrics"].get("explore_users"),
    }  # fmt: skip


def _by_segment(run: dict[str, Any]) -> dict[str, Any] | None:
    """The gate's per-segment table (personaflow/training/gate.py `gate_segments`) of a training run's report:
    columns named; when a baseline serves instead of the learned model, the learned one beside it."""
    from personaflow.training.gate import MIN_SLICE_USERS

    metrics = run["metrics"]
    rows = {name: dict(row) for name, row in (metrics.get("gate_segments") or {}).items()}
    if not rows:
        return None
    learned = (run.get("learned_metrics") or {}).get("gate_segments") or {}
    for name, row in learned.items():  # the same split and users: the learned model's own numbers
        if name in rows and "candidate" in row:
            rows[name]["learned"] = row["candidate"]
    names = {
        "candidate": "candidate" + (" (baseline)" if learned else ""),
        "learned": f"learned {(run.get('learned_params') or {}).get('kind', '')}".strip(),
        "best_baseline": f"best baseline ({metrics.get('gate_best_baseline')})",
        "production": f"production ({metrics.get('production_tag', 'scored on this split')})",
    }
    shown = [key for key in names if any(key in row for row in rows.values())]
    return {"columns": [(key, names[key]) for key in shown], "rows": rows, "min_users": MIN_SLICE_USERS}


def _audiences(s: Settings) -> list[dict[str, Any]]:
    sizes = s.home / "audiences" / "sizes.parquet"
    if not sizes.exists():
        return []
    frame = pd.read_parquet(sizes).sort_values("as_of")
    out = []
    for name, rows in frame.groupby("audience"):
        history = ", ".join(
            f"{pd.Timestamp(r.as_of).date()}: {int(r.size):,}" for r in rows.tail(7).itertuples()
        )
        out.append({"name": name, "size": int(rows["size"].iloc[-1]), "history": history})
    return out


def _campaigns(s: Settings) -> dict[str, Any] | None:
    """The campaign response table (reports_dir/campaigns/response.json, written with the profile's
    campaign fields: personaflow/pipeline/shop_tables.py), the latest campaigns first, and the
    demographics mix (features_dir/customer_demographics.parquet); None for a shop without them."""
    response = _json(s.reports_dir / "campaigns" / "response.json")
    demo_path = s.features_dir / "customer_demographics.parquet"
    if response is None and not demo_path.exists():
        return None
    out: dict[str, Any] = {"as_of": None, "comparison": None, "coupon_comparison": None, "rows": [],
                           "labels": [], "unknown": None}  # fmt: skip
    if response is not None:
        rows = sorted(response.get("campaigns", []), key=lambda r: r["start_date"], reverse=True)
        out.update(as_of=response.get("as_of"), comparison=response.get("comparison"), rows=rows[:12],
                   n_campaigns=len(rows), coupon_comparison=response.get("coupon_comparison"))  # fmt: skip
    if demo_path.exists():
        labels = pd.read_parquet(demo_path, columns=["demographic_label"])["demographic_label"]
        counts = labels.value_counts()
        out["customers"] = int(len(labels))
        out["unknown"] = int(counts.get("unknown", 0))
        out["labels"] = [
            {"label": k, "n": int(v)} for k, v in counts.drop("unknown", errors="ignore").head(8).items()
        ]
    return out


def build_report(as_of: date, s: Settings, run_id: str | None = None) -> dict[str, Any]:
    """Render tonight's page; returns its path and which sections had data. `run_id`: the DAG run
    rendering it (its ledger says whether the night succeeded); None from the CLI."""
    drift = _latest(s.reports_dir / "drift", "drift", as_of)
    churn, churn_reason = _churn(s, as_of)
    segments = _latest(s.reports_dir / "segments", "segments", as_of, ok=True) or {}
    status = _status(s, as_of, run_id)
    context = {
        "as_of": as_of.isoformat(), "home": str(s.home), "status": status,
        "segments_day": segments.get("report_day") if segments.get("stale") else None,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quality": _quality(s, as_of), "rfm_chart": _rfm_chart(s, as_of),
        "segments": segments.get("segments"), "personas": segments.get("personas"),
        "churn": churn, "churn_reason": churn_reason, "model": _model(s), "drift": drift,
        "drift_reason": None if drift else "no earlier snapshot to compare with", "audiences": _audiences(s),
        "campaigns": _campaigns(s),
    }  # fmt: skip
    html = jinja2.Environment(autoescape=True).from_string(TEMPLATE.read_text()).render(**context)
    path = report_path(s, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    sections = {
        k: bool(context[k])
        for k in ("quality", "rfm_chart", "segments", "churn", "model", "drift", "audiences", "campaigns")
    }
    return {
        "report": str(path), "sections": sections, "status": status["state"],
            "status_line": status["line"],
    }
