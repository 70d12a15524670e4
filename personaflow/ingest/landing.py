"""Turn an imported event log into the landing area's daily batch files (and dimension files).

An importer (personaflow/ingest/online_retail.py, personaflow/ingest/formats.py) maps a shop's export to a
frame in the
landing layout (personaflow/ingest/load.py LANDING_COLUMNS); this module splits it by event day into
`landing/events/events_<day>.csv`, so the nightly DAG can replay history one day at a time. The
export itself is only read, never changed.

- Deterministic: the same export writes byte-identical files, so importing it again is a no-op
  ("unchanged") and loading them again is a replay.
- A landed file that differs from what the import would write (e.g. one fixed by hand) is kept,
  unless `overwrite=True`.
- Days without events between the first and the last day land as header-only files (the shop was
  closed), so every day of the range has a batch for the nightly run to load. Except in a sparse log
  (`empty_days="auto"`, what `personaflow history` does: events on fewer than half of its days, such
  as 14 years of a shop's reviews, 4,216 on 883 of 5,085 days): there an empty day is the rule, not a
  closed shop, and each would cost a load and a validation that say nothing (the whole Amazon All Beauty set
  did not finish in 48 min), so only the days with events become batches. Profiles as of any day are
  the same either way: a day without a file adds no event.
- An export with columns outside the layout is kept as it came, byte for byte, in
  `landing/imports/<file name>` (its raw copy); the import summary lists the columns
  (`extra_columns`) and where they are kept (`raw_copy`). Nothing is dropped silently.
"""

from __future__ import annotations

import filecmp
import io
import os
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from personaflow.core.landing import batch_path
from personaflow.ingest.load import LANDING_COLUMNS


def _landing_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as landing-file text columns, in one pass over all days (pyarrow, not per-row Python)."""
    table = pa.Table.from_pandas(frame[list(LANDING_COLUMNS)], preserve_index=False)
    seconds = pc.cast(table.column("event_ts"), pa.timestamp("s"))  # '%S' of ns times prints fractions
    table = table.set_column(
        table.schema.get_field_index("event_ts"), "event_ts", pc.strftime(seconds, "%Y-%m-%d %H:%M:%S")
    )
    for name in ("description", "order_id", "item_id", "user_id", "country", "session_id"):
        # One row per physical line is part of the landing layout (personaflow/ingest/csvfile.py relies on
        # it).
        i = table.schema.get_field_index(name)
        column = pc.cast(table.column(i), pa.string())
        table = table.set_column(i, name, pc.replace_substring_regex(column, r"[\r\n]+", " "))
    return table


def _csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def _write_if_changed(path: Path, content: bytes, overwrite: bool) -> str:
    if path.exists():
        if path.read_bytes() == content:
            return "unchanged"
        if not overwrite:
            return "kept"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)  # a crash never leaves a half-written batch where the loader looks
    return "written"


EMPTY_DAYS = ("land", "skip", "auto")
# empty_days="auto": days without events land as header-only files only when they are the exception,
# i.e. at least this share of the log's days has events (Online Retail 82 %; the Amazon reviews 17 %,
# 883 of 5,085)
DENSE_SHARE = 0.5


def lands_empty_days(empty_days: str, days_with_events: int, span_days: int) -> bool:
    """Whether the days without events between the first and the last day land (module docstring)."""
    if empty_days not in EMPTY_DAYS:
        raise ValueError(f"empty_days={empty_days!r}: use one of {', '.join(EMPTY_DAYS)}")
    if empty_days == "auto":
        return days_with_events >= DENSE_SHARE * span_days
    return empty_days == "land"


def write_daily_batches(
    frame: pd.DataFrame, landing_dir: Path, overwrite: bool = False, empty_days: str = "land"
) -> dict[str, object]:
    """Write one landing file per event day of `frame` (landing layout, event_ts as datetime), and a
    header-only one per day without events in between unless `empty_days` says not to ("skip", or
    "auto" on a sparse log: module docstring).

    Rows keep the frame's order within a day. Returns counts of files written / unchanged /
    header-only (`empty_days`) / not landed (`empty_days_not_landed`), and the days whose landed file
    differs from the import and was kept (they need a look: `overwrite=True` replaces them).
    Memory: the frame once as an Arrow table; one day's CSV text at a time.
    """
    out: dict[str, object] = {
        "days": 0, "days_with_events": 0, "written": 0, "unchanged": 0, "empty_days": 0,
        "empty_days_not_landed": 0, "kept": [],
    }  # fmt: skip
    if frame.empty:
        return out
    days = frame["event_ts"].to_numpy().astype("datetime64[D]")
    order = np.argsort(days, kind="stable")
    days = days[order]
    table = _landing_table(frame.iloc[order])
    starts = np.r_[0, np.flatnonzero(np.diff(days.astype(np.int64))) + 1]
    ends = np.r_[starts[1:], len(days)]
    bounds = {pd.Timestamp(days[lo]).date(): (lo, hi) for lo, hi in zip(starts, ends, strict=True)}
    first, last = min(bounds), max(bounds)
    span_days = (last - first).days + 1
    if lands_empty_days(empty_days, len(bounds), span_days):
        landed = pd.date_range(first, last, freq="D").date
    else:
        landed = sorted(bounds)
        out["empty_days_not_landed"] = span_days - len(bounds)
    for day in landed:
        lo, hi = bounds.get(day, (0, 0))
        out["empty_days"] += int(hi == lo)  # type: ignore[operator]
        part = table.slice(lo, hi - lo)
        outcome = _write_if_changed(batch_path(landing_dir, day), _csv_bytes(part), overwrite)
        if outcome == "kept":
            out["kept"].append(day.isoformat())  # type: ignore[union-attr]
        else:
            out[outcome] += 1  # type: ignore[operator]
    span = {"days": span_days, "days_with_events": len(bounds), "first_day": first.isoformat(),
            "last_day": last.isoformat()}  # fmt: skip
    return {**out, **span}


def _merge_dimension(path: Path, fresh: pd.DataFrame, key: str) -> int:
    """Add the ids the landed file lacks; rows already there win (a shop's own file stays as it is)."""
    merged = fresh
    if path.exists():
        existing = pd.read_csv(path, dtype=str, keep_default_na=False)
        fresh = fresh[~fresh[key].astype(str).isin(existing[key])]
        if fresh.empty:
            return 0
        merged = pd.concat([existing, fresh], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(path, index=False)
    return len(fresh)


def write_dimensions(frame: pd.DataFrame, landing_dir: Path) -> dict[str, int]:
    """users.csv / items.csv derived from the events, for sources that have no dimension files.

    signup_date is the user's first event day and country the most frequent one; an item's price is
    its most frequent positive unit price, category and brand are unknown (empty).
    """
    with_user = frame[frame["user_id"].notna()]
    users = (
        with_user.groupby("user_id", sort=True)["event_ts"].min().dt.date.rename("signup_date").reset_index()
    )
    users["country"] = users["user_id"].map(_mode(with_user, "user_id", "country"))
    users["age_band"] = None
    items = pd.DataFrame({"item_id": np.sort(frame["item_id"].dropna().unique())})
    items["category"] = None
    items["brand"] = None
    items["price"] = items["item_id"].map(_mode(frame[frame["price"] > 0], "item_id", "price"))
    items["description"] = items["item_id"].map(_mode(frame, "item_id", "description"))
    return {
        "users_added": _merge_dimension(landing_dir / "users.csv", users, "user_id"),
        "items_added": _merge_dimension(landing_dir / "items.csv", items, "item_id"),
    }


def _mode(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """The most frequent non-null `value` per `key` (ties: the smallest), without a Python loop per key."""
    counts = frame.dropna(subset=[key, value]).groupby([key, value]).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", value], ascending=[True, False, True])
    return counts.drop_duplicates(key).set_index(key)[value]


def import_events(
    path: Path,
    source_format: str,
    landing_dir: Path,
    mapping: dict[str, str] | None = None,
    max_rejects: int = 0,
    overwrite: bool = False,
    keep: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    screen: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame, dict]] | None = None,
    constants: dict[str, str] | None = None,
    empty_days: str = "land",
) -> dict[str, object]:
    """Read a shop export (`online-retail`, `csv` or `parquet`) and land it as daily batch files
    (`empty_days`: whether days without events land too, `write_daily_batches`).
    `keep` filters the rows first (the stage passes personaflow.pipeline.forget.drop_forgotten: a customer who
    was forgotten does not come back with the next export). `screen` (our formats only; the stage passes
    personaflow.quality.row_faults.set_aside) returns (rows to land, rows set aside with a `reason`,
    summary): the set-aside rows are kept in `landing/rejects/<export>.rows.csv`. `constants` (csv and
    parquet): values for columns the export lacks (formats.read_events)."""
    from personaflow.ingest import formats, online_retail

    path = Path(path)
    rejects_file = landing_dir / "rejects" / f"{path.stem}.rejects.jsonl"
    if source_format == "online-retail":
        frame, report = online_retail.read_online_retail(path, max_rejects, rejects_file)
    elif source_format in formats.FORMATS:
        frame, report = formats.read_events(
            path, source_format, mapping or {}, max_rejects, rejects_file, constants=constants
        )
    else:
        raise ValueError(f"unknown format {source_format!r}: use online-retail, csv or parquet")
    if keep is not None:
        before = len(frame)
        frame = keep(frame)
        report["forgotten_rows_dropped"] = before - len(frame)
    if screen is not None and source_format in formats.FORMATS:
        frame, aside, summary = screen(frame)
        report.update(summary)
        report["set_aside_file"] = _write_set_aside(aside, landing_dir / "rejects" / f"{path.stem}.rows.csv")
    # Every format's summary names the same counts (`personaflow history` prints them whatever came in).
    report["customers"] = int(frame["user_id"].nunique())
    report["products"] = int(frame["item_id"].nunique())
    report["extra_columns"] = report.pop("ignored_columns", None) or []
    if report["extra_columns"]:
        report["raw_copy"] = str(keep_raw_copy(path, landing_dir))
    batches = write_daily_batches(frame, landing_dir, overwrite=overwrite, empty_days=empty_days)
    dims = write_dimensions(frame, landing_dir) if len(frame) else {}
    return {"source": str(path), "format": source_format, **report, "batches": batches, **dims}


def _write_set_aside(rows: pd.DataFrame, target: Path) -> str | None:
    """Set-aside rows as CSV (every column, the reason last); None, and no stale file, when there are none."""
    if rows.empty:
        target.unlink(missing_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    rows.to_csv(tmp, index=False)
    tmp.replace(target)
    return str(target)


def keep_raw_copy(path: Path, landing_dir: Path) -> Path:
    """The export as it came, in `landing/imports/`: what the layout has no column for stays there.
    Importing the same file again keeps the copy; a different file of the same name gets a suffix."""
    folder = landing_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists() and not _same_bytes(target, path):
        n += 1
        target = folder / f"{path.stem}.{n}{path.suffix}"
    if not target.exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return filecmp.cmp(a, b, shallow=False)


def imported_days(report: dict[str, object]) -> tuple[date, date] | None:
    batches = report["batches"]
    if not batches.get("first_day"):  # type: ignore[union-attr]
        return None
    return date.fromisoformat(batches["first_day"]), date.fromisoformat(batches["last_day"])  # type: ignore[index]


def import_warnings(report: dict[str, object]) -> list[str]:
    """What an import kept or dropped that a person should know of, one sentence each."""
    out = []
    kept = report["batches"].get("kept") or []  # type: ignore[union-attr]
    if kept:
        shown = ", ".join(kept[:10]) + (", ..." if len(kept) > 10 else "")
        out.append(f"kept {len(kept)} landed day file(s) that differ from this export: {shown} "
                   "(--overwrite replaces them)")  # fmt: skip
    if report.get("extra_columns"):
        out.append(f"column(s) not in our layout, not loaded: {', '.join(report['extra_columns'])}; "  # type: ignore[arg-type]
                   f"kept with the whole export in {report['raw_copy']}")  # fmt: skip
    if report.get("non_utf8_lines"):
        out.append(f"{report['non_utf8_lines']} line(s) were not UTF-8 and were read as cp1252/latin-1")
    if report.get("rejected_lines"):
        out.append(f"{report['rejected_lines']} unparseable line(s) set aside in {report['rejects_file']}")
    if report.get("rows_set_aside"):
        reasons = ", ".join(f"{k} {v:,}" for k, v in report["set_aside_reasons"].items())  # type: ignore[union-attr]
        out.append(f"{report['rows_set_aside']:,} faulty row(s) set aside ({reasons}), the rest of their "
                   f"days landed; kept in {report['set_aside_file']}")  # fmt: skip
    whole = report.get("days_over_row_fault_share") or []
    if whole:
        out.append(f"{len(whole)} day(s) with more faulty rows than the row-fault share landed whole, "
                   f"to be quarantined whole by their check: {', '.join(whole[:10])}")  # type: ignore[arg-type]
    return out
