"""`personaflow` command line: one command per stage, plus `demo`, `models` and `rollback`.

Options mirror the stage functions' arguments; paths and addresses come from settings (env vars).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import typer

from personaflow import settings as config
from personaflow import stages

app = typer.Typer(
    help="personaflow: nightly user profiles and recommenders for e-commerce shops.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DateOpt = Annotated[datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Batch / as-of day.")]


def _print(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def _last_batch_day(s: config.Settings) -> date:
    from ingest.generate import batch_dates

    days = batch_dates(s.landing_dir)
    if not days:
        raise typer.BadParameter(f"no batch files in {s.landing_dir / 'events'}: run `personaflow generate`")
    return days[-1]


@app.command()
def generate(
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    seed: int = 42,
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])] = datetime(2026, 9, 1),
) -> None:
    """Write a deterministic synthetic shop (users, items, one events CSV per day) to the landing area."""
    from ingest.generate import generate_shop, write_shop

    s = config.load()
    shop = generate_shop(users=users, items=items, days=days, seed=seed, start=start.date())
    files = write_shop(shop, s.landing_dir)
    _print(
        {
            "events": len(shop.events),
            "users": len(shop.users),
            "items": len(shop.items),
            "batches": len(files),
            "first_day": files[0].stem[7:],
            "last_day": files[-1].stem[7:],
            "landing_dir": str(s.landing_dir),
        }
    )


@app.command()
def ingest(
    day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"])] = None,
    through: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
) -> None:
    """Load one day's batch (--date), or every landed batch not loaded yet up to --through."""
    s = config.load()
    if through is not None:
        loaded = stages.ingest_history(through.date(), s)
        _print({"batches_loaded": len(loaded), "rows": sum(int(b["rows"]) for b in loaded)})
    else:
        _print(stages.ingest((day or datetime.combine(_last_batch_day(s), datetime.min.time())).date(), s))


@app.command()
def validate(
    day: DateOpt, marts: bool = typer.Option(False, help="Check the marts instead of the batch.")
) -> None:
    """Great Expectations over a raw batch (default) or the marts; exits 1 on failure after alerting."""
    s = config.load()
    _print(stages.validate_marts(day.date(), s) if marts else stages.validate_batch(day.date(), s))


@app.command()
def transform(day: DateOpt) -> None:
    """dbt build of staging models and marts as of the day."""
    _print(stages.transform(day.date(), config.load()))


@app.command()
def features(day: DateOpt) -> None:
    """Feast: export marts, apply, materialize the new interval, write the training set."""
    _print(stages.features(day.date(), config.load()))


@app.command()
def train(epochs: int = 20, dim: int = 64) -> None:
    """Train the recommender on a time-based split and save it as a candidate."""
    _print(stages.train(config.load(), epochs=epochs, dim=dim))


@app.command()
def promote(tag: str) -> None:
    """Promote a candidate if it passes the gate."""
    _print(stages.promote(tag, config.load()))


@app.command()
def models() -> None:
    """List saved model versions with their metrics; the production one is marked."""
    from training.registry import list_models

    s = config.load()
    config.export_tool_env(s)
    for m in list_models(s.production_pointer):
        mark = "*" if m.get("is_production") else " "
        metrics = m.get("metrics", {})
        typer.echo(
            f"{mark} {m['tag']}  ndcg@10={metrics.get('ndcg_at_10', float('nan')):.4f}  "
            f"recall@10={metrics.get('recall_at_10', float('nan')):.4f}  created={m.get('created')}"
        )


@app.command()
def rollback() -> None:
    """Point production back at the previously promoted model."""
    from training.registry import rollback as run

    s = config.load()
    config.export_tool_env(s)
    typer.echo(f"production is now {run(s.production_pointer)}")


@app.command("run-dag")
def run_dag(day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"])] = None) -> None:
    """Run personaflow_nightly for one batch day through Airflow (`dag.test()`)."""
    from personaflow.orchestrate import run_once

    s = config.load()
    result = run_once(s, (day.date() if day else _last_batch_day(s)))
    _print(result)
    if result["state"] != "success":
        raise typer.Exit(1)


@app.command()
def serve() -> None:
    """Start the BentoML server in the foreground (Ctrl-C stops it)."""
    from serving.process import start

    s = config.load()
    config.export_tool_env(s)
    proc = start(s.serve_host, s.serve_port)
    try:
        proc.wait()
    except KeyboardInterrupt:
        from serving.process import stop

        stop(proc)


@app.command()
def demo(users: int = 2000, items: int = 500, days: int = 60, seed: int = 42) -> None:
    """Generate a shop, run the nightly DAG through Airflow, serve the model, ask it once, stop."""
    from personaflow.demo import run_demo

    run_demo(config.load(), users=users, items=items, days=days, seed=seed)


if __name__ == "__main__":  # pragma: no cover
    app()
