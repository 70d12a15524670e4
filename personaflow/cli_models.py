"""`personaflow prune`: keep the production model, its rollback history and the newest candidates;
delete the other versions from the model store (training/registry/retention.py)."""

from __future__ import annotations

import typer

from personaflow import settings as config
from personaflow.cli_common import _print


def prune(
    keep: int | None = typer.Option(
        None,
        help="Newest versions kept besides production and its rollback "
        "history (default: PERSONAFLOW_KEEP_CANDIDATES).",
    ),
    dry_run: bool = typer.Option(False, help="Say what would go, delete nothing."),
) -> None:
    """Prune the model store; never the model serving, never one rollback may need."""
    from training.registry.retention import prune as run

    s = config.load()
    config.export_tool_env(s)
    _print(run(s.production_pointer, s.keep_candidates if keep is None else keep, dry_run=dry_run))
