"""The features stage: dbt marts -> Parquet snapshots -> Feast registry, online store and training set.

Feast is driven through its Python API inside one process (each `feast` CLI call costs 11-15 s of
imports). Only the interval since the last materialization is loaded into the online store.

The marts are read from whichever warehouse the run uses (`personaflow.core.warehouse`: the DuckDB file or
PostgreSQL). Feast's offline store stays the Parquet snapshots exported here on both: they are what
point-in-time joins and materialization read, the same files whatever engine built the marts, so the
Feast repo does not change with the warehouse (its postgres offline store would add a second set of
definitions and push the as-of snapshots into SQL tables for no gain at this size).
On Spark (PERSONAFLOW_WAREHOUSE_URL=spark) Feast's offline store is its Spark store: the three mart
snapshots are `features` tables partitioned by night, written by Spark from the marts (never through the
driver), the profile stages' files are read by Spark where they lie, and every source is a SparkSource
over a query (personaflow/core/spark_features.py); the scratch store, the reused training rows and the
intervals below are the same code. Memory on the driver there: the purchases (read from Spark in ranges
of days) and the training set, as below, and one view's night at a time in Feast's materialization; in
local mode what Feast hands back (materialization's night, the joined rows) comes as Parquet that Spark
writes in the scratch window and pyarrow reads, never through the JVM's heap (issue 24: a `toPandas` of
the first night's join ran the 2 GB driver out of memory at 10 M events).
Only purchases some night can serve go to Feast (`joinable`): on a first night, none.

Cost per night does not grow with the nights already run:
- each view's source is one Parquet file (`user_features.parquet`, ...) holding one row group per
  as-of night (the group's statistics give its night). One file, not a folder of one file per night:
  Feast's dask offline store sorts a source across its partitions, which fails on a folder (dask
  cannot compute the divisions of the `created_ts` its TTL filter has set to NULL), and the training
  stage's `from_feast` reads the shop's store. A night is appended as one more row group without
  decoding the earlier ones (`append_snapshot`: a byte copy of the file and a new footer; CPU
  O(tonight's rows)); a re-export of a night replaces that night's row group;
- materialization loads the nights since the last one (a night this stage wrote was loaded by the
  run that wrote it), on a second, scratch Feast registry whose sources hold only those nights;
- the point-in-time training set is kept from night to night: a purchase row whose features were
  joined before, and which tonight's snapshot cannot change (it is older than tonight's stamp), is
  reused; only the other rows (tonight's purchases, or rows at or after a re-exported day) go
  through Feast's `get_historical_features` on the scratch registry, whose joined sources then also
  hold the nights those rows can reach (the latest snapshot at or before each of them; added after
  materialization, which so reads tonight's night alone). Every night's snapshot holds every user
  and item (the marts are cumulative), so an older night cannot be the latest one at or before a
  row's time: the rows are what a full rebuild over every night gives
  (tests/integration/test_features.py checks it).
Memory bound: O(tonight's snapshot + the training set's rows + the rows joined tonight times the
nights in their window, usually two); the earlier nights' row groups are only listed (their
statistics), never decoded.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from personaflow.core import warehouse as wh
from personaflow.core.feature_store import (
    PROFILE_SOURCES,
    REVIEW_MARTS,
    REVIEW_SOURCES,
    SNAPSHOT_TYPES,
    USER_COLUMNS,
    day_end,
    feast_on_spark,
    load_definitions,
    open_store,
)
from personaflow.core.settings import Settings
from personaflow.core.spark import SparkWarehouse, is_local, read_by_days
from personaflow.core.spark_features import (
    SPARK_TYPES,
    SnapshotTable,
    count_rows,
    file_query,
    nights,
    table_query,
    write_snapshot,
)
from personaflow.core.warehouse import location
from personaflow.serving.tables import export_serving_tables, write_atomic

ITEM_COLUMNS = [
    "item_id",
    "category",
    "brand",
    "price",
    "n_views",
    "n_purchases",
    "n_buyers",
    "popularity_rank",
    "description",
    "is_product",
]
# Columns a mart built before they existed may lack: NULL in the snapshot, not an error.
OPTIONAL_COLUMNS = {"description": None, "is_product": True}
# Users and items both count views and purchases; Feast needs feature names unique across a service.
ITEM_RENAMES = {"n_views": "item_n_views", "n_purchases": "item_n_purchases", "n_buyers": "item_n_buyers"}


def snapshot(frame: pd.DataFrame, columns: list[str], as_of: date, loaded_at: datetime) -> pd.DataFrame:
    """Stamp a mart's rows as the feature values valid from the end of `as_of`."""
    frame = frame.assign(**{c: v for c, v in OPTIONAL_COLUMNS.items() if c in columns and c not in frame})
    out = frame[columns].copy()
    if "last_event_ts" in out:
        out["last_event_ts"] = out["last_event_ts"].astype(str)
    # Feast compares timestamps across frames: keep every one tz-aware UTC at ns precision.
    out["feature_ts"] = pd.Timestamp(day_end(as_of), tz="UTC")
    out["created_ts"] = pd.Timestamp(loaded_at).tz_localize("UTC")
    return out


def _arrow_type(name: str) -> pa.DataType:
    return {
        "string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
        "list<string>": pa.list_(pa.string()), "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"),
    }[name]  # fmt: skip


def as_typed(frame: pd.DataFrame, view: str) -> pa.Table:
    """The frame with every declared column in its declared type, so the day files of one source
    agree (a column all NULL one night is not a different type from the next night's)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    types = {
        **SNAPSHOT_TYPES.get(view, {}),
        "feature_ts": "datetime64[ns, UTC]",
        "created_ts": "datetime64[ns, UTC]",
    }
    for i, field in enumerate(table.schema):
        if field.name in types and field.type != _arrow_type(types[field.name]):
            table = table.set_column(i, field.name, table.column(i).cast(_arrow_type(types[field.name])))
    return table


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An older row group in `schema` (tonight's): columns it lacks as NULL, types cast."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _stamp_range(meta: pq.RowGroupMetaData, column: int) -> tuple[Any, Any] | None:
    stats = meta.column(column).statistics
    return (stats.min, stats.max) if stats is not None and stats.has_min_max else None


def read_nights(path: Path, keep: Callable[[pd.Timestamp], bool]) -> pa.Table | None:
    """The rows of a source file whose feature_ts passes `keep`, reading only the row groups that can
    hold them (each night is its own row group: Parquet statistics give its stamp). O(those rows)."""
    if not path.exists():
        return None
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("feature_ts")
    parts = []
    for i in range(file.num_row_groups):
        span = _stamp_range(file.metadata.row_group(i), column)
        if span is not None and span[0] == span[1]:
            if keep(pd.Timestamp(span[0])):
                parts.append(file.read_row_group(i))
            continue
        group = file.read_row_group(i)  # several nights in one group (a file from before this layout)
        stamps = group.column("feature_ts").to_pandas()
        parts.append(group.filter(pa.array(stamps.map(keep).to_numpy(dtype=bool))))
    return pa.concat_tables(parts) if parts else file.schema_arrow.empty_table()


def _footer_start(path: Path, end: int | None = None) -> int:
    """Where the footer (metadata, its length, the closing magic) of the Parquet file that ends at byte
    `end` of `path` (default: the file's end) begins."""
    end = path.stat().st_size if end is None else end
    with path.open("rb") as f:
        f.seek(end - 8)
        tail = f.read(8)
    if end < 12 or tail[4:] != b"PAR1":
        raise ValueError(f"{path} is not a Parquet file")
    return end - 8 - int.from_bytes(tail[:4], "little")


def _footer(path: Path, end: int) -> tuple[int, pq.FileMetaData]:
    """(where it begins, the metadata) of the footer a Parquet writer ended at byte `end` of `path`."""
    start = _footer_start(path, end)
    with path.open("rb") as f:
        f.seek(start)
        footer = f.read(end - start)
    return start, pq.read_metadata(pa.BufferReader(b"PAR1" + footer))


def _add_row_group(path: Path, table: pa.Table) -> int | None:
    """Add `table` to the Parquet file as one more row group without decoding the earlier ones; returns
    the rows in the file, or None (nothing written) when the file's schema is not tonight's (a column
    added, another type): the caller rewrites the file then.

    How, since pyarrow writes a Parquet file only from its start: the file is copied as bytes (a kernel
    copy: no decoding, ~0.1 s for 130 MB, versus decoding and encoding every earlier night), the copy's
    footer is cut off, and a writer opened on a memory map of the copy has its position moved there
    after the header it writes at byte 0 (the same four bytes the file starts with): it records
    tonight's row group's offsets where the group lies in the file, so the old footer's row groups and
    tonight's make one valid footer, written in place of the writer's own. The copy then replaces the
    file, so readers never see a half-written one. Memory: O(tonight's rows)."""
    old = pq.read_metadata(path)
    start = _footer_start(path)
    tmp = path.with_suffix(".tmp")
    shutil.copyfile(path, tmp)
    try:
        # room for tonight's row group and footer: Parquet's encoded pages are not larger than Arrow's
        # buffers plus their headers; the copy is cut to its real end below
        os.truncate(tmp, start + 2 * table.nbytes + (1 << 20))
        with pa.memory_map(str(tmp), "r+") as sink:
            writer = pq.ParquetWriter(sink, table.schema)
            sink.seek(start)
            try:
                writer.write_table(table, row_group_size=max(len(table), 1))
                writer.close()
            except (OSError, pa.ArrowException):  # past the room made for it: the caller rewrites
                return None
            end = sink.tell()
        footer_at, tonight = _footer(tmp, end)
        try:
            old.append_row_groups(tonight)
        except (pa.ArrowException, RuntimeError, ValueError):  # another schema: not one file's groups
            return None
        footer = pa.BufferOutputStream()
        old.write_metadata_file(footer)  # "PAR1" + metadata + its length + "PAR1"
        with tmp.open("r+b") as f:
            f.seek(footer_at)
            f.write(footer.getvalue().to_pybytes()[4:])
            f.truncate()
        tmp.replace(path)
        return old.num_rows
    finally:
        tmp.unlink(missing_ok=True)


def _nights_apart(path: Path, stamp: pd.Timestamp) -> bool:
    """Whether every row group of the file holds one night, none of them `stamp` (statistics only)."""
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("feature_ts")
    spans = [_stamp_range(file.metadata.row_group(i), column) for i in range(file.num_row_groups)]
    return all(s is not None and s[0] == s[1] and pd.Timestamp(s[0]) != stamp for s in spans)


def append_snapshot(path: Path, snap: pd.DataFrame) -> int:
    """Add one as-of snapshot to a view's source file as its own row group, replacing an earlier
    export of the same day; returns the rows in the file.

    The file stays one Parquet file: Feast's dask offline store sorts a source across its partitions,
    which fails on a folder of one file per night (dask cannot compute the divisions of a timestamp
    column its TTL filter has set to NULL: the training stage's `from_feast` over the shop's store hit
    it). A night is appended as one more row group, the earlier ones copied as bytes
    (`_add_row_group`): CPU O(tonight's rows), plus a kernel copy of the file. Only a re-export of a
    night already in the file, a file from before one row group per night, or a schema change
    (a column added) streams the earlier row groups one at a time into a new file, decoding and
    encoding them: memory O(one night's rows), time O(the file)."""
    table = as_typed(snap, path.name.removesuffix(".parquet"))
    if snap.empty:
        # nothing to add tonight (a shop whose events are all views has no purchases): the file keeps
        # its earlier nights, and a typed empty file stands in for a view that has none yet
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        return pq.ParquetFile(path).metadata.num_rows
    stamp = pd.Timestamp(snap["feature_ts"].iloc[0])
    if path.exists() and _nights_apart(path, stamp):
        rows = _add_row_group(path, table)
        if rows is not None:
            return rows
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rows = len(table)
    with pq.ParquetWriter(tmp, table.schema) as writer:
        if path.exists():
            file = pq.ParquetFile(path)
            column = file.schema_arrow.get_field_index("feature_ts")
            for i in range(file.num_row_groups):
                span = _stamp_range(file.metadata.row_group(i), column)
                group = file.read_row_group(i)
                if span is None or span[0] != span[1]:  # several nights in one group: one group per night
                    frame = group.to_pandas()
                    parts = [
                        pa.Table.from_pandas(p, preserve_index=False) for _, p in frame.groupby("feature_ts")
                    ]
                else:
                    parts = [group]
                for part in parts:
                    if len(part) and pd.Timestamp(part.column("feature_ts")[0].as_py()) != stamp:
                        writer.write_table(_conform(part, table.schema), row_group_size=len(part))
                        rows += len(part)
        writer.write_table(table, row_group_size=max(len(table), 1))
    tmp.replace(path)  # readers never see a half-written file
    return rows


def purchased_items(purchases: pd.DataFrame, as_of: date, loaded_at: datetime) -> pd.DataFrame:
    """One row per buyer: every distinct item bought, most recent first, stamped like a snapshot.

    No cap: /recommend's `exclude_purchased` must exclude everything a customer bought (the shop's
    biggest customers bought more than 500 products); one entry per distinct purchase, so the view
    grows linearly with purchases."""
    # most recent first; items bought at the same time (one order) by item id, descending, as on Spark
    latest = purchases.sort_values(["event_timestamp", "item_id"], ascending=False, kind="stable")
    latest = latest.drop_duplicates(["user_id", "item_id"])
    lists = latest.groupby("user_id", sort=True)["item_id"].agg(list)
    out = lists.rename("purchased_items").reset_index()
    out["feature_ts"] = pd.Timestamp(day_end(as_of), tz="UTC")
    out["created_ts"] = pd.Timestamp(loaded_at).tz_localize("UTC")
    return out


def ensure_live_source(features_dir: Path) -> None:
    """Feast wants the push source's batch file to exist; it stays empty (the landing JSONL is the record)."""
    path = features_dir / "user_live.parquet"
    if not path.exists():
        empty = pd.DataFrame(
            {
                "user_id": pd.Series(dtype="string"),
                "live_buckets": pd.Series(dtype="string"),
                "live_last_event_ts": pd.Series(dtype="string"),
                "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        empty.to_parquet(path, index=False)


def append_profile(features_dir: Path, view: str, frame: pd.DataFrame, as_of: date) -> int:
    """Stamp a profile stage's output (segments, churn scores) as of `as_of` and add it to the
    view's source; returns the rows in the file."""
    snap = snapshot(frame, list(PROFILE_SOURCES[view]), as_of, datetime.now())
    return append_snapshot(features_dir / f"{view}.parquet", snap)


def ensure_profile_sources(features_dir: Path, sources: dict[str, dict[str, str]] = PROFILE_SOURCES) -> None:
    """Before the first segments/churn run (or while churn cannot train yet, or a shop has no reviews)
    the views' sources are empty typed files: Feast's apply and materialize need the file, and then load
    nothing."""
    stamps = {"feature_ts": "datetime64[ns, UTC]", "created_ts": "datetime64[ns, UTC]"}
    for view, dtypes in sources.items():
        path = features_dir / f"{view}.parquet"
        if not path.exists():
            empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in {**dtypes, **stamps}.items()})
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(as_typed(empty, view), path)


def review_snapshots(
    con: wh.DuckConnection | wh.PgConnection, as_of: date, loaded_at: datetime
) -> dict[str, pd.DataFrame]:
    """Tonight's review summaries per customer and per product (the review marts, built by the nightly
    dbt build as of the night), renamed to the Feast views' columns; none for a shop without reviews.
    Memory: O(reviewers + reviewed products)."""
    found = {}
    for view, mart in REVIEW_MARTS.items():
        if not con.table_exists(f"marts.{mart}"):
            continue
        frame = con.execute(f"select * from marts.{mart}").df()
        if frame.empty:
            continue
        columns = list(REVIEW_SOURCES[view])
        if view == "item_reviews":  # the mart's names, prefixed as the view declares them
            frame = frame.rename(columns={c.removeprefix("item_"): c for c in columns[1:]})
        found[view] = snapshot(frame, columns, as_of, loaded_at)
    return found


def read_marts(con: wh.DuckConnection | wh.PgConnection) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(marts.user_features, marts.item_features, the purchases as Feast's entity frame: user_id,
    item_id, event_timestamp tz-aware UTC), from either engine."""
    users = con.execute("select * from marts.user_features").df()
    items = con.execute("select * from marts.item_features").df()
    purchases = con.execute(
        "select user_id, item_id, last_event_ts as event_timestamp from marts.interactions "
        "where n_purchases > 0"
    ).df()
    purchases["event_timestamp"] = (
        pd.to_datetime(purchases["event_timestamp"]).astype("datetime64[ns]").dt.tz_localize("UTC")
    )
    return users, items, purchases


TRAINING_FILE = "training_set.parquet"
DROPPED_FILE = "training_set.dropped.parquet"  # purchases Feast found no features for (keys only)
JOIN_KEYS = ["user_id", "item_id", "event_timestamp"]
WINDOW_DIR = ".pit-window"  # the scratch Feast repo of tonight's join (removed after it)
STAGING_DIR = "spark-staging"  # in the window: the Parquet Feast's Spark store hands rows back through
JOINED_SOURCES = ("user_features", "item_features")  # what the recommender_features service reads


def night_stamps(path: Path) -> list[pd.Timestamp]:
    """The feature_ts of every night in a source file, oldest first, from the row groups' statistics
    (a group holding several nights, from before this layout, is read for its stamps alone)."""
    if not path.exists():
        return []
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("feature_ts")
    out: set[pd.Timestamp] = set()
    for i in range(file.num_row_groups):
        span = _stamp_range(file.metadata.row_group(i), column)
        if span is not None and span[0] == span[1]:
            out.add(pd.Timestamp(span[0]))
        elif file.metadata.row_group(i).num_rows:
            stamps = file.read_row_group(i, columns=["feature_ts"]).column(0).to_pandas()
            out.update(pd.Timestamp(t) for t in stamps.unique())
    return sorted(out)


def window_stamps(stamps: list[pd.Timestamp], times: pd.Series) -> set[pd.Timestamp]:
    """The nights rows at `times` can take features from: for each row the latest night at or before
    it (each night's snapshot holds every user and item, so an older night is shadowed and a later one
    is in the row's future); the earliest night as well when some row precedes every night (Feast
    then finds nothing for it, as over the whole file)."""
    if not stamps or times.empty:
        return set(stamps[:1])
    index = pd.DatetimeIndex(stamps)
    at = index.searchsorted(pd.DatetimeIndex(times.unique()), side="right") - 1
    return {stamps[int(i)] for i in set(at.tolist()) if i >= 0} | ({stamps[0]} if (at < 0).any() else set())


def _scratch(
    repo_dir: Path,
    features_dir: Path,
    window: Path,
    keep: dict[str, Callable[[pd.Timestamp], bool]],
    spark_nights: dict[str, list[pd.Timestamp]] | None = None,
    offline: SparkWarehouse | None = None,
    redis_url: str | None = None,
):
    """A Feast store over `window`: its own registry, and sources holding only the nights `keep` takes
    from each view's source file; its online store is the shop's (what it materializes lands there).
    On Spark (`spark_nights`: the nights of each `features` table) a table's source is its query over
    the kept nights' partitions; the files are copied as on DuckDB."""
    window.mkdir(parents=True)
    for view, wanted in keep.items():
        if spark_nights is not None and view in spark_nights:
            continue
        table = read_nights(features_dir / f"{view}.parquet", wanted)
        if table is not None:
            pq.write_table(table, window / f"{view}.parquet")
    ensure_live_source(window)
    ensure_profile_sources(window)
    queries = None
    if spark_nights is not None:
        ensure_profile_sources(window, REVIEW_SOURCES)  # every file a query names must be there
        kept = {
            name: [t for t in stamps if name in keep and keep[name](t)]
            for name, stamps in spark_nights.items()
        }
        queries = spark_queries(window, kept)
    # On local Spark the retrieval jobs' rows come back as Parquet that Spark writes under the window
    # (removed with it), never through a collect into the driver's heap, which in local mode is also
    # every executor's (feature_store.spark_offline_store). On a cluster a bare path would name the
    # cluster's default file system (HDFS), not one this process lists: there the rows are collected
    # into the driver, whose heap is its own (PERSONAFLOW_SPARK_DRIVER_MEMORY).
    staging = window / STAGING_DIR if offline is not None and is_local(offline.master) else None
    store = open_store(
        repo_dir, features_dir, redis_url, registry_dir=window, offline=offline, staging_dir=staging
    )
    store.apply(load_definitions(repo_dir, window, queries).DEFINITIONS)
    return store


def split_training_rows(
    features_dir: Path, purchases: pd.DataFrame, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of the previous training set still valid tonight, the purchase rows to join tonight).

    A row is reused when the same purchase (user, item, time) is still in the marts and is older than
    tonight's stamp: only tonight's night changed in the sources, and it is in that row's future. The
    same holds for a purchase Feast dropped (no snapshot before it): it stays dropped, not joined again.
    Memory: O(the training set)."""
    tonight = pd.Timestamp(day_end(as_of), tz="UTC")
    path, dropped_path = features_dir / TRAINING_FILE, features_dir / DROPPED_FILE
    if not path.exists() or purchases.empty:
        return purchases.iloc[0:0], purchases
    old = pd.read_parquet(path)
    old = old[old["event_timestamp"] < tonight].drop_duplicates(JOIN_KEYS)
    merged = purchases.merge(old, on=JOIN_KEYS, how="left", indicator=True)
    found = (merged.pop("_merge") == "both").to_numpy()
    todo = purchases[~found]
    if dropped_path.exists():
        dropped = pd.read_parquet(dropped_path)
        dropped = dropped[dropped["event_timestamp"] < tonight].drop_duplicates()
        again = todo.merge(dropped, on=JOIN_KEYS, how="left", indicator=True)["_merge"] == "both"
        todo = todo[~again.to_numpy()]
    return merged[found], todo.reset_index(drop=True)


def record_dropped(features_dir: Path, todo: pd.DataFrame, joined: pd.DataFrame | None, as_of: date) -> None:
    """Keep the keys of the purchases Feast dropped tonight beside the earlier ones still older than
    tonight (`split_training_rows` skips them next night). O(dropped rows)."""
    path = features_dir / DROPPED_FILE
    tonight = pd.Timestamp(day_end(as_of), tz="UTC")
    keys = todo[JOIN_KEYS]
    if joined is not None and len(joined):
        out = keys.merge(joined[JOIN_KEYS].drop_duplicates(), on=JOIN_KEYS, how="left", indicator=True)
        keys = out[out.pop("_merge") == "left_only"]
    if path.exists():
        old = pd.read_parquet(path)
        keys = pd.concat([old[old["event_timestamp"] < tonight], keys], ignore_index=True).drop_duplicates()
    write_atomic(keys.reset_index(drop=True), path)


def _utc(stamps: pd.Series) -> pd.Series:
    """Timestamps as datetime64[ns, UTC] (Feast's Spark store hands them back naive, in the session's
    UTC; its dask store tz-aware), so frames from either store merge and compare alike."""
    stamps = pd.to_datetime(stamps)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def retrieved(job: Any, store: Any) -> pd.DataFrame:
    """A Feast retrieval job's rows as pandas. On a Spark store with a staging folder (the features
    stage's scratch store) through `to_arrow`: Spark writes the rows as Parquet and pyarrow reads them,
    so the driver JVM never holds them all (`to_df` there is a `toPandas`, every partition's Arrow
    batches in the JVM's heap at once: issue 24). Elsewhere `to_df`. Memory: O(the rows), in Python."""
    if getattr(store.config.offline_store, "staging_location", None):
        return job.to_arrow().to_pandas()
    return job.to_df()


def joinable(purchases: pd.DataFrame, earliest: dict[str, pd.Timestamp | None]) -> pd.DataFrame:
    """The purchase rows a point-in-time join can give features to: those at or after the earliest
    night of every view the join reads (`earliest`: each joined source's first night, None for a source
    with none). A row before one of them gets nothing from that view and `point_in_time` leaves it out
    whatever the others give, so it is not sent to Feast at all: on a shop's first night that is every
    purchase in its history (each one precedes tonight's stamp), which Feast's Spark store would
    otherwise upload, join and hand back as rows of NULLs."""
    if purchases.empty:
        return purchases
    if any(t is None for t in earliest.values()):
        return purchases.iloc[0:0]
    floor = max(earliest.values(), default=None)
    if floor is None:
        return purchases
    return purchases[purchases["event_timestamp"] >= floor].reset_index(drop=True)


def _empty_dtype(field: Any) -> str:
    """The pandas dtype a Feast feature's column has in a join's result when it may hold NULLs (numbers
    as float64, stamps as UTC): an empty set keeps the types a joined one has."""
    kind = field.dtype.to_value_type().name
    if kind in ("INT32", "INT64", "FLOAT", "DOUBLE"):
        return "float64"
    return "datetime64[ns, UTC]" if kind == "UNIX_TIMESTAMP" else "object"


def point_in_time(store: Any, purchases: pd.DataFrame, service: str = "recommender_features") -> pd.DataFrame:
    """Each purchase row with the features of every view of `service` valid at its time; a purchase a
    view has no features for (no snapshot before it, within the view's TTL) is left out.

    One Feast join per view, on that view's distinct (join keys, time), merged back onto the purchases:
    Feast's dask store collapses entity rows sharing a join key and a timestamp into one (feast-dev/feast
    #6787, open in 0.67: every item of one order but the last lost its row), and its Spark store keeps
    a row with no features (NULLs) where the dask store drops it. Per view and distinct, the two stores
    give the same rows. Memory: O(purchases + their distinct keys)."""
    out = purchases.assign(event_timestamp=_utc(purchases["event_timestamp"]))
    for projection in store.get_feature_service(service).feature_view_projections:
        keys = list(store.get_feature_view(projection.name).join_keys)
        columns = [f.name for f in projection.features]
        entity = out[[*keys, "event_timestamp"]].drop_duplicates().reset_index(drop=True)
        if entity.empty:
            # no purchase left (an earlier view had features for none: a first night, whose only
            # snapshot is tonight's): nothing to join, and Feast's Spark store cannot upload an empty
            # entity frame (pyspark infers no schema from it)
            out = out.assign(**{f.name: pd.Series([], dtype=_empty_dtype(f)) for f in projection.features})
            continue
        refs = [f"{projection.name}:{c}" for c in columns]
        found = retrieved(store.get_historical_features(entity_df=entity, features=refs), store)
        found = found.assign(event_timestamp=_utc(found["event_timestamp"])).dropna(subset=columns, how="all")
        on = [*keys, "event_timestamp"]
        out = out.merge(found[[*on, *columns]], on=on, how="inner")
    return out.reset_index(drop=True)


def full_training_set(
    repo_dir: Path, features_dir: Path, purchases: pd.DataFrame, offline: SparkWarehouse | None = None
) -> pd.DataFrame:
    """The training set rebuilt from every night's files at once (what each night did before it was
    kept from night to night): the reference the incremental set must equal. O(nights x users)."""
    return point_in_time(open_store(repo_dir, features_dir, offline=offline), purchases)


SPARK_SNAPSHOTS = ("user_features", "item_features", "user_purchases")  # `features` tables on Spark
OWN_SOURCES = (*SPARK_SNAPSHOTS, *REVIEW_SOURCES)  # the sources only this stage writes


def spark_snapshot_tables(item_columns: set[str]) -> tuple[SnapshotTable, ...]:
    """The three mart snapshots as Spark SQL, column for column what `snapshot` / `purchased_items`
    make on DuckDB (`item_columns`: what marts.item_features holds; a column it lacks gets its default)."""
    types = SNAPSHOT_TYPES

    def typed(view: str, names: list[str], exprs: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
        return tuple((n, SPARK_TYPES[types[view][n]], exprs.get(n, n)) for n in names)

    renames = {new: old for old, new in ITEM_RENAMES.items()}
    item_names = [ITEM_RENAMES.get(c, c) for c in ITEM_COLUMNS]
    defaults = {c: ("null" if v is None else str(v).lower()) for c, v in OPTIONAL_COLUMNS.items()
                if c not in item_columns}  # fmt: skip
    item_exprs = {n: defaults.get(renames.get(n, n), renames.get(n, n)) for n in item_names}
    # every item a buyer bought, most recent first (ties: item id descending, as `purchased_items`)
    purchases = (
        "(select user_id, transform(sort_array(collect_list(struct(ts, item_id)), false), p -> p.item_id)"
        " as purchased_items from (select user_id, item_id, max(last_event_ts) as ts from marts.interactions"
        " where n_purchases > 0 group by user_id, item_id) bought group by user_id) lists"
    )
    user_exprs = {"last_event_ts": "cast(last_event_ts as string)"}  # as `snapshot`'s str of a timestamp
    return (
        SnapshotTable("user_features", typed("user_features", USER_COLUMNS, user_exprs),
                      "marts.user_features"),
        SnapshotTable("item_features", typed("item_features", item_names, item_exprs), "marts.item_features"),
        SnapshotTable("user_purchases", typed("user_purchases", ["user_id", "purchased_items"], {}),
                      purchases),
    )  # fmt: skip


def spark_queries(features_dir: Path, nights: dict[str, list[pd.Timestamp]] | None = None) -> dict[str, str]:
    """Every Feast source's Spark SQL (feature_repo/features.py reads them as SparkSources): the
    `features` tables (only the nights `nights` names, when given), and the profile stages' files under
    `features_dir`."""
    queries = {
        name: table_query(name, None if nights is None else nights.get(name, [])) for name in SPARK_SNAPSHOTS
    }
    for view in (*PROFILE_SOURCES, *REVIEW_SOURCES):
        queries[view] = file_query(
            features_dir / f"{view}.parquet", SNAPSHOT_TYPES[view], ("feature_ts", "created_ts")
        )
    queries["user_live"] = file_query(
        features_dir / "user_live.parquet",
        ("user_id", "live_buckets", "live_last_event_ts"),
        ("event_timestamp",),
    )
    return queries


def spark_purchases(con: Any) -> pd.DataFrame:
    """The purchases as Feast's entity frame (as `read_marts`), read from Spark in ranges of days.
    Memory: O(purchase rows), one chunk of the table at a time on its way."""
    sql = ("select user_id, item_id, last_event_ts as event_timestamp from marts.interactions "
           "where n_purchases > 0 and {days}")  # fmt: skip
    chunks = list(read_by_days(con, "marts.interactions", "event_date", sql))
    purchases = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=JOIN_KEYS[:2] + [
        "event_timestamp"])  # fmt: skip
    purchases["event_timestamp"] = (
        pd.to_datetime(purchases["event_timestamp"]).astype("datetime64[ns]").dt.tz_localize("UTC")
    )
    return purchases


def build_features(
    warehouse: wh.Location, features_dir: Path, repo_dir: Path, as_of: date, redis_url: str | None = None
) -> dict[str, object]:
    """Export the marts as of `as_of`, apply the Feast definitions, materialize the new interval and
    write a point-in-time correct training set (purchases joined with the features valid then).

    On a Spark warehouse the mart snapshots are `features` tables written by Spark, and Feast's Spark
    offline store does the point-in-time join and the materialization reads (personaflow/core/
    spark_features.py); the rest (scratch store, reused training rows, intervals) is the same code.
    `redis_url`: the online store (None: the PERSONAFLOW_REDIS_URL setting; empty: embedded SQLite)."""
    if wh.is_spark(warehouse):
        with feast_on_spark(warehouse):
            return _build_features(warehouse, features_dir, repo_dir, as_of, redis_url)
    return _build_features(warehouse, features_dir, repo_dir, as_of, redis_url)


def _build_features(
    warehouse: wh.Location, features_dir: Path, repo_dir: Path, as_of: date, redis_url: str | None
) -> dict[str, object]:
    started = time.perf_counter()
    now = datetime.now()
    offline = warehouse if wh.is_spark(warehouse) else None
    spark_nights: dict[str, list[pd.Timestamp]] | None = None
    with wh.connect(warehouse, read_only=offline is None) as con:  # Spark: writes the `features` tables
        if offline is None:
            users, items, purchases = read_marts(con)
        else:
            item_columns = {r[0] for r in con.execute("describe marts.item_features").fetchall()}
            tables = spark_snapshot_tables(item_columns)
            tonight = {table.name: write_snapshot(con, table, as_of, now) for table in tables}
            history = {table.name: count_rows(con, table) for table in tables}
            spark_nights = {table.name: nights(con, table.name) for table in tables}
            purchases = spark_purchases(con)
        serving_tables = export_serving_tables(con, features_dir)
        reviews = review_snapshots(con, as_of, now)
    if offline is None:
        tonight = {"user_features": len(users), "item_features": len(items)}
        history = {
            "user_features": append_snapshot(
                features_dir / "user_features.parquet", snapshot(users, USER_COLUMNS, as_of, now)
            ),
            "item_features": append_snapshot(
                features_dir / "item_features.parquet",
                snapshot(items, ITEM_COLUMNS, as_of, now).rename(columns=ITEM_RENAMES),
            ),
        }
        append_snapshot(features_dir / "user_purchases.parquet", purchased_items(purchases, as_of, now))
    ensure_live_source(features_dir)
    ensure_profile_sources(features_dir)
    review_rows = {
        view: append_snapshot(features_dir / f"{view}.parquet", snap) for view, snap in reviews.items()
    }
    ensure_profile_sources(features_dir, REVIEW_SOURCES)

    store = open_store(repo_dir, features_dir, redis_url, offline=offline)
    queries = spark_queries(features_dir) if offline is not None else None
    definitions = load_definitions(repo_dir, features_dir, queries)
    store.apply(definitions.DEFINITIONS)

    # Tonight's Feast work runs on a scratch store holding only the nights it needs (module text):
    # each view's materialization interval, and the nights the training rows still to join can reach.
    end = day_end(as_of)
    reused, todo = split_training_rows(features_dir, purchases, as_of)
    views = {fv.name: fv for fv in store.list_feature_views()}
    sources = {name: view.batch_source.name.removesuffix("_source") for name, view in views.items()}
    intervals: dict[str, tuple[datetime, datetime]] = {}
    for name, view in views.items():
        if name in getattr(definitions, "PUSH_FED_VIEWS", ()):
            continue  # filled by POST /events through the push source, not from a batch file
        start = view.most_recent_end_time.replace(tzinfo=None) if view.most_recent_end_time else None
        if start is None:
            start = end - timedelta(days=1)
        elif sources[name] in OWN_SOURCES:
            # a night this stage wrote was loaded by the run that wrote it: start at the last stop (one
            # second past that night's stamp), not a day back, so the night before is not read again
            # (it was, every night: half of materialization's reads); a re-run starts at tonight's stamp
            start = min(start, end)
        else:  # a profile stage may have added the night before after that night's features run
            start = min(start, end - timedelta(days=1))
        intervals[name] = (start, end + timedelta(seconds=1))
    stamps_of: dict[str, list[pd.Timestamp]] = {}  # each source's nights (file or table), oldest first
    for source in set(sources.values()):
        if spark_nights is not None and source in spark_nights:
            stamps_of[source] = spark_nights[source]
        elif (features_dir / f"{source}.parquet").exists():
            stamps_of[source] = night_stamps(features_dir / f"{source}.parquet")
    # only rows some night can serve go to Feast (`joinable`; the rest are recorded as dropped below)
    to_join = joinable(todo, {s: (stamps_of.get(s) or [None])[0] for s in JOINED_SOURCES})
    keep: dict[str, Callable[[pd.Timestamp], bool]] = {}  # what materialization reads
    join_keep: dict[str, Callable[[pd.Timestamp], bool]] = {}  # and the point-in-time join after it
    for name, source in sources.items():
        if name not in intervals or source not in stamps_of:
            continue
        low, high = (pd.Timestamp(t, tz="UTC") for t in intervals[name])
        stamps = stamps_of[source]
        joined = window_stamps(stamps, to_join["event_timestamp"]) \
            if source in JOINED_SOURCES and len(to_join) else set()  # fmt: skip
        both = lambda t, low=low, high=high, joined=joined: low <= t <= high or t in joined  # noqa: E731
        # On files the join's nights are added to the scratch sources after materialization, which so
        # reads tonight's night alone, as on a first night; Spark's scratch queries are fixed at apply.
        keep[source] = (lambda t, low=low, high=high: low <= t <= high) if offline is None else both
        if joined and offline is None:
            join_keep[source] = both
    window = features_dir / WINDOW_DIR
    shutil.rmtree(window, ignore_errors=True)
    try:
        scratch = _scratch(repo_dir, features_dir, window, keep, spark_nights, offline, redis_url)
        materialized = {}
        for name, (start, stop) in intervals.items():
            scratch.materialize(start_date=start, end_date=stop, feature_views=[name])
            # the shop's registry records the interval, as its own materialize would
            store.registry.apply_materialization(
                store.get_feature_view(name),
                store.project,
                start.replace(tzinfo=UTC),
                stop.replace(tzinfo=UTC),
            )
            materialized[name] = f"{start.isoformat()} .. {end.isoformat()}"
        for source, wanted in join_keep.items():  # Feast reads a FileSource's file at each query
            table = read_nights(features_dir / f"{source}.parquet", wanted)
            if table is not None:
                pq.write_table(table, window / f"{source}.parquet")
        # with no row to join (a first night) this sends nothing to Feast and only gives the columns
        joined = point_in_time(scratch, to_join) if len(todo) else None
    finally:
        shutil.rmtree(window, ignore_errors=True)
    if joined is None or (joined.empty and not reused.empty):  # an empty frame adds no rows, nor dtypes
        training = reused.reset_index(drop=True)
    elif reused.empty:
        training = joined
    else:
        training = pd.concat([reused[joined.columns], joined], ignore_index=True)
    write_atomic(training, features_dir / TRAINING_FILE)
    record_dropped(features_dir, todo, joined, as_of)
    return {
        "as_of": as_of.isoformat(),
        "offline_store": "spark" if offline is not None else "dask",
        "online_store": type(store.config.online_store).__name__,
        "user_snapshot_rows": int(tonight["user_features"]),
        "item_snapshot_rows": int(tonight["item_features"]),
        "user_history_rows": int(history["user_features"]),
        "item_history_rows": int(history["item_features"]),
        "materialized": materialized,
        "review_snapshot_rows": {view: int(len(snap)) for view, snap in reviews.items()},
        "review_history_rows": review_rows,
        "training_set_rows": int(len(training)),
        "training_rows_joined_tonight": int(len(todo)),
        # no purchases yet (a shop whose events are all views): an empty training set without columns
        "training_rows_with_features": int(training["frequency"].notna().sum())
        if "frequency" in training
        else 0,
        **serving_tables,
        "seconds": round(time.perf_counter() - started, 2),
    }


def features(as_of: date, s: Settings) -> dict[str, Any]:
    """Export marts to Feast, materialize the new interval, write the point-in-time training set."""
    return build_features(location(s), s.features_dir, s.feature_repo_dir, as_of, s.redis_url)
