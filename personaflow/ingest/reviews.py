"""Bring your own reviews: a CSV or JSON-lines export (either may be .gz) read through a declared column
mapping, into the raw layer's `raw.reviews`.

    personaflow ingest reviews.json.gz --kind reviews --mapping amazon-all-beauty

A mapping is a small TOML file: the ones shipped for the shared data sets are in
`personaflow/ingest/mappings/` (name them by their stem), a shop's own is passed as a path. Ours:
item_id and text are required; review_id, user_id, rating (1-5), title, review_ts, category,
reviewer_age and recommended are optional (`docs/guides/reviews.md` documents the format).

The same rules as events (personaflow/ingest/csvfile.py):
- a missing column, a rating that is not a number in 1..5, an empty product, a bad time, age or
  recommended flag: `IngestError` naming the file, the record (1-based data record of a CSV, line of a
  JSON-lines file) and the column; nothing is loaded;
- a review with neither text nor title is kept (its rating still counts) and counted (`empty_text`);
  the batch check quarantines a batch where most texts are empty (a mapping pointing at the wrong
  column);
- exact repeats (equal on the mapping's `repeat_key`, by default every mapped field) are dropped and
  counted; a review_id mapped by the shop that names two different reviews is an error;
- raw kept: every row carries the source record as it came (`raw_record`, JSON text), its file and
  record number;
- re-runs are idempotent: a review's id is the shop's, or a hash of its repeat key, and loading replaces
  the rows with the same ids.

Memory: the file's reviews in one frame, O(reviews × text length); nothing is compared pairwise (repeats
are found by hashing).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from personaflow.core import warehouse as wh
from personaflow.core.ids import normal_user_id
from personaflow.core.warehouse import Location
from personaflow.ingest.csvfile import IngestError, bad_values
from personaflow.ingest.shop_tables import mapping_names as shop_mapping_names
from personaflow.ingest.shop_tables import read_mapping

REQUIRED = ("item_id", "text")
OPTIONAL = ("review_id", "user_id", "rating", "title", "review_ts", "category", "reviewer_age", "recommended")
FORMATS = ("csv", "jsonl")
COLUMNS = (
    "review_id", "source", "user_id", "item_id", "rating", "title", "text", "review_ts", "category",
    "reviewer_age", "recommended", "batch_id", "source_file", "source_row", "raw_record", "loaded_at",
)  # fmt: skip
RAW_REVIEWS_DDL = """
create schema if not exists raw;
create table if not exists raw.reviews (
    review_id varchar, source varchar, user_id varchar, item_id varchar, rating double precision,
    title varchar, text varchar, review_ts timestamp, category varchar, reviewer_age integer,
    recommended boolean, batch_id varchar, source_file varchar, source_row bigint, raw_record varchar,
    loaded_at timestamp
);
create table if not exists raw.review_scores (
    review_id varchar, source varchar, sentiment double precision, sentiment_label varchar,
    language varchar, model_kind varchar, scored_at timestamp
);
create table if not exists raw.review_complaints (
    review_id varchar, source varchar, kind varchar, keyword varchar
);
create table if not exists raw.review_batches (
    batch_id varchar primary key, source varchar, source_file varchar, sha256 varchar, row_count bigint,
    repeats bigint, empty_text bigint, status varchar, loaded_at timestamp
);
"""
TRUE, FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class ReviewMapping:
    """How one source's columns become ours; `aspects` optionally replaces the default complaint
    aspects (personaflow/profiles/sentiment.py) with the shop's own words."""

    name: str
    format: str
    columns: dict[str, str]  # ours -> theirs
    review_ts_unit: str | None = None  # epoch unit ("s", "ms") or None for ISO 8601 text
    repeat_key: tuple[str, ...] = ()
    aspects: dict[str, list[str]] = field(default_factory=dict)


def mapping_names() -> list[str]:
    """The shipped review mappings (`kind = "reviews"`)."""
    return shop_mapping_names("reviews")


def load_mapping(name_or_path: str | Path) -> ReviewMapping:
    """A shipped mapping by name (`amazon-all-beauty`) or a shop's own TOML file by path; the error names
    the entry at fault."""
    path, spec, columns, where = read_mapping(name_or_path, "reviews", FORMATS, REQUIRED, OPTIONAL)
    fmt = spec["format"]
    options = spec.get("options") or {}
    key = tuple(options.get("repeat_key") or ())
    if set(key) - set(columns):
        raise IngestError(f"{where}: repeat_key names unmapped field(s) {sorted(set(key) - set(columns))}")
    unit = options.get("review_ts_unit")
    if unit not in (None, "s", "ms"):
        raise IngestError(f"{where}: review_ts_unit = {unit!r}; expected 's' or 'ms' (or leave it out)")
    aspects = {str(k): [str(w) for w in v] for k, v in (spec.get("aspects") or {}).items()}
    return ReviewMapping(path.stem, fmt, dict(columns), unit, key, aspects)


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _read_records(path: Path, fmt: str) -> tuple[pd.DataFrame, list[str]]:
    """Every record as text columns (as they came) and its JSON text; CSV values may hold newlines."""
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    try:
        with _open_text(path) as handle:
            if fmt == "csv":
                rows = list(csv.reader(handle, strict=True))
                if not rows or not any(rows[0]):
                    raise IngestError(f"{path}: empty file (no header line)")
                header = [h.strip() for h in rows[0]]
                width = len(header)
                for number, row in enumerate(rows[1:], start=1):
                    if len(row) != width:
                        raise IngestError(
                            f"{path}: record {number}: expected {width} fields, found {len(row)}; "
                            "nothing was imported"
                        )
                frame = pd.DataFrame(rows[1:], columns=range(width), dtype=object)
                frame.columns = header
                records = [
                    json.dumps(dict(zip(header, r, strict=True)), ensure_ascii=False) for r in rows[1:]
                ]
                return frame, records
            lines, parsed = [], []
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(
                        f"{path}: line {number}: not a JSON object ({exc}); nothing was imported"
                    ) from exc
                if not isinstance(record, dict):
                    raise IngestError(f"{path}: line {number}: not a JSON object; nothing was imported")
                record["__line__"] = number
                parsed.append(record)
                lines.append(line.rstrip("\r\n"))
    except (OSError, EOFError, csv.Error) as exc:
        raise IngestError(f"{path}: not a readable {fmt} file ({exc})") from exc
    if not parsed:
        raise IngestError(f"{path}: no records")
    frame = pd.DataFrame.from_records(parsed)
    return frame, lines


def _text(values: pd.Series) -> pd.Series:
    out = values.map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
    )
    return out.where(out != "", None).astype(object)


def read_reviews(path: Path, mapping: ReviewMapping) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and check a reviews export through `mapping`: (one row per review in our columns, a report
    with the counts: rows read, repeats dropped, empty texts)."""
    path = Path(path)
    raw, records = _read_records(path, mapping.format)
    if mapping.format == "jsonl":
        where = raw.pop("__line__").to_numpy()
        unit = "line"
    else:
        where = np.arange(1, len(raw) + 1)
        unit = "record"
    missing = [
        f"{theirs} (ours: {ours})" for ours, theirs in mapping.columns.items() if theirs not in raw.columns
    ]
    if missing and mapping.format == "csv":
        raise IngestError(
            f"{path}: missing column(s) {', '.join(missing)} (mapping {mapping.name}); "
            f"header has {', '.join(repr(c) for c in raw.columns)}"
        )
    # JSON lines leave out empty fields: a required one absent from every record is an error, an
    # optional one is reported (a typo in the mapping shows there)
    required = [m for m in missing if m.split(" (ours: ")[1][:-1] in REQUIRED]
    if required:
        raise IngestError(f"{path}: no record has field(s) {', '.join(required)} (mapping {mapping.name})")
    for theirs in mapping.columns.values():
        if theirs not in raw.columns:
            raw[theirs] = None

    def column(ours: str) -> pd.Series:
        theirs = mapping.columns.get(ours)
        if theirs is None:
            return pd.Series([None] * len(raw), index=raw.index, dtype=object)
        return _text(raw[theirs])

    def fault(ours: str, bad: np.ndarray, kind: str) -> IngestError:
        theirs = mapping.columns[ours]
        return bad_values(path, f"{theirs!r} (ours: {ours})", where, raw[theirs], bad, kind, unit)

    item = column("item_id")
    if item.isna().any():
        raise fault("item_id", item.isna().to_numpy(), "a product id")
    rating = _numbers(column("rating"))
    bad = (column("rating").notna() & ~rating.between(1, 5)).to_numpy()
    if bad.any():
        raise fault("rating", bad, "a rating from 1 to 5")
    age = _numbers(column("reviewer_age"))
    bad = (column("reviewer_age").notna() & ~(age.between(0, 130) & (age % 1 == 0))).to_numpy()
    if bad.any():
        raise fault("reviewer_age", bad, "an age in years")
    flag_text = column("recommended").str.lower()
    bad = (flag_text.notna() & ~flag_text.isin(TRUE | FALSE)).to_numpy()
    if bad.any():
        raise fault("recommended", bad, "a yes/no flag (1/0, true/false)")
    review_ts = _times(column("review_ts"), mapping.review_ts_unit)
    bad = (column("review_ts").notna() & review_ts.isna()).to_numpy()
    if bad.any():
        raise fault(
            "review_ts",
            bad,
            "a time" + (f" in epoch {mapping.review_ts_unit}" if mapping.review_ts_unit else " (ISO 8601)"),
        )
    review_id = column("review_id")
    if "review_id" in mapping.columns and review_id.isna().any():
        raise fault("review_id", review_id.isna().to_numpy(), "a review id")

    frame = pd.DataFrame(
        {
            "review_id": review_id,
            "source": mapping.name,
            "user_id": column("user_id").map(lambda v: None if pd.isna(v) else normal_user_id(v) or None),
            "item_id": item,
            "rating": rating.astype("float64"),
            "title": column("title"),
            "text": column("text"),
            "review_ts": review_ts,
            "category": column("category"),
            "reviewer_age": age.astype("Int64"),
            "recommended": flag_text.map(lambda v: None if pd.isna(v) else v in TRUE).astype("boolean"),
            "source_file": str(path),
            "source_row": pd.Series(where, index=raw.index).astype("int64"),
            "raw_record": records,
        }
    )
    key = list(mapping.repeat_key) or [c for c in mapping.columns]
    repeat = frame.duplicated(key, keep="first")
    frame = frame[~repeat.to_numpy()].reset_index(drop=True)
    if "review_id" not in mapping.columns:
        # A stable id from what makes the review (the source and its repeat key): the same review gets
        # the same id in every re-run, so loading it again replaces it.
        parts = frame[key].astype("string").fillna("\x00")
        joined = mapping.name + "\x1f" + parts.agg("\x1f".join, axis=1)
        frame["review_id"] = joined.map(lambda t: "r" + hashlib.sha1(t.encode()).hexdigest()[:16])
    reused = frame["review_id"].duplicated(keep=False).to_numpy()
    if reused.any():
        rows = frame.loc[reused, "source_row"].tolist()[:4]
        raise IngestError(
            f"{path}: review_id {frame.loc[reused, 'review_id'].iloc[0]!r} names different reviews "
            f"({unit}s {', '.join(map(str, rows))}); nothing was imported"
        )
    empty = frame["text"].isna() & frame["title"].isna()
    report = {
        "source": mapping.name,
        "records": len(raw),
        "rows": len(frame),
        "repeats_dropped": int(repeat.sum()),
        "empty_text": int(empty.sum()),
        "rated": int(frame["rating"].notna().sum()),
        "customers": int(frame["user_id"].nunique()),
        "products": int(frame["item_id"].nunique()),
        "ignored_columns": [c for c in raw.columns if c not in mapping.columns.values()],
        "absent_fields": missing,
    }
    return frame, report


REVIEW_EVENT_TYPE = "view"


def review_events(reviews: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """A shop whose only export is its reviews (a public review set: no orders, no prices): each review
    (repeats already dropped by `read_reviews`) as one event of its reviewer on its product at its time,
    so the reviewers are the shop's customers and their profiles carry their reviews. The event is a
    `view` (writing a review means being on the product's page) in a session of its own; no purchase
    and no price is invented.
    Reviews without a reviewer or a time cannot be events and are counted, not dropped from the reviews.
    Returns (events in our column names, counts). Memory: O(reviews)."""
    usable = reviews["user_id"].notna() & reviews["review_ts"].notna()
    ids = "review-" + reviews.loc[usable, "review_id"].astype(str)
    events = pd.DataFrame(
        {
            "event_id": ids,
            # each review its own visit: a reviewer's two reviews of one product on one day (review times
            # are whole days) are two events, not a repeat for the batch checks' duplicate rule
            "session_id": ids,
            "user_id": reviews.loc[usable, "user_id"].astype(str),
            "item_id": reviews.loc[usable, "item_id"].astype(str),
            "event_type": REVIEW_EVENT_TYPE,
            "event_ts": reviews.loc[usable, "review_ts"],
        }
    ).sort_values(["event_ts", "event_id"], kind="stable", ignore_index=True)
    counts = {
        "reviews": len(reviews),
        "events": len(events),
        "without_reviewer": int(reviews["user_id"].isna().sum()),
        "without_time": int((reviews["user_id"].notna() & reviews["review_ts"].isna()).sum()),
    }
    return events, counts


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _times(values: pd.Series, unit: str | None) -> pd.Series:
    if values.isna().all():
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if unit:
        number = pd.to_numeric(values, errors="coerce")
        return pd.to_datetime(number, unit=unit, errors="coerce").astype("datetime64[ns]")
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_reviews(
    warehouse: Location, frame: pd.DataFrame, report: dict[str, Any], digest: str
) -> dict[str, Any]:
    """Put the reviews into raw.reviews in one transaction, replacing rows with the same ids (a re-run,
    or a later export that repeats earlier reviews), and record the batch in raw.review_batches."""
    source = str(report["source"])
    batch_id = f"{source}-{digest[:12]}"
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = frame.assign(batch_id=batch_id, loaded_at=now)[list(COLUMNS)]
    table = pa.Table.from_pandas(rows, preserve_index=False)
    with wh.connect(warehouse) as con:
        con.execute(RAW_REVIEWS_DDL)
        found = con.execute(
            "select sha256, status from raw.review_batches where batch_id = $1", [batch_id]
        ).fetchall()
        con.register("review_rows", table)
        try:
            con.begin()
            con.execute(
                "delete from raw.reviews where source = $1 "
                "and review_id in (select review_id from review_rows)",
                [source],
            )
            con.execute(
                f"insert into raw.reviews ({', '.join(COLUMNS)}) select {', '.join(COLUMNS)} from review_rows"
            )
            con.execute("delete from raw.review_batches where batch_id = $1", [batch_id])
            con.execute(
                "insert into raw.review_batches (batch_id, source, source_file, sha256, row_count, repeats, "
                "empty_text, status, loaded_at) values ($1, $2, $3, $4, $5, $6, $7, 'loaded', $8)",
                [batch_id, source, str(frame["source_file"].iloc[0]) if len(frame) else "", digest,
                 len(frame), report["repeats_dropped"], report["empty_text"], now],
            )  # fmt: skip
            con.commit()
        except wh.ERRORS as exc:
            con.rollback()
            raise IngestError(f"raw.reviews: {exc}") from exc
        finally:
            con.unregister("review_rows")
        [(total,)] = con.execute("select count(*) from raw.reviews where source = $1", [source]).fetchall()
    return {"batch_id": batch_id, "replay": bool(found and found[0][0] == digest), "source_rows": int(total)}
