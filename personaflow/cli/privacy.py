"""`personaflow forget USER_ID`: erase a customer everywhere the platform keeps them (see forget.py);
`personaflow export-customer USER_ID`: everything it holds about them, as JSON (export_customer.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personaflow.core import settings as config


def forget(
    user_id: str = typer.Argument(help="The shop's customer id, as the data has it (14911.0 = 14911)."),
    force: bool = typer.Option(
        False, "--force", help="Record the id as forgotten even if no store holds it (refused otherwise)."
    ),
) -> None:
    """Remove the customer from landing files, the warehouse, Feast, served models, reports and logs,
    by the columns that hold a customer id (a row number or price equal to the id is left alone); record
    the deletion (a keyed hash, never the id) in audit/forget.jsonl. Exits 1, changing and recording
    nothing, if no store holds the id (unless --force); exits 1 if a customer column still holds it
    afterwards."""
    from personaflow.pipeline.forget import UnknownUser, forget_user

    try:
        result = forget_user(user_id, config.load(), force=force)
    except (UnknownUser, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2))
    if result["still_holding"]:
        typer.echo(f"forget incomplete: {len(result['still_holding'])} place(s) still hold the id", err=True)
        raise typer.Exit(1)


def export_customer(
    user_id: str = typer.Argument(help="The shop's customer id, as the data has it (14911.0 = 14911)."),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the JSON to this file (mode 600) instead of stdout."),
    ] = None,
) -> None:
    """Everything the platform holds about one customer (profile, events, reviews, demographics,
    segment, scores, audiences, campaigns, and every other table or file with their rows) as JSON: the
    right of access beside `forget`. Exits 1 if no store holds the id, or it was forgotten."""
    from personaflow.pipeline.export_customer import export_customer as export
    from personaflow.pipeline.export_customer import write_export
    from personaflow.pipeline.forget import UnknownUser

    try:
        result = export(user_id, config.load())
    except (UnknownUser, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if output is None:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False, default=str))
        return
    write_export(result, output)
    counts = {"events": len(result["events"]), "reviews": len(result["reviews"]["reviews"]),
              "warehouse_tables": len(result["warehouse"]), "files": len(result["files"])}  # fmt: skip
    typer.echo(json.dumps({"user_id": result["user_id"], "output": str(output), **counts}))
