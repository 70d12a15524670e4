"""The dbt model graph from a precompiled manifest: what the DAG turns into one Airflow task per model.

Only a JSON read, so a DAG file may call it at parse time (rendering the dbt project there is what
makes cosmos DAGs slow to parse). The manifest is the one any dbt invocation writes under its target
path (`<PERSONAFLOW_HOME>/dbt/target/manifest.json`, see `personaflow.pipeline.transform`); `dbt parse`
(`manifest()` below, run by `orchestrate.migrate()`) writes it without touching the warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def manifest_path(home: Path) -> Path:
    """Where `stages.transform` (state_dir = `<home>/dbt`) leaves dbt's manifest."""
    return Path(home) / "dbt" / "target" / "manifest.json"


def model_graph(path: Path, package: str | None = None) -> dict[str, list[str]] | None:
    """{model name: [names of the models it depends on]} for the project's enabled models, or None
    when there is no readable manifest (the DAG then keeps its single `dbt build` task).

    Sources, seeds and other packages' models are left out: they are not built per task. `package`
    keeps one project's models (default: the manifest's root project).
    """
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    package = package or data.get("metadata", {}).get("project_name")
    nodes = data.get("nodes", {})
    models = {
        uid: node
        for uid, node in nodes.items()
        if node.get("resource_type") == "model" and (package is None or node.get("package_name") == package)
    }
    if not models:
        return None
    graph = {}
    for node in models.values():
        parents = node.get("depends_on", {}).get("nodes", [])
        graph[node["name"]] = sorted(nodes[dep]["name"] for dep in parents if dep in models)
    return graph


def parse_project(project_dir: Path, state_dir: Path) -> Path:
    """`dbt parse` (no warehouse query): writes the manifest the DAG reads; returns its path."""
    from dbt.cli.main import dbtRunner

    target = Path(state_dir) / "target"
    args = ["parse", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
            "--target-path", str(target), "--log-path", str(Path(state_dir) / "logs"),
            "--no-send-anonymous-usage-stats", "--no-version-check", "--no-use-colors"]  # fmt: skip
    outcome = dbtRunner().invoke(args)
    if not outcome.success:
        raise RuntimeError(f"dbt parse of {project_dir} failed: {outcome.exception}")
    return target / "manifest.json"
