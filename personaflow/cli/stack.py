"""`personaflow stack up|down|status`: the local PostgreSQL + Redis of the scale path
(personaflow/ops/scale_stack.py); `personaflow up` then runs Airflow on them in celery mode."""

from __future__ import annotations

import typer

from personaflow.cli.common import _print
from personaflow.core import settings as config

stack = typer.Typer(help="A local PostgreSQL + Redis for the scale path (celery mode).", no_args_is_help=True)


@stack.command()
def up() -> None:
    """Start PostgreSQL and Redis under <PERSONAFLOW_HOME>/stack/ (kept if running) and write stack/env."""
    from personaflow.ops.local_servers import ServerError
    from personaflow.ops.scale_stack import up as start

    try:
        state = start(config.load())
    except ServerError as exc:
        typer.echo(f"stack up: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"postgres     127.0.0.1:{state.postgres_port}  (warehouse + Airflow metadata DB)")
    typer.echo(f"redis        127.0.0.1:{state.redis_port}  (online store db 0, Celery broker db 1)")
    typer.echo(f"settings     set -a; . {state.folder / 'env'}; set +a   then `personaflow up`")


@stack.command()
def down() -> None:
    """Stop the stack's servers (their data stays for the next `stack up`)."""
    from personaflow.ops.scale_stack import down as stop

    stopped = stop(config.load())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack.command()
def status() -> None:
    """Ports, whether each server answers, and the settings to export."""
    from personaflow.ops.scale_stack import status as state

    _print(state(config.load()))
