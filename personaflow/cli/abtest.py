"""`personaflow abtest start|stop|report`: an A/B test of a challenger model against production."""

from __future__ import annotations

import typer

from personaflow.cli.common import _print
from personaflow.core import settings as config

abtest = typer.Typer(help="A/B test a challenger model against production at serving.", no_args_is_help=True)


@abtest.command()
def start(
    tag: str = typer.Argument(help="The challenger's model tag (personaflow models lists them)."),
    share: float = typer.Option(0.1, help="Share of users in the challenger arm, in (0, 1)."),
    name: str | None = typer.Option(None, help="Experiment name (default: ab-<version>)."),
) -> None:
    """Serve `tag` to a stable share of users; every answer names its arm and is logged as an exposure."""
    from dataclasses import asdict

    from personaflow.experiments.state import start as run
    from personaflow.training.registry.store import get_model

    s = config.load()
    tag = str(get_model(tag).tag)  # an unknown tag fails here, before anything is written
    _print(asdict(run(s.home, tag, share, name)))


@abtest.command()
def stop() -> None:
    """End the running test: every user gets production again (the exposures stay for the report)."""
    from personaflow.experiments.state import stop as run

    ended = run(config.load().home)
    typer.echo(f"stopped {ended.experiment}" if ended else "no A/B test was running")


@abtest.command()
def report(
    experiment: str | None = typer.Option(None, help="A past experiment by name (default: the running one)."),
    window_days: float = typer.Option(
        7, help="Purchases this many days after a user's first exposure count."
    ),
) -> None:
    """Per arm: users, conversion, revenue and items bought from the recommendations; the differences
    with their intervals, the guardrails, and whether the stopping rule says stop."""
    from personaflow.pipeline.abtest import report as run

    _print(run(config.load(), experiment, window_days))
