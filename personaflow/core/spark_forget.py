"""`personaflow forget` on the Spark warehouse (PERSONAFLOW_WAREHOUSE_URL=spark): by column, table by table.

Spark's Parquet tables have no DELETE or UPDATE, so a table holding the customer is rewritten without
them: every row whose customer column is theirs (any written form: core.ids.variant_regex) is left
out, a live session of theirs (`live-<id>`) becomes the tombstone, and text naming them as a customer
(core.ids.quoted_regex) is rewritten, exactly as personaflow/pipeline/forget.py does on DuckDB and
PostgreSQL. Views (dbt's staging models) hold no rows and are skipped.

How a table is rewritten, and why:
- Spark refuses to overwrite a table from a query reading that same table, so the kept rows are first
  written to a staging table beside it (`<table>__forget`, dropped at the end), then `insert overwrite`
  puts them back.
- A partitioned table (raw.events by `batch_date`, the incremental marts by their day) is rewritten only
  in the partitions that hold the customer: the staging table holds those partitions' kept rows, and
  the session's dynamic partition overwrite (personaflow/core/spark.py) replaces exactly them; a
  partition left with no rows is dropped (no insert would overwrite it).
- `insert overwrite` deletes the replaced partition's (or table's) old Parquet files and their `.crc`
  checksum files and moves the new ones in; dropping the staging (managed) table deletes its files. So
  no old file with the customer's rows stays under the warehouse dir (the test in
  tests/integration/test_spark_parity.py searches every file's bytes and every Parquet string cell).
  Spark's scratch space (shuffle files of queries that read the rows) is deleted when the session
  stops, which a CLI command or an Airflow task does when it ends.

Memory: the driver holds, per table, the partition values holding the customer and the counts (one
small aggregate job); the rows are read and written by the executors, partition by partition, never
collected.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from personaflow.core.ids import LIVE_SESSION, is_session_column, is_user_column, quoted_regex, variant_regex
from personaflow.core.spark import SparkWarehouse, session

STAGING_SUFFIX = "__forget"


def _tables(spark: Any) -> list[str]:
    """Every stored table of every database, qualified (views and temp views hold no rows)."""
    names = []
    for database in spark.catalog.listDatabases():
        for table in spark.catalog.listTables(database.name):
            if table.tableType in ("MANAGED", "EXTERNAL") and not table.name.endswith(STAGING_SUFFIX):
                names.append(f"`{database.name}`.`{table.name}`")
    return names


def _true(condition: Any) -> Any:
    """The condition, NULL (a NULL cell) read as false."""
    from pyspark.sql import functions as F

    return F.coalesce(condition, F.lit(False))


def _partition_columns(spark: Any, name: str) -> list[str]:
    return [c.name for c in spark.catalog.listColumns(name.replace("`", "")) if c.isPartition]


def forget_in_spark(
    where: SparkWarehouse, user_id: str, tombstone: str, erase: bool
) -> tuple[int, list[str]]:
    """(rows deleted, where the id still is): `user_id` is the normal id (core.ids.normal_user_id).
    erase=True rewrites each table holding the customer without them; erase=False only looks."""
    from pyspark.sql import functions as F

    spark = session(where)
    whole = rf"^\s*(?:{variant_regex(user_id, whole=True)})\s*$"
    live = rf"^{LIVE_SESSION}(?:{variant_regex(user_id, whole=True)})\s*$"
    quoted = "(?i)" + quoted_regex(user_id)  # Java regex: the same groups, case-insensitive like PostgreSQL
    removed, found = 0, []
    for name in _tables(spark):
        frame = spark.table(name)
        kinds = dict(frame.dtypes)
        users = [c for c in frame.columns if is_user_column(c)]
        texts = [c for c in frame.columns if not is_user_column(c) and kinds[c] == "string"]
        if not users and not texts:
            continue
        theirs = reduce(lambda a, b: a | b, [F.col(f"`{c}`").cast("string").rlike(whole) for c in users],
                        F.lit(False))  # fmt: skip
        named = {c: F.col(f"`{c}`").rlike(live if is_session_column(c) else quoted) for c in texts}
        anywhere = reduce(lambda a, b: a | b, [_true(m) for m in named.values()], _true(theirs))
        parts = _partition_columns(spark, name)
        # one job, one small row per partition back (one for an unpartitioned table): which partitions
        # hold them, in which columns, and whether any other row stays in the partition
        flag = {"__all": F.lit(True), "__hits": anywhere, "__rows": theirs}
        counts = [F.sum(_true(m).cast("long")).alias(k) for k, m in flag.items()]
        counts += [F.max(_true(m)).alias(f"__{i}") for i, m in enumerate(named.values())]
        hits = frame.groupBy(*[F.col(f"`{p}`") for p in parts]).agg(*counts).collect()
        hits = [h for h in hits if h["__hits"]]
        if not hits:
            continue
        if not erase:
            columns = [c for c in users if any(h["__rows"] for h in hits)]
            columns += [c for i, c in enumerate(named) if any(h[f"__{i}"] for h in hits)]
            found.append(f"{name.replace('`', '')}: {', '.join(columns)}")
            continue
        removed += sum(int(h["__rows"]) for h in hits)
        held = [tuple(h[p] for p in parts) for h in hits]
        emptied = [tuple(h[p] for p in parts) for h in hits if h["__rows"] == h["__all"]]
        _rewrite(spark, name, frame, parts, held, emptied, theirs, named, quoted, tombstone)
    return removed, found


def _rewrite(
    spark: Any, name: str, frame: Any, parts: list[str], held: list[tuple], emptied: list[tuple],
    theirs: Any, named: dict, quoted: str, tombstone: str,
) -> None:  # fmt: skip
    """`name` without the customer's rows and with their mentions rewritten: in the partitions `held`
    (every row of an unpartitioned table), through a staging table; the partitions `emptied` (every
    row theirs) are dropped, since no inserted row overwrites them."""
    from pyspark.sql import functions as F

    stage = name[:-1] + STAGING_SUFFIX + "`"
    spark.sql(f"drop table if exists {stage} purge")
    scope = frame
    if parts:
        same = [
            [F.col(f"`{p}`").eqNullSafe(v) for p, v in zip(parts, values, strict=True)] for values in held
        ]
        within = reduce(lambda a, b: a | b, [reduce(lambda a, b: a & b, day) for day in same])
        scope = frame.where(within)
    replacement = "$1$2" + tombstone + "$4"
    columns = []
    for c in frame.columns:
        if c not in named:
            columns.append(F.col(f"`{c}`"))
        elif is_session_column(c):
            columns.append(F.when(named[c], F.lit(tombstone)).otherwise(F.col(f"`{c}`")).alias(c))
        else:
            rewritten = F.regexp_replace(F.col(f"`{c}`"), quoted, replacement)
            columns.append(F.when(named[c], rewritten).otherwise(F.col(f"`{c}`")).alias(c))
    kept = scope.where(~_true(theirs)).select(*columns)
    writer = kept.write.format("parquet").mode("overwrite")
    (writer.partitionBy(*parts) if parts else writer).saveAsTable(stage)
    try:
        staged = spark.table(stage).select(*frame.columns)  # the target's column order (partitions last)
        staged.write.insertInto(name, overwrite=True)
        for values in emptied if parts else []:
            spec = ", ".join(f"`{p}` = '{v}'" for p, v in zip(parts, values, strict=True))
            spark.sql(f"alter table {name} drop if exists partition ({spec})")
        spark.catalog.refreshTable(name)
    finally:
        spark.sql(f"drop table if exists {stage} purge")


__all__ = ["STAGING_SUFFIX", "forget_in_spark"]
