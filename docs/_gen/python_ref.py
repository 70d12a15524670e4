"""The Python API pages: one mkdocstrings page per public module of personaflow/pipeline and
personaflow/core (a module whose name starts with `_` is private)."""

from __future__ import annotations

from pathlib import Path

PACKAGES = ("pipeline", "core")


def modules(root: Path) -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / "personaflow" / package).glob("*.py")):
            if not path.stem.startswith("_"):
                out.append(f"personaflow.{package}.{path.stem}")
    return out


def pages(root: Path) -> dict[str, str]:
    """docs path -> Markdown, the index included."""
    names = modules(root)
    out: dict[str, str] = {}
    index = [
        "# Python API\n",
        "Generated at build time with mkdocstrings from the docstrings of the public functions and "
        "classes of `personaflow/pipeline/` (one module per nightly stage) and `personaflow/core/`.\n",
    ]
    for package in PACKAGES:
        index.append(f"\n## `personaflow.{package}`\n")
        for name in names:
            if name.startswith(f"personaflow.{package}."):
                rel = name.split(".", 1)[1].replace(".", "/") + ".md"
                index.append(f"- [`{name}`]({rel})")
                out[f"reference/python/{rel}"] = f"# `{name}`\n\n::: {name}\n"
    out["reference/python/index.md"] = "\n".join(index) + "\n"
    return out
