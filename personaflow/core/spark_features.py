"""Feast's offline data on the Spark warehouse (PERSONAFLOW_WAREHOUSE_URL=spark).

The features stage (personaflow/pipeline/features.py) keeps the same sources as on DuckDB, but Feast reads
them through its Spark offline store (`feast.infra.offline_stores.contrib.spark_offline_store`):
- the mart snapshots (user_features, item_features, user_purchases) are tables of the `features`
  schema, Parquet partitioned by `as_of` (the night), written by one `insert overwrite` per night
  straight from the marts: the rows never pass through the driver, a night run again replaces only its
  own partition (dynamic partition overwrite, personaflow/core/spark.py), earlier nights are untouched;
- the profile stages' outputs (segments, churn, reviews, the push source's batch file) stay the Parquet
  files those stages write on the driver (O(users) each, as on DuckDB); Spark reads them where they lie
  (on a cluster the features dir must be shared storage).
Each source is a SparkSource over a query built here: Feast's point-in-time join and its materialization
reads then run as Spark jobs. Memory on the driver: none of the tables' rows here; what Feast's
materialization and `to_df` bring back is bounded where the stage calls them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from personaflow.core.feature_store import day_end
from personaflow.core.spark import SparkConnection

SCHEMA = "features"
# SNAPSHOT_TYPES' names (personaflow/core/feature_store.py) as Spark column types
SPARK_TYPES = {"string": "string", "int64": "bigint", "float64": "double", "bool": "boolean",
               "list<string>": "array<string>", "datetime64[ns, UTC]": "timestamp"}  # fmt: skip


@dataclass(frozen=True)
class SnapshotTable:
    """A mart snapshot as a `features` table: each column's (name, Spark type, select expression over
    `source`, the relation a night's rows come from)."""

    name: str
    columns: tuple[tuple[str, str, str], ...]
    source: str

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


def write_snapshot(con: SparkConnection, table: SnapshotTable, as_of: date, loaded_at: datetime) -> int:
    """Tonight's snapshot of `table` as its `as_of` partition, stamped like the DuckDB path's files
    (feature_ts: the end of the as-of day; created_ts: when the stage ran); returns tonight's rows.
    Runs on the executors: O(1) on the driver."""
    con.execute(f"create schema if not exists {SCHEMA}")
    ddl = ", ".join(f"`{name}` {kind}" for name, kind, _ in table.columns)
    con.execute(
        f"create table if not exists {table.qualified} ({ddl}, feature_ts timestamp, created_ts timestamp,"
        " as_of date) using parquet partitioned by (as_of)"
    )
    # no backquoted names in expressions: Feast turns on spark.sql.parser.quotedRegexColumnNames
    select = ", ".join(f"cast({expr} as {kind}) as {name}" for name, kind, expr in table.columns)
    stamp = day_end(as_of).isoformat(sep=" ")
    created = loaded_at.replace(tzinfo=None).isoformat(sep=" ")
    con.execute(
        f"insert overwrite table {table.qualified} partition (as_of) select {select},"
        f" timestamp'{stamp}' as feature_ts, timestamp'{created}' as created_ts, date'{as_of.isoformat()}'"
        f" as as_of from {table.source}"
    )
    night = f"select count(*) from {table.qualified} where as_of = date'{as_of.isoformat()}'"
    return int(con.execute(night).fetchone()[0])


def count_rows(con: SparkConnection, table: SnapshotTable) -> int:
    return int(con.execute(f"select count(*) from {table.qualified}").fetchone()[0])


def nights(con: SparkConnection, name: str) -> list[pd.Timestamp]:
    """The feature_ts of every night a `features` table holds, oldest first, from its partitions (the
    metastore: no file is read)."""
    rows = con.execute(f"show partitions {SCHEMA}.{name}").fetchall()
    days = sorted(date.fromisoformat(r[0].split("=", 1)[1]) for r in rows)
    return [pd.Timestamp(day_end(d), tz="UTC") for d in days]


def table_query(name: str, stamps: Iterable[pd.Timestamp] | None = None) -> str:
    """A `features` table as a Feast source's query: every night, or only the nights `stamps` name
    (the stage's scratch store: partition pruning reads only those nights' files)."""
    if stamps is None:
        return f"select * from {SCHEMA}.{name}"
    days = sorted({pd.Timestamp(t).date() for t in stamps})
    if not days:
        return f"select * from {SCHEMA}.{name} where false"
    listed = ", ".join(f"date'{d.isoformat()}'" for d in days)
    return f"select * from {SCHEMA}.{name} where as_of in ({listed})"


def file_query(path: Path, columns: Iterable[str], stamps: Iterable[str]) -> str:
    """A profile stage's Parquet file as a Feast source's query. pyarrow wrote its timestamps in
    nanoseconds, which Spark 3.5 reads only as longs (spark.sql.legacy.parquet.nanosAsLong, set by
    personaflow/core/spark.py): they are turned back into timestamps here (the micro-second part is all
    the stamps carry)."""
    # plain names: Feast runs these with spark.sql.parser.quotedRegexColumnNames on, where a
    # backquoted name inside an expression is a regex (and an error)
    out = list(columns)
    out += [f"timestamp_micros({s} div 1000) as {s}" for s in stamps]
    location = str(path).replace("`", "``")
    return f"select {', '.join(out)} from parquet.`{location}`"
