"""`personaflow forget USER_ID`: erase a customer everywhere the platform keeps them (see forget.py)."""

from __future__ import annotations

import json

import typer

from personaflow.core import settings as config


def forget(user_id: str = typer.Argument(help="The shop's customer id, as the data has it.")) -> None:
    """Remove the customer from landing files, the warehouse, Feast, served models, reports and logs;
    record the deletion (a keyed hash, never the id) in audit/forget.jsonl. Exits 1 if any file under
    the home still holds the id afterwards."""
    from personaflow.pipeline.forget import forget_user

    result = forget_user(user_id, config.load())
    typer.echo(json.dumps(result, indent=2))
    if result["still_holding"]:
        typer.echo(f"forget incomplete: {len(result['still_holding'])} file(s) still hold the id", err=True)
        raise typer.Exit(1)
