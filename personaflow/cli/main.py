"""`personaflow` command line: one command per stage, plus `models` and `rollback`. The app's one-line
errors are in personaflow/cli/app.py; the service commands (`up`/`down`/`trigger`/`backfill`,
`announce`, `run-dag`, `serve`, `demo`) in personaflow/cli/service.py, registered here.

Options mirror the stage functions' arguments; paths and addresses come from settings (env vars).
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from personaflow.cli.abtest import abtest
from personaflow.cli.app import OneLineErrors
from personaflow.cli.audience import audience
from personaflow.cli.common import DateOpt, _last_batch_day, _print
from personaflow.cli.evaluate import evaluate
from personaflow.cli.models import models, promote, prune, rollback, train
from personaflow.cli.privacy import export_customer, forget
from personaflow.cli.service import announce, backfill, demo, down, run_dag, serve, trigger, up
from personaflow.cli.stack import stack
from personaflow.core import settings as config
from personaflow.core.tool_env import export_tool_env
from personaflow.pipeline import features as features_stage
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline import profiles as profiles_stage
from personaflow.pipeline import transform as transform_stage
from personaflow.pipeline import validate as validate_stage

app = OneLineErrors(
    help="personaflow: nightly user profiles and recommenders for e-commerce shops. Add --debug to any "
    "command for a traceback on failure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _process_edge() -> None:
    """Before any command: the tools' own variables (dbt, Feast, BentoML, Airflow) from the settings."""
    export_tool_env(config.load())


app.command()(audience)
app.command()(evaluate)
app.command()(forget)
app.command("export-customer")(export_customer)
app.command()(prune)
app.command()(train)
app.command()(promote)
app.command()(models)
app.command()(rollback)
app.add_typer(abtest, name="abtest")
app.add_typer(stack, name="stack")


@app.command()
def generate(
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    seed: int = 42,
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])] = datetime(2026, 9, 1),
    sessions_per_day: Annotated[
        float, typer.Option(help="Mean sessions per active user and day (0.15: about 35 events a user).")
    ] = 0.15,
) -> None:
    """Write a deterministic synthetic shop (users, items, one events CSV per day) to the landing area.

    Streamed to disk chunk by chunk and day by day (memory: one chunk of users or one day of events,
    never the whole log), so a 1M-customer shop takes minutes."""
    from personaflow.ingest.generate import stream_shop

    s = config.load()
    written = stream_shop(
        s.landing_dir, users=users, items=items, days=days, seed=seed, start=start.date(),
        sessions_per_day=sessions_per_day,
    )  # fmt: skip
    files = written.files
    _print(
        {
            "events": written.events,
            "users": written.users,
            "items": written.items,
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
    fmt: Annotated[str, typer.Option("--format", help="Format of PATH: online-retail | csv | parquet.")] = "",
    mapping: Annotated[
        str | None,
        typer.Option(
            help="csv/parquet: their=ours pairs, e.g. 'customer=user_id,ts=event_ts'; --kind reviews: a "
            "shipped mapping's name (womens-clothing, amazon-all-beauty) or a TOML mapping file."
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="What PATH holds: events | reviews | customers | products | campaigns | coupons | "
            "redemptions (with --mapping)."
        ),
    ] = "events",
    day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"])] = None,
    since: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"])] = None,
    through: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    load: bool = typer.Option(True, "--load/--no-load", help="After importing PATH, load its days too."),
    max_rejects: int = typer.Option(0, help="Unparseable lines to set aside (to a .rejects.jsonl file)."),
    overwrite: bool = typer.Option(False, help="Importing: replace landed day files that differ."),
) -> None:
    """Load one day's batch (--date), every landed batch not loaded yet up to --through (from --from),
    or import a shop export (PATH --format online-retail|csv|parquet) as daily batches."""
    from personaflow.ingest.csvfile import IngestError

    s = config.load()
    if kind == "reviews":
        _print(_ingest_reviews(path, mapping, s))
        return
    if kind != "events":
        _print(_ingest_shop_table(kind, path, mapping, s))
        return
    try:
        if path is not None:
            if fmt not in ("online-retail", "csv", "parquet"):
                raise typer.BadParameter("importing PATH needs --format online-retail, csv or parquet")
            report = ingest_stage.import_events(
                path, fmt, s, mapping=mapping, load=load, through=through.date() if through else None,
                max_rejects=max_rejects, overwrite=overwrite,
            )  # fmt: skip
            _print(report)
        elif fmt:
            raise typer.BadParameter(f"--format {fmt} needs the PATH of the file to import")
        elif through is not None:
            loaded = ingest_stage.ingest_history(through.date(), s, since=since.date() if since else None)
            _print({"batches_loaded": len(loaded), "rows": sum(int(b["rows"]) for b in loaded)})
        else:
            batch_day = (day or datetime.combine(_last_batch_day(s), datetime.min.time())).date()
            _print(ingest_stage.ingest(batch_day, s, max_rejects=max_rejects))
    except (IngestError, ValueError) as exc:
        if isinstance(exc, typer.BadParameter):
            raise
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc


def _ingest_reviews(path: Path | None, mapping: str | None, s: config.Settings) -> dict:
    """`ingest PATH --kind reviews --mapping M`: import, check, score, review marts."""
    from personaflow.ingest.csvfile import IngestError
    from personaflow.pipeline.reviews import import_reviews
    from personaflow.quality.validate import DataQualityError

    if path is None or not mapping:
        raise typer.BadParameter("--kind reviews needs the PATH of the export and --mapping NAME_OR_FILE")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # dbt's progress: stdout carries only the summary
            return import_reviews(path, mapping, s)
    except (IngestError, DataQualityError) as exc:
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc


def _ingest_shop_table(kind: str, path: Path | None, mapping: str | None, s: config.Settings) -> dict:
    """`ingest PATH --kind customers|products|campaigns|coupons|redemptions --mapping M`
    (docs/guides/campaigns.md, docs/guides/catalogue.md)."""
    from personaflow.ingest.csvfile import IngestError
    from personaflow.pipeline.shop_tables import KINDS, import_table
    from personaflow.quality.validate import DataQualityError

    if kind not in KINDS:
        raise typer.BadParameter(f"--kind {kind}: one of events, reviews, {', '.join(KINDS)}")
    if path is None or not mapping:
        raise typer.BadParameter(f"--kind {kind} needs the PATH of the export and --mapping NAME_OR_FILE")
    try:
        return import_table(kind, path, mapping, s)
    except (IngestError, DataQualityError) as exc:
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def history(
    path: Annotated[
        Path,
        typer.Argument(
            help="The shop's export (.csv, .csv.gz, .xlsx, .parquet), or a folder of its tables: events "
            "plus any of customers, products, reviews, campaigns, coupons, redemptions "
            "(docs/guides/own-data.md)."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="online-retail | csv | parquet.")] = "online-retail",
    mapping: Annotated[str | None, typer.Option(help="csv/parquet: their=ours column pairs.")] = None,
    manifest: Annotated[
        str | None,
        typer.Option(
            help="A folder's manifest: a shipped one's name (complete-journey) or a TOML file; default the "
            "folder's personaflow.toml, else the file names."
        ),
    ] = None,
    overwrite: bool = typer.Option(False, help="Replace landed day files that differ from the export."),
    train: bool = typer.Option(True, "--train/--no-train", help="Also train and promote a first model."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show the tools' own output (dbt, Feast, GX, epochs) on the terminal."
    ),
    empty_days: Annotated[
        str,
        typer.Option(
            help="Days without events: land (a header-only batch each, a closed shop), skip (only days "
            "with events are batches), or auto: land unless fewer than half the days have events (a "
            "sparse log, e.g. years of reviews)."
        ),
    ] = "auto",
) -> None:
    """Build everything from a history at once: import and load every day (and a folder's other
    tables), validate every day with the batch suite, marts, segments, churn, features, a first model
    through the gate. The terminal
    shows the stages and a progress bar; the tools' own output goes to reports/history_<time>.log."""
    from personaflow.cli.console import ToolOutput
    from personaflow.pipeline.history import build_history

    s = config.load()
    log_file = s.reports_dir / f"history_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    # stdout carries only the summary: the tools' own prints go to the log (or stderr with --verbose)
    with ToolOutput(log_file, verbose) as console, contextlib.redirect_stdout(sys.stderr):
        if not verbose:
            console.line(f"the tools' output (dbt, Feast, GX, epochs): {log_file}")
        result = build_history(
            path, fmt, s, mapping=mapping, overwrite=overwrite, train=train, progress=console.line,
            manifest=manifest, empty_days=empty_days,
        )  # fmt: skip
    full = s.reports_dir / f"history_{result['as_of']}.json"
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(json.dumps(result, indent=2, default=str))
    imported, promoted = result["import"], result.get("promote") or {}
    _print({
        "as_of": result["as_of"], "rows": imported["rows"], "customers": imported["customers"],
        "products": imported["products"], "faults": imported.get("faults", {}),
        "days": result["validate_history"]["days"], "failed_days": result["validate_history"]["failed_days"],
        "span_days": imported["batches"].get("days"),
        "empty_days_not_landed": imported["batches"].get("empty_days_not_landed", 0),
        "production": promoted.get("tag") if promoted.get("promoted") else None,
        "stages": result["stages"], "total_seconds": result["total_seconds"], "report": str(full),
        "log": None if verbose else str(log_file),
        **({"folder": result["folder"], "tables": {k[7:]: _table_gist(result[k]) for k in result["stages"]
                                                   if k.startswith("import_")}}
           if "folder" in result else {}),
        **({"events_from_reviews": result["events_from_reviews"]} if "events_from_reviews" in result else {}),
        **({"extra_columns": imported["extra_columns"], "raw_copy": imported["raw_copy"]}
           if imported.get("extra_columns") else {}),
        **({k: imported[k] for k in ("rows_set_aside", "set_aside_reasons", "set_aside_file")}
           if imported.get("rows_set_aside") else {}),
    })  # fmt: skip


def _table_gist(report: dict) -> dict:
    """A folder table's import in the history summary: its counts, not its rows' details."""
    keys = ("records", "rows", "repeats_dropped", "products", "customers", "campaigns", "members", "coupons",
            "repeats", "redemptions", "table_rows", "batch_id")
    return {k: report[k] for k in keys if k in report}


@app.command()
def validate(
    day: DateOpt, marts: bool = typer.Option(False, help="Check the marts instead of the batch.")
) -> None:
    """Great Expectations over a raw batch (default) or the marts; exits 1 on failure after alerting.
    Warnings (e.g. a volume drop) alert too but exit 0."""
    from personaflow.quality.validate import DataQualityError

    s = config.load()
    try:
        run = validate_stage.validate_marts if marts else validate_stage.validate_batch
        _print(run(day.date(), s))
    except (DataQualityError, LookupError, FileNotFoundError) as exc:
        typer.echo(f"validate failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def transform(
    day: DateOpt,
    full_refresh: bool = typer.Option(False, help="Rebuild incremental marts from all of raw."),
) -> None:
    """dbt build of staging models and marts as of the day."""
    _print(transform_stage.transform(day.date(), config.load(), full_refresh=full_refresh))


@app.command()
def features(day: DateOpt) -> None:
    """Feast: export marts, apply, materialize the new interval, write the training set."""
    _print(features_stage.features(day.date(), config.load()))


@app.command()
def drift(day: DateOpt) -> None:
    """PSI/KS of the day's feature and churn-score snapshots against the night before; warns by email."""
    from personaflow.pipeline.drift import check_drift

    _print(check_drift(day.date(), config.load()))


@app.command()
def report(day: DateOpt) -> None:
    """Render the night's HTML report (data quality, RFM, segments, churn, models, drift, audiences)."""
    from personaflow.report.nightly import build_report

    _print(build_report(day.date(), config.load()))


@app.command()
def segments(day: DateOpt) -> None:
    """K-means user segments and behaviour personas as of the day: prints both tables (each persona with
    its description and one suggested action), writes user_segments.parquet."""
    try:
        result = profiles_stage.segments(day.date(), config.load())
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
    personas = result["personas"]
    typer.echo(
        f"\npersonas: k={personas['k']} over {personas['buyers']:,} buyers, "
        f"{personas['not_yet_buyers']:,} not yet buyers ({personas['criterion']})"
    )
    for k, row in personas["per_k"].items():
        verdict = "admissible" if row["admissible"] else f"not admissible: {row['why_not']}"
        typer.echo(
            f"  k={k}: silhouette {row['silhouette']:.3f}, smallest {row['smallest_share']:.1%}, {verdict}"
        )
    for p in personas["personas"]:
        typer.echo(f"{p['persona_id']:>3} {p['name']} ({p['size']:,}, {p['share']:.1%}): {p['description']}")
        typer.echo(f"      action: {p['action']}")
    typer.echo(f"wrote {result['parquet']}")


@app.command()
def churn(
    day: DateOpt,
    horizon_days: int | None = typer.Option(None, help="Check the mart was built with this horizon."),
) -> None:
    """Churn classifier on marts.churn_labels: prints held-out metrics, scores today's buyers for Feast."""
    try:
        result = profiles_stage.churn(day.date(), config.load(), horizon_days=horizon_days)
    except ValueError as exc:
        typer.echo(f"churn failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result["status"] == "skipped":  # not an error: e.g. the log is shorter than the horizon
        typer.echo(f"churn skipped: {result['reason']}")
        return
    keys = ("split", "metrics", "users_scored", "latest_cutoff", "users_scored_as_of", "parquet", "report")
    _print({k: result[k] for k in keys})


# the service commands (personaflow/cli/service.py), listed after the stages as before
app.command()(announce)
app.command("run-dag")(run_dag)
app.command()(up)
app.command()(down)
app.command()(trigger)
app.command()(backfill)
app.command()(serve)
app.command()(demo)
