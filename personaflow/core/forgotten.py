"""Who was forgotten (`personaflow forget`), asked by everything that takes data in.

A forgotten customer is remembered only as a keyed hash, HMAC-SHA256 of the id under this
installation's secret (`secrets/forget_key`, 0600), listed in `forgotten.json`. Imports drop their
rows, the loader drops them from later day files (and removes their lines from those files), and the
API answers 404 for them and accepts no event: so nothing brings them back.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import pandas as pd

from personaflow.core.settings import Settings


def secret_key(s: Settings) -> bytes:
    path = s.home / "secrets" / "forget_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def subject(user_id: str, s: Settings) -> str:
    """The keyed hash a forgotten customer is remembered by (never the id itself)."""
    return hmac.new(secret_key(s), user_id.encode(), hashlib.sha256).hexdigest()


def forgotten_subjects(s: Settings) -> set[str]:
    path = s.home / "forgotten.json"
    return {e["subject"] for e in json.loads(path.read_text())} if path.exists() else set()


def drop_forgotten(frame: pd.DataFrame, s: Settings, column: str = "user_id") -> pd.DataFrame:
    """`frame` less the rows of forgotten customers (imports call this, so an export sent again cannot
    bring them back)."""
    gone = forgotten_subjects(s)
    if not gone or frame.empty:
        return frame
    key = secret_key(s)
    ids = frame[column].dropna().unique()
    hit = {i for i in ids if hmac.new(key, str(i).encode(), hashlib.sha256).hexdigest() in gone}
    return frame[~frame[column].isin(hit)] if hit else frame


class Forgotten:
    """Is this id one the platform was told to forget? For serving: re-reads forgotten.json when it
    changes (a stat per call), so a customer forgotten while the server runs is refused at once."""

    def __init__(self, s: Settings) -> None:
        self._settings, self._path = s, s.home / "forgotten.json"
        self._file = str(self._path)
        self._mtime: int | None = None
        self._subjects: set[str] = set()
        self._key = b""

    def __contains__(self, user_id: object) -> bool:
        try:
            mtime = os.stat(self._file).st_mtime_ns  # per request: a plain stat, no Path objects
        except FileNotFoundError:
            return False
        if mtime != self._mtime:
            self._subjects, self._key = forgotten_subjects(self._settings), secret_key(self._settings)
            self._mtime = mtime
        return hmac.new(self._key, str(user_id).encode(), hashlib.sha256).hexdigest() in self._subjects


def keep_table(table, s: Settings):
    """A landing batch (pyarrow table) less the rows of forgotten customers: the loader calls this, so a
    shop that sends them again in a later file does not bring them back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    gone = forgotten_subjects(s)
    if not gone or "user_id" not in table.column_names or table.num_rows == 0:
        return table
    key = secret_key(s)
    ids = [i for i in pc.unique(table.column("user_id")).to_pylist() if i]
    hit = [i for i in ids if hmac.new(key, i.encode(), hashlib.sha256).hexdigest() in gone]
    if not hit:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("user_id"), pa.array(hit))))


def scrub_landing(paths: list[Path], s: Settings) -> int:
    """Drop forgotten customers' lines from landing files a shop delivered after the deletion (before
    they are loaded): their data is not kept anywhere under the home, the shop's files included."""
    gone = forgotten_subjects(s)
    if not gone:
        return 0
    key, removed = secret_key(s), 0
    for path in paths:
        if not path.exists():
            continue
        frame = pd.read_csv(path, dtype=str, usecols=lambda c: c == "user_id", keep_default_na=False)
        ids = frame["user_id"].unique() if "user_id" in frame else []
        for user_id in ids:
            if user_id and hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest() in gone:
                removed += drop_lines(path, user_id)
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.forget")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def drop_lines(path: Path, user_id: str) -> int:
    """Drop the lines whose user_id field is the customer (landing layout: one row per line)."""
    lines = path.read_bytes().decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
    if not lines:
        return 0
    header = next(csv.reader([lines[0]]))
    if "user_id" not in header:
        return 0
    at = header.index("user_id")
    kept = [lines[0]] + [ln for ln in lines[1:] if _field(ln, at) != user_id]
    removed = len(lines) - len(kept)
    if removed:
        atomic_write(path, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return removed


def _field(line: str, at: int) -> str:
    fields = next(csv.reader([line]), [])
    return fields[at] if at < len(fields) else ""
