"""A long command's console (`personaflow history`): our stages and a progress bar on stderr, and the
tools' own output in a log file.

Measured on the real log before this: `history` printed 363 stderr lines, 28 of them progress. The rest
was dbt's log, Feast's coloured "Materializing" lines, and epoch lines that did not say which model was
training. With `ToolOutput`, file descriptors 1 and 2 point at the log file while the stages run. That
catches what dbt, Feast, GX, torch and any child process write, whatever stream object they hold. Our
progress lines go to the terminal's own stderr, duplicated before the switch, and so do our warnings
(a quarantined day, rows set aside). `--verbose` keeps everything on the terminal, as before.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TextIO

BAR_WIDTH = 24
# "validated 50/374 days (214s)": a stage's own count of its work, drawn as a bar
COUNT = re.compile(r"^(?P<what>\w+) (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+)")


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


class ToolOutput:
    """`with ToolOutput(log_file, verbose) as console:` run the stages; `console.line(text)` is progress."""

    def __init__(self, log_file: Path, verbose: bool = False, prefix: str = "[history]") -> None:
        self.log_file, self.verbose, self.prefix = Path(log_file), verbose, prefix
        self.terminal: TextIO = sys.stderr
        self._saved: tuple[int, int] | None = None
        self._handler: logging.Handler | None = None

    def __enter__(self) -> ToolOutput:
        if self.verbose:
            return self
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._saved = (os.dup(1), os.dup(2))
        self.terminal = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        # Our warnings still reach the person at the terminal (every line also goes to the log).
        self._handler = logging.StreamHandler(self.terminal)
        self._handler.setLevel(logging.WARNING)
        self._handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        logging.getLogger("personaflow").addHandler(self._handler)
        return self

    def line(self, text: str) -> None:
        """One progress line; a stage's `done/total` count is drawn as a bar."""
        m = COUNT.match(text)
        if m and not self.verbose:
            text = f"{m['what']} {bar(int(m['done']), int(m['total']))} {m['unit']}{text[m.end():]}"
        print(f"{self.prefix} {text}", file=self.terminal, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = None
        if self._handler is not None:
            logging.getLogger("personaflow").removeHandler(self._handler)
        self.terminal.close()
        self.terminal = sys.stderr
