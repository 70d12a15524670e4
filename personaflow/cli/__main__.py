"""`python -m personaflow.cli`: the same app as the `personaflow` script."""

from personaflow.cli.main import app

app()
