"""`personaflow evaluate`: score the nightly recipe on a split the shop brings
(personaflow/training/external.py).

    personaflow evaluate --train train.csv --test test.csv                 # the shop's own cut
    personaflow evaluate --purchases all.csv --cuts last_order.csv         # one cut time per user
    personaflow evaluate --purchases all.csv --last-basket                 # each user's last basket
    personaflow evaluate --train t.parquet --test v.parquet --model bpr --no-rerank --out result.json

Files: CSV, CSV.gz or Parquet with user_id, item_id, ts (cuts: user_id, cut_ts). The defaults are the
nightly run's (PERSONAFLOW_MODEL, _HYBRID, _RERANK); features come from the training rows.
`--last-basket`: the next-basket protocol (training/data/purchases.py `last_basket_split`): users with
>= 3 baskets (one timestamp each) are tested on their last one, validated on the one before. Every row
of the answer also scores repeat items (bought by the user before) and explore items apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personaflow.cli.common import _print
from personaflow.core import settings as config


def evaluate(
    train: Annotated[Path | None, typer.Option(help="Training purchases (with --test).")] = None,
    test: Annotated[
        Path | None, typer.Option(help="Test purchases: each user's truth (with --train).")
    ] = None,
    purchases: Annotated[Path | None, typer.Option(help="All purchases (with --cuts).")] = None,
    cuts: Annotated[
        Path | None, typer.Option(help="One cut time per user: user_id, cut_ts (with --purchases).")
    ] = None,
    model: str | None = typer.Option(None, help="Model or baseline (default: PERSONAFLOW_MODEL)."),
    hybrid: bool | None = typer.Option(None, help="Blend with repeat-buy (default: PERSONAFLOW_HYBRID)."),
    rerank: bool | None = typer.Option(None, help="DeepFM re-ranking (default: PERSONAFLOW_RERANK)."),
    val_days: int = typer.Option(30, help="Validation window inside the training rows (early stopping)."),
    exclude_bought: bool | None = typer.Option(
        None, help="Rank bought items last (default: measured from the shop's repeat rate)."
    ),
    last_basket: bool = typer.Option(
        False, help="With --purchases alone: test each user's last basket (users with >= 3 baskets)."
    ),
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="Also write the answer here as JSON.")] = None,
) -> None:
    """Score the nightly recipe and every baseline on your own split, and say if the gate would pass it."""
    from personaflow.training.data.features import purchases_source
    from personaflow.training.data.given import read_given, read_purchases
    from personaflow.training.data.purchases import last_basket_split
    from personaflow.training.external import assess
    from personaflow.training.recipe import Recipe

    if last_basket:
        if purchases is None or cuts is not None or train is not None or test is not None:
            raise ValueError("--last-basket takes --purchases alone (the cut is each user's last basket)")
        split = last_basket_split(read_purchases(purchases))
    else:
        split = read_given(train, test, purchases, cuts)
    if not split.test_truth:
        raise ValueError("no test user also has training rows: nothing to score")
    s = config.load()
    recipe = Recipe(
        model=model or s.model, hybrid=s.hybrid if hybrid is None else hybrid,
        rerank=s.rerank if rerank is None else rerank, seed=seed, val_days=val_days,
    )  # fmt: skip
    result = assess(split, recipe, purchases_source(None), exclude_bought)
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=2, default=str))
    _print(result)
