"""The `personaflow` command: each subcommand is a library function with typed options."""

from personaflow.cli.main import app

__all__ = ["app"]
