"""Open a shop's export whatever it came as: CSV, compressed CSV (.gz, .bz2, .zst, .lz4, ...) or an
Excel sheet (.xlsx, the UCI original of Online Retail), as text columns with the line of every row.

Compressed CSV is decompressed by pyarrow's own codecs (chosen from the file's extension, or from the
gzip magic bytes when the extension says nothing) and then read exactly like plain CSV, so faults are
counted the same way. A sheet is read by python-calamine (through pandas); every cell becomes text
the way a CSV export of the sheet would write it (whole numbers without '.0', dates as ISO text), and
its "line" is its row in the sheet (the header is row 1), so errors name the row a person would look at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from personaflow.ingest.csvfile import CsvText, IngestError, check_header, read_csv_text

SHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
GZIP_MAGIC = b"\x1f\x8b"


def read_export_text(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    max_rejects: int = 0,
) -> CsvText:
    """Any supported export as `CsvText` (see personaflow/ingest/csvfile.py for what bad input gets)."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    if path.suffix.lower() in SHEET_SUFFIXES:
        return read_sheet_text(path, required, optional, aliases)
    return read_csv_text(path, required, optional, aliases, max_rejects, data=read_bytes(path))


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its extension (or its first bytes) says it is compressed."""
    with path.open("rb") as handle:
        magic = handle.read(2)
    # "detect": pyarrow picks the codec from the extension (.gz, .bz2, .zst, .lz4, ...), none for .csv
    compression = "gzip" if magic == GZIP_MAGIC else "detect"
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            return stream.read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise IngestError(f"{path}: cannot decompress ({exc})") from exc


def read_sheet_text(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> CsvText:
    """The first sheet as text columns; row numbers are the sheet's (header = row 1)."""
    try:
        frame = pd.read_excel(path, sheet_name=0, engine="calamine", dtype=object, na_filter=False)
    except Exception as exc:  # calamine raises its own error types for a broken or foreign file
        raise IngestError(f"{path}: not a readable spreadsheet ({type(exc).__name__}: {exc})") from exc
    names = [(aliases or {}).get(str(c).strip(), str(c).strip()) for c in frame.columns]
    if frame.empty and not names:
        raise IngestError(f"{path}: empty sheet (no header row)")
    check_header(path, names, required, optional)
    table = pa.table(
        {
            n: pa.array([_cell(v) for v in frame[c]], pa.string())
            for n, c in zip(names, frame.columns, strict=True)
        }
    )
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    return CsvText(path, names, table, lines)


def _cell(value: object) -> str:
    """A cell as a CSV export writes it: '' for empty, 536365 not 536365.0, dates as ISO text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
