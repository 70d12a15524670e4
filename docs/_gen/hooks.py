"""mkdocs hook: generates the reference and benchmark pages at build time (never hand-copied).

- reference/settings.md from the settings model (personaflow/core/settings.py);
- reference/cli.md from the Typer app (personaflow.cli:app);
- reference/rest-api.md and reference/openapi.json from the BentoML service's OpenAPI document;
- reference/python/*.md: mkdocstrings pages for personaflow/pipeline/* and personaflow/core/*;
- benchmarks.md: docs/_gen/benchmark_notes.md plus one table per benchmarks/results/*.json;
- in any page, [[bench:FILE:KEY(:FORMAT)]] is that file's value (on_page_markdown).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
for p in (str(ROOT), str(DOCS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _gen import bench_ref, cli_ref, python_ref, rest_ref, settings_ref  # noqa: E402

log = logging.getLogger("mkdocs.hooks.personaflow")


def _add(files: Files, config, path: str, content: str) -> None:
    existing = files.get_file_from_path(path)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, path, content=content))


def on_config(config):
    """Lists every generated Python API page under Reference > Python API in the nav."""
    pages = python_ref.pages(ROOT)
    entries = [{"Overview": "reference/python/index.md"}] + [
        {path.rsplit("/", 2)[-2] + "." + Path(path).stem: path}
        for path in pages
        if not path.endswith("index.md")
    ]

    def walk(items):
        for i, item in enumerate(items or []):
            if isinstance(item, dict):
                for title, value in item.items():
                    if value == "reference/python/index.md":
                        items[i] = {title: entries}
                    elif isinstance(value, list):
                        walk(value)

    walk(config["nav"])
    return config


def on_files(files: Files, config) -> Files:
    notes = (DOCS / "_gen" / "benchmark_notes.md").read_text()  # the prose above the tables
    _add(files, config, "benchmarks.md", bench_ref.render(ROOT / "benchmarks" / "results", notes))
    _add(files, config, "reference/settings.md", settings_ref.render())
    _add(files, config, "reference/cli.md", cli_ref.render())
    doc = rest_ref.spec()
    _add(files, config, "reference/openapi.json", json.dumps(doc, indent=2))
    _add(files, config, "reference/rest-api.md", rest_ref.render(doc))
    for path, content in python_ref.pages(ROOT).items():
        _add(files, config, path, content)
    log.info("generated the reference and benchmark pages")
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """[[bench:FILE:KEY(:FORMAT)]] in any page: the value from benchmarks/results/FILE.json."""
    if "[[bench:" not in markdown:
        return markdown
    results = bench_ref.results(ROOT / "benchmarks" / "results")
    return bench_ref.substitute(markdown, results, page.file.src_uri)
