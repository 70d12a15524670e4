"""`personaflow forget USER_ID`: erase a customer everywhere the platform keeps them (see forget.py)."""

from __future__ import annotations

import json

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
