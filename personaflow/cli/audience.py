"""`personaflow audience`: pick customers by profile, see the size, export the list, save the definition.

Options mirror personaflow/profiles/audiences.py's AudienceSpec; repeat a list option for any-of
(`--rfm-segment Champions --rfm-segment "Loyal Customers"`).

    personaflow audience --name lapsing-loyal --rfm-segment "Loyal Customers" --min-recency-days 30 --save
    personaflow audience --min-churn-score 0.6 --bought-text CANDLE --export at_risk_candles.csv
    personaflow audience --saved lapsing-loyal            # a saved one, with its size over time
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personaflow.core import settings as config

Many = Annotated[list[str] | None, typer.Option()]


def audience(
    name: str = typer.Option("adhoc", help="Audience name (lower-case, digits, - and _)."),
    description: str = typer.Option("", help="What the audience is for, in words."),
    rfm_segment: Many = None,
    segment_label: Many = None,
    persona: Many = None,
    min_churn_score: float | None = None,
    max_churn_score: float | None = None,
    min_recency_days: int | None = None,
    max_recency_days: int | None = None,
    min_frequency: int | None = None,
    max_frequency: int | None = None,
    min_monetary: float | None = None,
    max_monetary: float | None = None,
    country: Many = None,
    bought_category: Many = None,
    bought_item: Many = None,
    bought_text: Many = None,
    last_review_sentiment: str | None = typer.Option(None, help="negative | positive: of the newest review."),
    min_share_negative_reviews: float | None = None,
    saved: str | None = typer.Option(None, help="Run a saved audience by name instead."),
    save: bool = typer.Option(False, help="Keep the definition: refreshed every night from then on."),
    export: Annotated[Path | None, typer.Option(help="Write the members to a .csv or .parquet file.")] = None,
    show: int = typer.Option(10, help="Members to print."),
) -> None:
    """Customers picked by RFM segment, K-means segment, persona, churn risk, recency/frequency/monetary,
    country and what they bought: size, share, the first members; export and save."""
    from personaflow.pipeline.audiences import run_audience, save_audience, saved_audience, size_history
    from personaflow.profiles.audiences import AudienceSpec

    s = config.load()
    if saved:
        spec = saved_audience(saved, s)
    else:
        spec = AudienceSpec(
            name=name, description=description, rfm_segments=rfm_segment or [],
            segment_labels=segment_label or [], personas=persona or [], min_churn_score=min_churn_score,
            max_churn_score=max_churn_score, min_recency_days=min_recency_days,
            max_recency_days=max_recency_days, min_frequency=min_frequency, max_frequency=max_frequency,
            min_monetary=min_monetary, max_monetary=max_monetary, countries=country or [],
            bought_categories=bought_category or [], bought_items=bought_item or [],
            bought_text=bought_text or [], last_review_sentiment=last_review_sentiment,
            min_share_negative_reviews=min_share_negative_reviews,
        )  # fmt: skip
    result = run_audience(spec, s, export=export, show=show)
    if save:
        result["saved"] = str(save_audience(spec, s))
    if saved or save:
        result["size_history"] = size_history(s, spec.name)
    typer.echo(json.dumps(result, indent=2, default=str))
