"""Small Markdown helpers shared by the generators."""

from __future__ import annotations

import html


def cell(value: object) -> str:
    """One table cell: pipes escaped, newlines folded."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def code(value: object) -> str:
    text = "" if value is None else str(value)
    return f"`{text}`" if text else ""


def table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)
