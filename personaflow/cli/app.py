"""The `personaflow` Typer app's behaviour on failure, and its console: one line per error, progress on
stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer


class OneLineErrors(typer.Typer):
    """Every command fails the same way: one line on stderr naming the command, the cause and where to
    look (the file:line, the dbt node and its log, the expectation and its report), exit code 1.
    `--debug` (anywhere on the line) or PERSONAFLOW_DEBUG=true shows the traceback instead."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        debug = "--debug" in sys.argv or _debug_setting()
        if "--debug" in sys.argv:
            sys.argv.remove("--debug")
        _console_logging()
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if debug:
                raise
            command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
            typer.echo(f"personaflow {command} failed: {one_line(exc)} (--debug: traceback)", err=True)
            sys.exit(1)


def _debug_setting() -> bool:
    """PERSONAFLOW_DEBUG, through the settings (unreadable settings: no, so their error is one line)."""
    from personaflow.core.settings import load

    try:
        return load().debug
    except Exception:
        return False


def _console_logging() -> None:
    """Our stages' progress lines (epochs, validated days, quarantines) on stderr; tools stay quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger = logging.getLogger("personaflow")  # one import root: every module logs below it
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def one_line(exc: BaseException) -> str:
    """The exception as one line: its own lines joined, the type named when the text is bare."""
    text = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or "no message"
    known = (
        "IngestError", "TransformError", "DataQualityError", "ValueError", "LookupError", "DamagedWarehouse"
    )  # fmt: skip
    return text if type(exc).__name__ in known else f"{type(exc).__name__}: {text}"
