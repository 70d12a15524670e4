"""A file the nightly stages rewrite and the API reads per request (review summaries, demographics and
campaign fields, persona texts): parsed once, re-read when it changes (one stat per call), so a night's
new file, or a customer erased by `personaflow forget`, shows at once."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import pandas as pd

T = TypeVar("T")


class FileCache(Generic[T]):
    """`parse(path)` of one file, `empty` while there is none. `keep_on`: errors that keep the last parse
    (a file caught mid-write)."""

    def __init__(self, path: Path, parse: Callable[[Path], T], empty: T,
                 keep_on: tuple[type[Exception], ...] = ()) -> None:  # fmt: skip
        self.path, self.parse, self.empty, self.keep_on = Path(path), parse, empty, keep_on
        self._stamp: int | None = None
        self._value: T = empty

    def get(self) -> T:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self._value = None, self.empty
            return self._value
        if stamp != self._stamp:
            try:
                value = self.parse(self.path)
            except self.keep_on:
                return self._value
            self._value, self._stamp = value, stamp
        return self._value


def plain(value: Any) -> Any:
    """A Parquet cell as JSON takes it: None for a missing value, numpy scalars as Python's."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value
