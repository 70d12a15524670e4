"""Read a landing or export CSV as text columns, knowing the physical line of every row.

Every loader and importer reads CSV through here, so they share one set of answers to bad input:
- an absent or empty file, a missing or renamed column: `IngestError` naming the file and the column;
- non-UTF-8 bytes: the line is decoded as cp1252 (latin-1 when even that fails) and counted, never
  a crash, so one mis-encoded product description cannot stop a nightly load;
- a truncated or garbled line (wrong number of fields, an unclosed quote): rejected with its line
  number. With `max_rejects=0` (the default) any reject is an `IngestError` naming file and lines;
  otherwise up to that many lines go to a `.rejects.jsonl` file and are counted, never dropped silently.

pyarrow parses; the Python `csv` module only re-reads the file, line by line, when pyarrow's rows do
not map one-to-one onto physical lines (the rare bad file), to say exactly which lines are at fault.
One row is one physical line: our landing layout has no newlines inside values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SHOWN = 5  # bad lines quoted in an error message


class IngestError(ValueError):
    """A file that cannot be loaded; the message names the file, and the column or line at fault."""


def bad_values(path: Path, column: str, where, values, bad, kind: str, unit: str = "line") -> IngestError:
    """The error for a column with values of the wrong kind: the first bad line, then up to SHOWN in
    all, so one pass over the file fixes them; `where` holds each row's line (or row) number."""
    at = np.flatnonzero(bad)
    first = int(at[0])
    more = "; ".join(f"{unit} {where[i]}: {values.iloc[i]!r}" for i in at[1:SHOWN])
    also = f": also {more}" if more else ""
    return IngestError(
        f"{path}:{where[first]}: column {column}: {values.iloc[first]!r} is not {kind} "
        f"({len(at)} bad value(s) in this column{also}{', ...' if len(at) > SHOWN else ''}); "
        "nothing was imported"
    )


@dataclass
class CsvText:
    """A CSV file as string columns (empty text stays ""), plus where every row came from."""

    path: Path
    columns: list[str]  # canonical names (after aliases), file order
    table: pa.Table  # one string column per header column
    lines: np.ndarray  # physical 1-based line number of each row (the header is line 1)
    rejects: list[dict] = field(default_factory=list)  # {"line", "reason", "text"}
    non_utf8_lines: list[int] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        return {
            "rejected_lines": len(self.rejects),
            "non_utf8_lines": len(self.non_utf8_lines),
            "non_utf8_line_numbers": self.non_utf8_lines[:10],
        }


def read_csv_text(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    max_rejects: int = 0,
    data: bytes | None = None,
) -> CsvText:
    """Read `path` (or `data`, its bytes already decompressed: personaflow/ingest/sheets.py); `required`
    columns
    must be in the header (after renaming by `aliases`), `optional` ones may be; other columns are read
    too (the caller decides whether to ignore them)."""
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise IngestError(f"{path}: file not found")
        data = path.read_bytes()
    data = data.removeprefix(b"\xef\xbb\xbf")
    if not data.strip():
        raise IngestError(f"{path}: empty file (no header line)")
    data, non_utf8 = _to_utf8(data)
    first = data.split(b"\n", 1)[0].decode().rstrip("\r")
    raw_names = [c.strip() for c in next(csv.reader([first]))]
    names = [(aliases or {}).get(c, c) for c in raw_names]
    check_header(path, names, required, optional)

    starts, blank = _line_index(data)
    data_lines = np.arange(1, len(starts) + 1)[1:][~blank[1:]]
    table, pyarrow_bad = _parse(data, names)
    if pyarrow_bad or table.num_rows != len(data_lines) or _has_newline(table):
        table, data_lines, rejects = _reparse_by_line(data, starts, blank, names)
    else:
        rejects = []
    if len(rejects) > max_rejects:
        shown = "; ".join(f"line {r['line']}: {r['reason']}: {r['text'][:80]!r}" for r in rejects[:SHOWN])
        more = f" (and {len(rejects) - SHOWN} more)" if len(rejects) > SHOWN else ""
        raise IngestError(
            f"{path}: {len(rejects)} unparseable line(s), {max_rejects} allowed: {shown}{more}. "
            "Fix the file, or load with a rejects allowance (--max-rejects N) to set them aside"
        )
    return CsvText(path, names, table, data_lines, rejects, non_utf8)


def write_rejects(rejects: list[dict], target: Path) -> Path | None:
    """Keep rejected lines as JSON lines (line number, reason, text); returns None when there are none."""
    if not rejects:
        target.unlink(missing_ok=True)  # a fixed file leaves no stale rejects behind
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    return target


def check_header(path: Path, names: list[str], required: Sequence[str], optional: Sequence[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise IngestError(f"{path}: column(s) {', '.join(duplicated)} appear more than once in the header")
    missing = [c for c in required if c not in names]
    if missing:
        unexpected = [c for c in names if c not in required and c not in optional]
        hint = f"; unexpected column(s) {', '.join(unexpected)} (renamed?)" if unexpected else ""
        raise IngestError(
            f"{path}: missing column(s) {', '.join(missing)}{hint}; header has {', '.join(names)}"
        )


def _to_utf8(data: bytes) -> tuple[bytes, list[int]]:
    """The file as UTF-8, and the 1-based lines that were not UTF-8 (decoded as cp1252 or latin-1)."""
    try:
        data.decode("utf-8")
        return data, []
    except UnicodeDecodeError:
        pass
    lines, bad = data.split(b"\n"), []
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(number)
            try:
                text = line.decode("cp1252")
            except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; latin-1 maps them all
                text = line.decode("latin-1")
            lines[number - 1] = text.encode("utf-8")
    return b"\n".join(lines), bad


def _line_index(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start offset of each physical line and whether it is blank (a final newline ends, not adds)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.r_[0, newlines + 1]
    ends = np.r_[newlines, len(arr)]
    if starts[-1] == len(arr):
        starts, ends = starts[:-1], ends[:-1]
    length = ends - starts
    first = arr[np.minimum(starts, len(arr) - 1)]
    blank = (length == 0) | ((length == 1) & (first == 13))
    return starts, blank


def _parse(data: bytes, names: list[str]) -> tuple[pa.Table, int]:
    bad = []

    def on_invalid(row) -> str:
        bad.append(row)
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table, len(bad)


def _has_newline(table: pa.Table) -> bool:
    return any(pc.any(pc.match_substring(col, "\n")).as_py() for col in table.columns if len(col))


def _reparse_by_line(
    data: bytes, starts: np.ndarray, blank: np.ndarray, names: list[str]
) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Slow path: check each line on its own, keep the good ones, name the bad ones."""
    text_lines = data.decode("utf-8").split("\n")
    good, good_lines, rejects = [], [], []
    for number in range(2, len(starts) + 1):
        if blank[number - 1]:
            continue
        line = text_lines[number - 1].rstrip("\r")
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            rejects.append({"line": number, "reason": f"garbled ({exc})", "text": line})
            continue
        if len(fields) != len(names):
            rejects.append(
                {"line": number, "reason": f"expected {len(names)} fields, found {len(fields)}", "text": line}
            )
            continue
        good.append(fields)
        good_lines.append(number)
    columns = list(zip(*good, strict=True)) if good else [() for _ in names]
    table = pa.table({n: pa.array(list(c), pa.string()) for n, c in zip(names, columns, strict=True)})
    return table, np.array(good_lines, dtype=np.int64), rejects
