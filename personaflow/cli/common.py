"""What the `personaflow` command modules share: the --date option, JSON printing, the last landed day."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import typer

from personaflow.core import settings as config

DateOpt = Annotated[datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Batch / as-of day.")]


def _print(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def _last_batch_day(s: config.Settings) -> date:
    from personaflow.core.landing import batch_dates

    days = batch_dates(s.landing_dir)
    if not days:
        raise typer.BadParameter(f"no batch files in {s.landing_dir / 'events'}: run `personaflow generate`")
    return days[-1]
