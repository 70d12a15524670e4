"""Who was forgotten (`personaflow forget`), asked by everything that takes data in.

A forgotten customer is remembered only as a keyed hash, HMAC-SHA256 of the id's normal form
(personaflow/core/ids.py) under this installation's key, listed in `forgotten.json`. The key is kept
apart from the pseudonyms: PERSONAFLOW_FORGET_KEY, or a 0600 file outside the home
(PERSONAFLOW_FORGET_KEY_FILE). Ids are few and guessable (5-digit shop ids): whoever has both the key
and forgotten.json recovers an id by trying them all in well under a second, so the pseudonyms protect
only while the key stays secret (README, "Security"). Imports drop their rows, the loader drops them
from later day files (and removes their lines from those files), and the API answers them as it answers
an id it never saw and accepts no event for them: so nothing brings them back.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from personaflow.core.ids import is_user_column, names_user, normal_user_id
from personaflow.core.settings import Settings


class ForgetKeyMissing(RuntimeError):
    """Customers were forgotten under a key that is gone: they could not be recognised any more."""


def key_file(s: Settings) -> Path:
    return s.forget_key_file or s.home.parent / f"{s.home.name}-secrets" / "forget_key"


def secret_key(s: Settings) -> bytes:
    """The pseudonyms' HMAC key, kept apart from them: PERSONAFLOW_FORGET_KEY, else the 0600 file
    PERSONAFLOW_FORGET_KEY_FILE (default beside the home, not in it), created on first use. A key kept
    by an older version in `<home>/secrets/forget_key` (beside forgotten.json) is moved there. Refuses
    to make a new key while forgotten.json lists customers: they would silently come back."""
    if s.forget_key.strip():
        return s.forget_key.strip().encode()
    path = key_file(s)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old = s.home / "secrets" / "forget_key"
        if old.exists():
            _write_secret(path, old.read_text().strip())
            old.unlink()
        elif forgotten_subjects(s):
            raise ForgetKeyMissing(
                f"{path}: the forget key is missing but {s.home / 'forgotten.json'} lists forgotten "
                "customers; restore the key (or set PERSONAFLOW_FORGET_KEY) before anything imports data"
            )
        else:
            _write_secret(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


def _write_secret(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(value)


def _hash(key: bytes, user_id: object) -> str:
    return hmac.new(key, normal_user_id(user_id).encode(), hashlib.sha256).hexdigest()


def subject(user_id: str, s: Settings) -> str:
    """The keyed hash a forgotten customer is remembered by (never the id itself), of the id's normal
    form (personaflow/core/ids.py), so `14911.0` and `014911` are the same customer as `14911`."""
    return _hash(secret_key(s), user_id)


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
    hit = {i for i in ids if _hash(key, i) in gone}
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
        return _hash(self._key, user_id) in self._subjects


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
    hit = [i for i in ids if _hash(key, i) in gone]
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
        ids = {normal_user_id(i) for i in frame["user_id"].unique()} if "user_id" in frame else set()
        for user_id in sorted(ids):
            if user_id and _hash(key, user_id) in gone:
                removed += drop_lines(path, user_id)
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.forget")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def csv_records(text: str) -> Iterator[tuple[list[str], str]]:
    """Each record of a CSV text with the exact text it was read from (a quoted field may span lines),
    so a file can be written back with every other record byte for byte as it was."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in text.splitlines(keepends=True):
            consumed.append(line)
            yield line

    for fields in csv.reader(lines()):
        raw = "".join(consumed)
        consumed.clear()
        yield fields, raw


def drop_lines(path: Path, user_id: str) -> int:
    """Drop the records whose customer column (user_id, customer_id, ...: personaflow/core/ids.py) names
    the customer, in any written form; every other record stays byte for byte. Returns how many."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    records = csv_records(text)
    first = next(records, None)
    if first is None:
        return 0
    header, head_raw = first
    at = [i for i, name in enumerate(header) if is_user_column(name)]
    if not at:
        return 0
    user_id = normal_user_id(user_id)
    kept, removed = [head_raw], 0
    for fields, raw in records:
        if any(i < len(fields) and names_user(fields[i], user_id) for i in at):
            removed += 1
        else:
            kept.append(raw)
    if removed:
        atomic_write(path, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return removed
