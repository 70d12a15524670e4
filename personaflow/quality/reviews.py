"""Great Expectations over a loaded reviews batch, and its quarantine.

The batch suite (critical unless said): review ids present and unique, a product on every review,
ratings in 1..5, review times not in the future, and texts mostly present (at most
`max_empty_text_share` of reviews with neither title nor text: a mapping pointing at the wrong column
fails here, not in the marts); the share of reviews without a customer is a notice only (a
product-only source such as the clothing set has none).

A failed batch leaves raw.reviews for quarantine.reviews in one transaction (same columns, plus when
and why), its raw.review_batches row says `quarantined`, and `quarantine_dir/reviews/<batch_id>/` holds
reasons.json and the batch's rows as JSON lines (their customer under `user_id`, so `personaflow forget`
finds them there too). Memory: one batch of reviews in a frame.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.warehouse import Location
from personaflow.quality.checks import CheckResult, _run_suite

MAX_EMPTY_TEXT_SHARE = 0.5


def review_expectations(now: datetime, max_empty_text_share: float = MAX_EMPTY_TEXT_SHARE) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="a batch with reviews"),
        gxe.ExpectColumnValuesToNotBeNull(column="review_id"),
        gxe.ExpectColumnValuesToBeUnique(column="review_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=1, max_value=5),
        gxe.ExpectColumnValuesToBeBetween(column="review_ts", max_value=now, description="no future reviews"),
        gxe.ExpectColumnValuesToNotBeNull(
            column="any_text", mostly=1 - max_empty_text_share, description="reviews mostly have words"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="user_id", mostly=1.0, severity="info"),
    ]


def check_reviews(
    frame: pd.DataFrame, *, now: datetime | None = None, docs_dir: Path | None = None,
    max_empty_text_share: float = MAX_EMPTY_TEXT_SHARE,
) -> CheckResult:  # fmt: skip
    """Validate one batch of reviews (raw.reviews rows of one batch_id)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    data = frame.assign(any_text=frame["text"].where(frame["text"].notna(), frame["title"]))
    data = data.drop(columns=[c for c in ("raw_record",) if c in data.columns])
    source = str(frame["source"].iloc[0]) if len(frame) else "empty"
    return _run_suite(
        f"raw_reviews.{source}", [("raw.reviews", data, review_expectations(now, max_empty_text_share))],
        docs_dir, f"reviews-{source}",
    )  # fmt: skip


def quarantine_reviews(warehouse: Location, batch_id: str, quarantine_dir: Path, result: CheckResult) -> Path:
    """Move batch `batch_id` from raw.reviews to quarantine.reviews; returns the folder with reasons."""
    now = datetime.now(UTC).replace(tzinfo=None)
    target = quarantine_dir / "reviews" / batch_id
    target.mkdir(parents=True, exist_ok=True)
    reasons = [f.describe() for f in result.failures]
    with wh.connect(warehouse) as con:
        rows = con.execute("select * from raw.reviews where batch_id = $1", [batch_id]).df()
        con.begin()
        try:
            con.execute("create schema if not exists quarantine")
            con.execute(
                "create table if not exists quarantine.reviews as select *, cast(null as timestamp) as "
                "quarantined_at, cast(null as varchar) as reason from raw.reviews limit 0"
            )
            con.execute("delete from quarantine.reviews where batch_id = $1", [batch_id])
            con.execute(
                "insert into quarantine.reviews select *, cast($1 as timestamp), cast($2 as varchar) "
                "from raw.reviews where batch_id = $3",
                [now, "; ".join(reasons), batch_id],
            )
            con.execute("delete from raw.reviews where batch_id = $1", [batch_id])
            con.execute(
                "update raw.review_batches set status = 'quarantined' where batch_id = $1", [batch_id]
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
    (target / "reasons.json").write_text(
        json.dumps(
            {
                "batch_id": batch_id,
                "quarantined_at": now.isoformat(),
                "reasons": reasons,
                "result": result.to_dict(),
            },
            indent=2,
            default=str,
        )  # fmt: skip
    )
    with (target / "rows.jsonl").open("w") as handle:
        for record in rows.drop(columns=["loaded_at"]).to_dict(orient="records"):
            handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    return target
