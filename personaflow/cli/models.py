"""The model-store commands: `train` a candidate, `promote` it through the gate, list the `models`,
`rollback` production, and `prune` (keep the production model, its rollback history and the newest
candidates; delete the other versions, personaflow/training/registry/retention.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from personaflow.cli.common import _print
from personaflow.core import settings as config
from personaflow.pipeline import promote as promote_stage
from personaflow.pipeline import train as train_stage


def prune(
    keep: int | None = typer.Option(
        None,
        help="Newest versions kept besides production and its rollback "
        "history (default: PERSONAFLOW_KEEP_CANDIDATES).",
    ),
    dry_run: bool = typer.Option(False, help="Say what would go, delete nothing."),
) -> None:
    """Prune the model store; never the model serving, never one rollback may need."""
    from personaflow.training.registry.retention import prune as run

    s = config.load()
    _print(run(s.production_pointer, s.keep_candidates if keep is None else keep, dry_run=dry_run))


def train(
    epochs: int = 20,
    dim: int = 64,
    model: Annotated[
        str | None,
        typer.Option(
            help="auto (chosen on validation) | bpr | two_tower | sasrec | gru | item_knn | tifu | "
            "repeat_buy | popularity (default: PERSONAFLOW_MODEL)"
        ),
    ] = None,
    hybrid: Annotated[
        bool | None, typer.Option(help="blend with repeat-buy (default: PERSONAFLOW_HYBRID)")
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option(help="DeepFM re-ranking of candidates (default: PERSONAFLOW_RERANK)")
    ] = None,
) -> None:
    """Train the recommender on a time-based split and save it as a candidate."""
    s = config.load()
    _print(train_stage.train(s, epochs=epochs, dim=dim, model=model, hybrid=hybrid, rerank=rerank))


def promote(
    tag: str,
    force: bool = typer.Option(False, help="Promote even if the gate refuses (logged, kept in the pointer)."),
) -> None:
    """Promote a candidate if it passes the gate, run on today's split."""
    _print(promote_stage.promote(tag, config.load(), force=force))


def models() -> None:
    """List saved model versions with their metrics; the production one is marked."""
    from personaflow.training.registry.pointer import list_models

    s = config.load()
    found = list_models(s.production_pointer)
    if not found:
        typer.echo(f"no model saved yet in {s.bentoml_home}: train one with `personaflow train` or "
                   "`personaflow history PATH`")  # fmt: skip
        return
    for m in found:
        mark = "*" if m.get("is_production") else " "
        metrics = m.get("metrics", {})
        typer.echo(
            f"{mark} {m['tag']}  {m.get('kind', '?'):<16} "
            f"ndcg@10={metrics.get('ndcg_at_10', float('nan')):.4f}  "
            f"recall@10={metrics.get('recall_at_10', float('nan')):.4f}  created={m.get('created')}"
        )


def rollback() -> None:
    """Point production back at the previously promoted model."""
    from personaflow.training.registry.pointer import rollback as run

    s = config.load()
    typer.echo(f"production is now {run(s.production_pointer)}")
