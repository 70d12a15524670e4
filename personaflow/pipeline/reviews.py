"""The reviews stage: import a reviews export, check it, score every review, build the review marts.

    personaflow ingest reviews.json.gz --kind reviews --mapping amazon-all-beauty

1. read through the mapping (personaflow/ingest/reviews.py): named errors, repeats dropped and counted;
   customers forgotten before never come back (core.forgotten);
2. load into raw.reviews (replacing the same review ids: re-runs are idempotent);
3. Great Expectations over the batch (personaflow/quality/reviews.py): a failure moves it to
   quarantine.reviews and raises `DataQualityError`;
4. sentiment per source (personaflow/profiles/sentiment.py), fitted on that source's own stars, into
   raw.review_scores and raw.review_complaints;
5. dbt: stg_reviews → marts.customer_reviews / marts.product_reviews, and the customers' summaries as
   `features_dir/customer_reviews.parquet` for /profile and audiences.

Memory: one source's reviews at a time (texts, a sparse TF-IDF matrix), O(reviews); the marts are
one group-by over reviews in the warehouse.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.core.warehouse import location
from personaflow.pipeline._common import write_json

log = logging.getLogger(__name__)
CUSTOMER_REVIEWS_FILE = "customer_reviews.parquet"
# What /profile and audiences read of marts.customer_reviews.
SUMMARY_COLUMNS = [
    "user_id", "n_reviews", "mean_rating", "mean_sentiment", "share_negative", "last_review_ts",
    "last_review_sentiment_label", "last_review_sentiment", "top_complaint_aspects", "top_complaint_keywords",
    "as_of_date",
]  # fmt: skip


def import_reviews(
    path: Path, mapping: str, s: Settings, score: bool = True, marts: bool = True, as_of: date | None = None
) -> dict[str, Any]:
    """Import a reviews export through `mapping` (a shipped name or a TOML path); then score the
    source's reviews and rebuild the review marts (as of `as_of`, default today)."""
    from personaflow.core.forgotten import drop_forgotten
    from personaflow.ingest.reviews import load_mapping, load_reviews, read_reviews, sha256
    from personaflow.quality.reviews import check_reviews, quarantine_reviews
    from personaflow.quality.validate import DataQualityError

    started = time.perf_counter()
    spec = load_mapping(mapping)
    frame, report = read_reviews(Path(path), spec)
    kept = drop_forgotten(frame, s)
    report["forgotten_dropped"] = len(frame) - len(kept)
    loaded = load_reviews(location(s), kept.reset_index(drop=True), report, sha256(Path(path)))
    report |= loaded
    result = check_reviews(kept.assign(batch_id=loaded["batch_id"]))
    report["checks"] = {"success": result.success, "expectations": result.n_expectations,
                        "failures": [f.describe() for f in result.failures],
                        "notices": [f.describe() for f in result.notices]}  # fmt: skip
    write_json(s.reports_dir / "quality" / f"reviews_{loaded['batch_id']}.json", report)
    if not result.success:
        folder = quarantine_reviews(location(s), loaded["batch_id"], s.quarantine_dir, result)
        failed = "; ".join(report["checks"]["failures"])
        sent, eml = _alert(s, Path(path), loaded["batch_id"], len(kept), folder, result)
        raise DataQualityError(
            f"reviews batch {loaded['batch_id']} quarantined ({folder}): {failed}; "
            f"alert {'sent' if sent else 'NOT sent (SMTP down)'}, kept at {eml}",
            result,
            quarantine_path=folder,
            alert_sent=sent,
            eml_path=eml,
        )
    if score:
        report["sentiment"] = score_reviews(s, source=spec.name, aspects=spec.aspects or None)
    if marts:
        report["marts"] = review_marts(s, as_of)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _alert(s: Settings, path: Path, batch_id: str, rows: int, folder: Path, result: Any) -> tuple[bool, Path]:
    """The data team's mail for a quarantined reviews batch, as for a quarantined day of events."""
    from personaflow.core.alert import send_alert
    from personaflow.pipeline._common import smtp_config
    from personaflow.quality.alert import build_alert

    smtp = smtp_config(s)
    note = (
        f"The batch's {rows} reviews were moved from raw.reviews to quarantine.reviews; the reviews "
        f"loaded before stay, and the marts and profiles keep them. {path} is unchanged; reasons.json "
        f"and the rows are in {folder}.\nFix the export or its mapping, then run `personaflow ingest "
        f"{path.name} --kind reviews --mapping ...` again."
    )
    message = build_alert(stage="reviews", target=f"batch {batch_id} ({path.name})", result=result,
                          sender=smtp.sender, recipients=smtp.recipients, note=note)  # fmt: skip
    return send_alert(message, smtp, s.reports_dir)


def score_reviews(
    s: Settings, source: str | None = None, aspects: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Fit sentiment on each source's own stars and score all its reviews (rated or not); replaces the
    source's rows of raw.review_scores and raw.review_complaints in one transaction."""
    from personaflow.profiles.sentiment import detect_language, fit_and_score, review_text

    where = location(s)
    with wh.connect(where, read_only=True) as con:
        sources = [source] if source else [r[0] for r in con.execute(
            "select distinct source from raw.reviews order by source").fetchall()]  # fmt: skip
    out: dict[str, Any] = {}
    for name in sources:
        with wh.connect(where, read_only=True) as con:
            rows = con.execute(
                "select review_id, title, text, rating from raw.reviews where source = $1 order by review_id",
                [name],
            ).df()
        if rows.empty:
            continue
        texts = [review_text(t, x) for t, x in zip(rows["title"], rows["text"], strict=True)]
        model, scores = fit_and_score(texts, rows["rating"].to_numpy(dtype=float), aspects=aspects)
        has_text = [bool(t) for t in texts]
        aspects_found = model.complaint_aspects(texts)
        keywords = model.complaint_terms(texts, scores)
        now = datetime.now(UTC).replace(tzinfo=None)
        scored = pd.DataFrame({
            "review_id": rows["review_id"], "source": name,
            # a review without words has no sentiment of its own (its stars still count in the marts)
            "sentiment": [round(float(v), 4) if t else None for v, t in zip(scores, has_text, strict=True)],
            "sentiment_label": [("negative" if v < 0 else "positive") if t else None
                                for v, t in zip(scores, has_text, strict=True)],
            "language": detect_language(texts), "model_kind": model.kind, "scored_at": now,
        })  # fmt: skip
        complaints = pd.DataFrame(
            [(rid, name, "aspect", a) for rid, found in zip(rows["review_id"], aspects_found, strict=True)
             for a in found]
            + [(rid, name, "keyword", k) for rid, found in zip(rows["review_id"], keywords, strict=True)
               for k in found],
            columns=["review_id", "source", "kind", "keyword"],
        )  # fmt: skip
        _replace(where, name, scored, complaints)
        labels = scored["sentiment_label"]
        out[name] = {
            "model_kind": model.kind, "reviews": len(rows), "trained_on": model.n_train,
            "fit_seconds": round(model.fit_seconds, 2), "negative": int((labels == "negative").sum()),
            "positive": int((labels == "positive").sum()), "no_text": int(labels.isna().sum()),
            "complaints": len(complaints),
            "languages": scored["language"].value_counts().head(5).to_dict(),
            "top_negative_terms": model.top_terms(10),
        }  # fmt: skip
    return out


def _replace(where: wh.Location, source: str, scored: pd.DataFrame, complaints: pd.DataFrame) -> None:
    with wh.connect(where) as con:
        con.register("scored_rows", pa.Table.from_pandas(scored, preserve_index=False))
        con.register("complaint_rows", pa.Table.from_pandas(complaints, preserve_index=False))
        try:
            con.begin()
            con.execute("delete from raw.review_scores where source = $1", [source])
            con.execute("delete from raw.review_complaints where source = $1", [source])
            con.execute(
                "insert into raw.review_scores (review_id, source, sentiment, sentiment_label, language, "
                "model_kind, scored_at) select review_id, source, sentiment, sentiment_label, language, "
                "model_kind, scored_at from scored_rows"
            )
            con.execute(
                "insert into raw.review_complaints (review_id, source, kind, keyword) "
                "select review_id, source, kind, keyword from complaint_rows"
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.unregister("scored_rows")
            con.unregister("complaint_rows")


def review_marts(s: Settings, as_of: date | None = None) -> dict[str, Any]:
    """dbt build of the review models alone, as of `as_of` (default: today, UTC), then the customers'
    summaries for serving. The nightly `dbt build` builds the same models with the night's as-of."""
    from personaflow.pipeline.transform import dbt_vars, run_dbt

    as_of = as_of or datetime.now(UTC).date()
    result = run_dbt(
        location(s), as_of, s.dbt_project_dir, s.home / "dbt", select="stg_reviews+ stg_review_complaints+",
        dbt_vars=dbt_vars(s),
    )  # fmt: skip
    result["serving_file"] = str(export_customer_reviews(s))
    return result


def export_customer_reviews(s: Settings) -> Path:
    """marts.customer_reviews as `features_dir/customer_reviews.parquet` (read by /profile and the
    audiences); an empty file with the columns when the mart is absent."""
    target = s.features_dir / CUSTOMER_REVIEWS_FILE
    try:
        with wh.connect(location(s), read_only=True) as con:
            frame = con.execute(f"select {', '.join(SUMMARY_COLUMNS)} from marts.customer_reviews").df()
    except wh.MISSING_TABLE:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in SUMMARY_COLUMNS})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(target)
    return target


def reviews_of(user_id: str, s: Settings) -> dict[str, Any]:
    """Everything the platform holds on one customer's reviews, as plain JSON-ready types: each review as
    it came (`raw_record`) with its score, language and complaints, and their marts summary. The review
    part of a customer's own-data export (right of access, beside `personaflow forget`)."""
    import json

    from personaflow.core.ids import normal_user_id

    user_id = normal_user_id(user_id)
    where = location(s)
    empty: dict[str, Any] = {"user_id": user_id, "reviews": [], "summary": None}
    if not wh.exists(where):
        return empty
    try:
        with wh.connect(where, read_only=True) as con:
            rows = con.execute(
                "select r.source, r.review_id, r.item_id, r.rating, r.title, r.text, r.review_ts, "
                "r.category, r.source_file, r.source_row, r.raw_record, s.sentiment, s.sentiment_label, "
                "s.language, s.model_kind from raw.reviews r left join raw.review_scores s "
                "on s.source = r.source and s.review_id = r.review_id where r.user_id = $1 "
                "order by r.review_ts, r.review_id",
                [user_id],
            ).df()
            complaints = con.execute(
                "select c.source, c.review_id, c.kind, c.keyword from raw.review_complaints c "
                "join raw.reviews r on r.source = c.source and r.review_id = c.review_id "
                "where r.user_id = $1",
                [user_id],
            ).df()
            try:
                summary = con.execute(
                    f"select {', '.join(SUMMARY_COLUMNS)} from marts.customer_reviews where user_id = $1",
                    [user_id],
                ).df()
            except wh.MISSING_TABLE:
                summary = pd.DataFrame()
    except wh.MISSING_TABLE:
        return empty
    said = complaints.groupby(["source", "review_id", "kind"])["keyword"].apply(list).to_dict()
    reviews = []
    for record in rows.to_dict(orient="records"):
        key = (record["source"], record["review_id"])
        record["raw_record"] = json.loads(record["raw_record"]) if record["raw_record"] else None
        record["complaint_aspects"] = said.get((*key, "aspect"), [])
        record["complaint_keywords"] = said.get((*key, "keyword"), [])
        reviews.append(json.loads(pd.Series(record).to_json(date_format="iso")))
    first = json.loads(summary.iloc[0].to_json(date_format="iso")) if len(summary) else None
    return {"user_id": user_id, "reviews": reviews, "summary": first}
