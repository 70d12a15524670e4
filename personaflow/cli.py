"""`personaflow` command line: one command per stage, plus `demo`, `models`, `rollback`, and
`up`/`down`/`trigger`/`backfill` for the Airflow service.

Options mirror the stage functions' arguments; paths and addresses come from settings (env vars).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
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
    path: Annotated[
        Path | None, typer.Argument(help="A shop export to import (with --format); omit to load landed days.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Format of PATH: online-retail | csv | parquet.")
    ] = "",
    mapping: Annotated[
        str | None, typer.Option(help="csv/parquet: their=ours pairs, e.g. 'customer=user_id,ts=event_ts'.")
    ] = None,
    day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"])] = None,
    since: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"])] = None,
    through: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    load: bool = typer.Option(True, "--load/--no-load", help="After importing PATH, load its days too."),
    max_rejects: int = typer.Option(0, help="Unparseable lines to set aside (to a .rejects.jsonl file)."),
    overwrite: bool = typer.Option(False, help="Importing: replace landed day files that differ."),
) -> None:
    """Load one day's batch (--date), every landed batch not loaded yet up to --through (from --from),
    or import a shop export (PATH --format online-retail|csv|parquet) as daily batches."""
    from ingest.csvfile import IngestError

    s = config.load()
    try:
        if path is not None:
            if fmt not in ("online-retail", "csv", "parquet"):
                raise typer.BadParameter("importing PATH needs --format online-retail, csv or parquet")
            report = stages.import_events(
                path, fmt, s, mapping=mapping, load=load, through=through.date() if through else None,
                max_rejects=max_rejects, overwrite=overwrite,
            )  # fmt: skip
            _print(report)
        elif fmt:
            raise typer.BadParameter(f"--format {fmt} needs the PATH of the file to import")
        elif through is not None:
            loaded = stages.ingest_history(through.date(), s, since=since.date() if since else None)
            _print({"batches_loaded": len(loaded), "rows": sum(int(b["rows"]) for b in loaded)})
        else:
            batch_day = (day or datetime.combine(_last_batch_day(s), datetime.min.time())).date()
            _print(stages.ingest(batch_day, s, max_rejects=max_rejects))
    except (IngestError, ValueError) as exc:
        if isinstance(exc, typer.BadParameter):
            raise
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def validate(
    day: DateOpt, marts: bool = typer.Option(False, help="Check the marts instead of the batch.")
) -> None:
    """Great Expectations over a raw batch (default) or the marts; exits 1 on failure after alerting.
    Warnings (e.g. a volume drop) alert too but exit 0."""
    from quality.validate import DataQualityError

    s = config.load()
    try:
        _print(stages.validate_marts(day.date(), s) if marts else stages.validate_batch(day.date(), s))
    except (DataQualityError, LookupError, FileNotFoundError) as exc:
        typer.echo(f"validate failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def transform(
    day: DateOpt,
    full_refresh: bool = typer.Option(False, help="Rebuild incremental marts from all of raw."),
) -> None:
    """dbt build of staging models and marts as of the day."""
    _print(stages.transform(day.date(), config.load(), full_refresh=full_refresh))


@app.command()
def features(day: DateOpt) -> None:
    """Feast: export marts, apply, materialize the new interval, write the training set."""
    _print(stages.features(day.date(), config.load()))


@app.command()
def train(
    epochs: int = 20,
    dim: int = 64,
    model: Annotated[
        str | None, typer.Option(help="bpr | two_tower | sasrec | gru (default: PERSONAFLOW_MODEL)")
    ] = None,
    hybrid: Annotated[
        bool | None, typer.Option(help="blend with repeat-buy (default: PERSONAFLOW_HYBRID)")
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option(help="DeepFM re-ranking of candidates (default: PERSONAFLOW_RERANK)")
    ] = None,
) -> None:
    """Train the recommender on a time-based split and save it as a candidate."""
    _print(stages.train(config.load(), epochs=epochs, dim=dim, model=model, hybrid=hybrid, rerank=rerank))


@app.command()
def promote(
    tag: str,
    force: bool = typer.Option(False, help="Promote even if the gate refuses (logged, kept in the pointer)."),
) -> None:
    """Promote a candidate if it passes the gate, run on today's split."""
    _print(stages.promote(tag, config.load(), force=force))


@app.command()
def segments(day: DateOpt) -> None:
    """K-means user segments as of the day: prints the segment table, writes user_segments.parquet."""
    try:
        result = stages.segments(day.date(), config.load())
    except ValueError as exc:
        typer.echo(f"segments failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result["status"] == "skipped":  # not an error: the data cannot support segments yet
        typer.echo(f"segments skipped: {result['reason']}")
        return
    typer.echo(f"k={result['k']} ({result['criterion']})")
    head = f"{'id':>3} {'label':<28} {'size':>7} {'share':>6} {'recency':>8} {'freq':>6} {'monetary':>10}"
    typer.echo(f"{head}  rfm  [top categories]")
    for seg in result["segments"]:
        typer.echo(
            f"{seg['segment_id']:>3} {seg['label']:<28} {seg['size']:>7} {seg['share']:>6.1%} "
            f"{seg['mean_recency_days']:>8.1f} {seg['mean_frequency']:>6.1f} {seg['mean_monetary']:>10.2f}  "
            f"{seg['dominant_rfm_segment']}  [{', '.join(seg['top_categories'])}]"
        )
    typer.echo(f"wrote {result['parquet']}")


@app.command()
def churn(
    day: DateOpt,
    horizon_days: int | None = typer.Option(None, help="Check the mart was built with this horizon."),
) -> None:
    """Churn classifier on marts.churn_labels: prints held-out metrics, scores today's buyers for Feast."""
    try:
        result = stages.churn(day.date(), config.load(), horizon_days=horizon_days)
    except ValueError as exc:
        typer.echo(f"churn failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result["status"] == "skipped":  # not an error: e.g. the log is shorter than the horizon
        typer.echo(f"churn skipped: {result['reason']}")
        return
    keys = ("split", "metrics", "users_scored", "latest_cutoff", "users_scored_as_of", "parquet", "report")
    _print({k: result[k] for k in keys})


@app.command()
def models() -> None:
    """List saved model versions with their metrics; the production one is marked."""
    from training.registry.pointer import list_models

    s = config.load()
    config.export_tool_env(s)
    for m in list_models(s.production_pointer):
        mark = "*" if m.get("is_production") else " "
        metrics = m.get("metrics", {})
        typer.echo(
            f"{mark} {m['tag']}  {m.get('kind', '?'):<16} "
            f"ndcg@10={metrics.get('ndcg_at_10', float('nan')):.4f}  "
            f"recall@10={metrics.get('recall_at_10', float('nan')):.4f}  created={m.get('created')}"
        )


@app.command()
def rollback() -> None:
    """Point production back at the previously promoted model."""
    from training.registry.pointer import rollback as run

    s = config.load()
    config.export_tool_env(s)
    typer.echo(f"production is now {run(s.production_pointer)}")


@app.command()
def announce(day: DateOpt) -> None:
    """Tell the running Airflow (`personaflow up`) that the day's batch was corrected and re-ingested:
    an event on the raw asset starts `personaflow_refresh` for that day."""
    from personaflow.orchestrate import announce_batch

    _print(announce_batch(config.load(), day.date()))


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
def up() -> None:
    """Start Airflow (UI, scheduler, our DAGs) and, if a model is in production, the BentoML server."""
    from personaflow.airflow_service import up as start

    s = config.load()
    started = start(s)
    typer.echo(f"Airflow UI   {started.url}  (ready in {started.seconds:.0f}s)")
    typer.echo(f"login        {started.user} / {started.password}")
    typer.echo(f"serving      {started.serving_url or 'not started: no model in production yet'}")
    typer.echo(f"logs         {s.home / 'run'}   stop with `personaflow down`")


@app.command()
def down() -> None:
    """Stop what `personaflow up` started (signals each process group, waits for the ports to close)."""
    from personaflow.airflow_service import down as stop

    stopped = stop(config.load())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def _client(s: config.Settings):
    from personaflow.airflow_api import AirflowClient, read_password

    password = s.airflow_password or read_password(s.airflow_home, s.airflow_user)
    return AirflowClient(f"http://{s.airflow_host}:{s.airflow_port}", s.airflow_user, password)


@app.command()
def trigger(
    day: DateOpt,
    wait: bool = typer.Option(False, help="Wait for the run to finish and print every task's state."),
) -> None:
    """Trigger personaflow_nightly for one batch day on the running Airflow (`personaflow up`)."""
    from personaflow.orchestrate import DAG_ID

    client = _client(config.load())
    if client.dag(DAG_ID)["is_paused"]:
        client.set_paused(DAG_ID, False)
        typer.echo(f"{DAG_ID} was paused: unpaused it")
    run_id = client.trigger(DAG_ID, day.date(), conf={"batch_date": day.date().isoformat()})
    typer.echo(f"triggered {run_id}")
    if wait:
        run = client.wait(DAG_ID, run_id, timeout=3600)
        _print({"state": run["state"], "note": run.get("note"), "tasks": client.task_states(DAG_ID, run_id)})
        if run["state"] != "success":
            raise typer.Exit(1)


@app.command()
def backfill(
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"])],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"])],
    rerun: bool = typer.Option(False, help="Also redo days that already have a run."),
    wait: bool = typer.Option(False, help="Wait for every day's run and print its state."),
) -> None:
    """One personaflow_nightly run per day from --from to --to (inclusive), oldest first, one at a time."""
    from personaflow.orchestrate import DAG_ID

    client = _client(config.load())
    if client.dag(DAG_ID)["is_paused"]:
        client.set_paused(DAG_ID, False)
    created = client.backfill(DAG_ID, first.date(), last.date(), rerun=rerun)
    typer.echo(f"backfill {created['id']}: {first.date()} .. {last.date()}")
    if wait:
        runs = client.wait_backfill(DAG_ID, created["id"], timeout=6 * 3600)
        _print({r["logical_date"][:10]: r["state"] for r in runs})
        if any(r["state"] != "success" for r in runs):
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
