"""The Spark warehouse's session (one per process) and the DuckDB-shaped connection over it.

`PERSONAFLOW_WAREHOUSE_URL=spark` makes `warehouse.location(settings)` a `SparkWarehouse`; every stage
that opens it gets the process's one SparkSession through `session(where)`: Spark allows one
SparkContext per JVM, and starting one costs 10-25 s, so it is started once and kept until `stop()`
(a test module's fixture, the end of a CLI command). dbt-spark's `session` method calls
`SparkSession.builder.getOrCreate()` and so runs its models in this same session.

What `session` sets, and why (a shop's own confs, PERSONAFLOW_SPARK_CONF, win over all of them):
- local master: the driver binds to 127.0.0.1 (SPARK_LOCAL_IP plus spark.driver.host/bindAddress),
  never the machine's external interface, and the web UI is off; on a cluster the driver must be
  reachable by its executors, so nothing is bound there.
- the tables' files (spark.sql.warehouse.dir) and the Hive metastore (embedded Derby, with its
  derby.log) under `where.directory` (the project's home: PERSONAFLOW_SPARK_DIR), never the cwd.
- UTC session time zone, so event timestamps mean the same wall-clock time as on DuckDB.
- dynamic partition overwrite: `insert overwrite` of a partitioned table replaces only the
  partitions (days) its rows hold (personaflow/ingest/spark_load.py relies on it).

- one process at a time on the embedded metastore: Derby boots its database in one JVM only (a second
  JVM fails with "Another instance of Derby may have already booted the database"), and a night's
  tasks are separate processes (Airflow's LocalExecutor children, Celery workers on one machine), two
  of which may run at once (segments beside churn). `session` takes an exclusive lock on
  `metastore.lock` in the Spark dir before it starts the JVM and holds it until the process exits;
  another process waits for it (up to METASTORE_WAIT_S), then for the previous holder's JVM to be gone
  (it outlives its Python process by a moment: it exits on its stdin's end). With a shared metastore
  (`spark.hadoop.hive.metastore.uris`, a cluster's) or a JDBC one, nothing is locked.

This module imports pyspark only inside its functions (its import costs ~0.4 s), so
personaflow/core/warehouse.py can name `SparkWarehouse` on every path.

Memory: the driver holds what a statement collects (`fetchall`, `df`), never a table unless asked;
the connection's `register` sends one frame (a day's batch) through the driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import pandas as pd
import pyarrow as pa

from personaflow.core import tool_env
from personaflow.core.placeholders import spark_named


@dataclass(frozen=True)
class SparkWarehouse:
    """The Spark warehouse a run uses: where its session runs (`master`), where its tables' files and
    its Derby metastore live (`directory`), the extra confs (`conf`, key=value pairs) and the driver
    JVM's heap (`driver_memory`, PERSONAFLOW_SPARK_DRIVER_MEMORY; empty: `confs` picks one)."""

    master: str
    directory: Path
    conf: tuple[str, ...] = ()
    driver_memory: str = ""


class SparkError(RuntimeError):
    """A statement failed on the Spark warehouse (personaflow/core/spark.py turns pyspark's errors into
    these, so personaflow/core/warehouse.py needs no pyspark import: ~0.4 s)."""


class SparkMissingTable(SparkError):
    """A read of a Spark table (or schema) that does not exist yet."""


_LOCK = threading.Lock()
_ACTIVE: tuple[SparkWarehouse, Any] | None = None
# How long a process waits for another one's hold on the embedded metastore: a night's task beside a
# long one (a dbt build of a big shop), never forever.
METASTORE_WAIT_S = 3600.0
_HELD: dict[Path, IO[str]] = {}  # the metastore locks this process holds, by Spark dir (until it exits)
# pyspark's error classes for a table or schema that is not there (a stage treats those as "not built").
_MISSING = {"TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND", "PATH_NOT_FOUND"}


# The local driver's JIT: the quick compiler only (why: `confs`). With C1 alone the JVM shrinks its code
# cache to 48 MB (the old client VM's size); a long local session (the parity test's two months: every
# dbt model, GX, Feast, forget) generates enough classes through Janino to fill it, and the JVM then
# fails ("Out of space in CodeCache for adapters"). 240 MB is the size it has with C2 on.
LOCAL_JIT = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
# Confs whose value a shop's PERSONAFLOW_SPARK_CONF extends instead of replacing (JVM options).
_APPENDED = {"spark.driver.extraJavaOptions"}


def is_local(master: str) -> bool:
    return master.strip().lower().startswith("local")


def machine_memory_bytes() -> int:
    """This machine's memory as a process here can use it: the physical memory, or the cgroup's limit
    (a container's) when that is lower."""
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
        break
    return total


def default_driver_memory(total_bytes: int | None = None) -> str:
    """The local driver's heap when PERSONAFLOW_SPARK_DRIVER_MEMORY is empty: a quarter of the machine's
    memory (what the JVM itself takes by default; Spark's own default of 1g is for a driver that only
    plans, and in local mode the driver runs every task: 2g ran out collecting at 10 M events, issue 24),
    at least 1g, and at most 8g (the night's other processes share the machine: Airflow, the online
    store, a PostgreSQL)."""
    total = machine_memory_bytes() if total_bytes is None else total_bytes
    mb = min(max(total // 4 // 2**20, 1024), 8192)
    return f"{mb}m"


def confs(where: SparkWarehouse) -> dict[str, str]:
    """The session's confs: the defaults above, then PERSONAFLOW_SPARK_CONF on top."""
    directory = where.directory
    conf = {
        "spark.app.name": "personaflow",
        "spark.sql.warehouse.dir": str(directory / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={directory / 'metastore_db'};create=true",
        # derby.log goes to derby.system.home (else the cwd); the JVM in UTC like the session
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={directory} -Duser.timezone=UTC",
        "spark.local.dir": str(directory / "scratch"),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # `create table` without `using` (dbt-spark's tables) makes Parquet tables, not Hive text tables
        "spark.sql.legacy.createHiveTableByDefault": "false",
        # no Hive statistics gathered per partition write: metastore round trips Spark does not read
        "spark.hadoop.hive.stats.autogather": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Feast's Parquet sources (profile stages' files, written by pyarrow) carry nanosecond
        # timestamps, which Spark 3.5 refuses to read at all ("Illegal Parquet type: INT64
        # (TIMESTAMP(NANOS,true))"); read as longs, the features stage's queries turn them into
        # timestamps. Spark's own tables hold micros: nothing that reads today changes.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        # Spark's default of 200 shuffle partitions is for clusters; adaptive execution coalesces them,
        # but a one-machine run of small stages still pays per task, so local mode starts smaller.
        "spark.sql.shuffle.partitions": "8" if is_local(where.master) else "200",
    }
    if is_local(where.master):
        conf |= {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",  # progress bars on stderr, in every log
            # Day partitions are many small files; counting each as 4 MB to open made a task per file on
            # two cores (62 tasks for two months). Packing them into few tasks suits one machine.
            "spark.sql.files.openCostInBytes": str(64 << 20),
        }
        # In local mode the driver JVM does all the work, and a night starts one per task (each
        # Airflow task is a process of its own) that runs a few hundred small queries and exits. Its
        # time goes to warming up: the JIT's optimizing compiler (C2) compiles Spark's and Janino's
        # code on the same cores the queries need, for code that a short task leaves before the
        # compiled version pays back. With the quick compiler alone (C1), measured here on 2 cores:
        # 72 small queries on a fresh session took 49 s of JVM CPU instead of 105 s, and even a 3 M-row
        # write with six joins and aggregations 45 s instead of 58 s. A shop whose local jobs run for
        # long appends -XX:TieredStopAtLevel=4 (PERSONAFLOW_SPARK_CONF, below: the last flag wins).
        conf["spark.driver.extraJavaOptions"] += " " + LOCAL_JIT
    # The heap is fixed when the JVM starts (pyspark passes it to spark-submit as the session starts
    # one). A cluster's driver keeps Spark's default unless the setting names one.
    if where.driver_memory or is_local(where.master):
        conf["spark.driver.memory"] = where.driver_memory or default_driver_memory()
    for entry in where.conf:
        key, value = (part.strip() for part in entry.split("=", 1))
        # the shop's JVM options come after ours (the JVM takes a flag's last value): Derby's home
        # and the time zone stay, and any of ours can be overridden
        conf[key] = f"{conf[key]} {value}" if key in _APPENDED and key in conf else value
    return conf


def embedded_metastore(conf: dict[str, str]) -> bool:
    """Whether the session's Hive metastore is the embedded Derby one (one JVM at a time)."""
    url = conf.get("spark.hadoop.javax.jdo.option.ConnectionURL", "")
    return url.startswith("jdbc:derby:;") and not conf.get("spark.hadoop.hive.metastore.uris")


def _gone(pid: int) -> bool:
    """The process has exited (a zombie whose parent has not reaped it yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return True
    return text[text.rindex(")") + 2] in "ZX"


def hold_metastore(directory: Path, timeout: float = METASTORE_WAIT_S) -> IO[str]:
    """An exclusive lock on `directory`'s embedded metastore for this process (module text), waiting up
    to `timeout` s for another process's; the lock file names the holder's JVM, so that the next holder
    waits for that JVM to exit too. Held until the returned file is closed (the process exits)."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / "metastore.lock", "a+")  # noqa: SIM115 - held for the process's life
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise SparkError(
                    f"the embedded Spark metastore in {directory} stayed held by another process (JVM "
                    f"{holder}) for {timeout:.0f} s; a Spark warehouse on one machine runs one process "
                    "at a time (a cluster's shared metastore has no such limit: docs/guides/spark.md)"
                ) from None
            time.sleep(0.5)
    handle.seek(0)
    previous = handle.read().strip()
    while previous.isdigit() and not _gone(int(previous)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return handle


def _record_jvm(handle: IO[str], spark: Any) -> None:
    """Write this session's JVM pid into the lock file. pyspark keeps the JVM's Popen on its gateway
    (`gateway.proc`, set by pyspark.java_gateway.launch_gateway); without it nothing is written and the
    next holder does not wait for the JVM."""
    proc = getattr(getattr(spark.sparkContext, "_gateway", None), "proc", None)
    handle.seek(0)
    handle.truncate()
    handle.write(str(proc.pid) if proc is not None else "")
    handle.flush()


def session(where: SparkWarehouse) -> Any:
    """The process's SparkSession for `where`, started on first use (Hive catalog on Derby).

    One warehouse per process: asking for another while one runs raises (Spark keeps one context per
    JVM, and its static confs, the warehouse dir among them, cannot change after it starts).
    """
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is not None:
            active, spark = _ACTIVE
            if active != where:
                raise SparkError(
                    f"a Spark session for {active.directory} ({active.master}) is running in this process;"
                    f" stop it before opening {where.directory} ({where.master})"
                )
            return spark
        from pyspark.sql import SparkSession

        if is_local(where.master):
            tool_env.spark_local_ip()
        where.directory.mkdir(parents=True, exist_ok=True)
        conf = confs(where)
        directory = where.directory.resolve()
        held = None
        if embedded_metastore(conf) and directory not in _HELD:
            held = _HELD[directory] = hold_metastore(directory)
        builder = SparkSession.builder.master(where.master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.enableHiveSupport().getOrCreate()
        if held is not None:
            _record_jvm(held, spark)
        # Hive's metastore logs each partition's stats update at WARN; failures raise anyway.
        spark.sparkContext.setLogLevel("ERROR")
        _ACTIVE = (where, spark)
        return spark


def stop() -> None:
    """Stop the process's SparkSession, if one runs (its executors, and Derby's hold on the metastore)."""
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is None:
            return
        _, spark = _ACTIVE
        _ACTIVE = None
        spark.stop()


def running() -> bool:
    return _ACTIVE is not None


def _translate(exc: Exception) -> SparkError:
    error_class = getattr(exc, "getErrorClass", lambda: None)() or ""
    kind = SparkMissingTable if error_class in _MISSING else SparkError
    return kind(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


class SparkConnection:
    """The DuckDB-shaped subset of personaflow/core/warehouse.py over the process's SparkSession.

    `execute(sql, params)` takes one statement with the warehouse's `$1, $2, ...` placeholders, bound
    as Spark 3.5's named parameters `:p1, :p2, ...` (personaflow/core/placeholders.py); `begin` /
    `commit` / `rollback` do nothing: Spark tables have no multi-statement transactions, so the Spark
    loaders make each step a single overwrite of whole partitions instead (re-running a step gives the
    same table). `close` leaves the session running for the next stage.
    """

    engine = "spark"

    def __init__(self, where: SparkWarehouse, read_only: bool = False) -> None:
        self.where = where
        self.read_only = read_only
        self.spark = session(where)
        self._frame: Any = None

    def execute(self, sql: str, params: Sequence | None = None) -> SparkConnection:
        from pyspark.errors import PySparkException

        statement = sql.strip().rstrip(";")
        try:
            if params:
                statement, args = spark_named(statement, list(params))
                self._frame = self.spark.sql(statement, args=args)
            else:
                self._frame = self.spark.sql(statement)
        except PySparkException as exc:
            raise _translate(exc) from exc
        return self

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self._frame.collect()]

    def fetchone(self) -> tuple | None:
        rows = self._frame.take(1)
        return tuple(rows[0]) if rows else None

    def df(self) -> pd.DataFrame:
        return self._frame.toPandas()

    def arrow(self) -> pa.Table:
        return pa.Table.from_pandas(self.df(), preserve_index=False)

    def register(self, name: str, frame: pa.Table | pd.DataFrame) -> None:
        """`frame` as a temp view `name` of this session (sent through the driver: keep it a batch)."""
        pandas = frame.to_pandas() if isinstance(frame, pa.Table) else frame
        schema = _spark_schema(frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame))
        self.spark.createDataFrame(pandas, schema=schema).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def table_exists(self, qualified: str) -> bool:
        return bool(self.spark.catalog.tableExists(qualified))

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self._frame = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SPARK_TYPES = {
    pa.types.is_boolean: "boolean", pa.types.is_int8: "tinyint", pa.types.is_int16: "smallint",
    pa.types.is_int32: "int", pa.types.is_int64: "bigint", pa.types.is_floating: "double",
    pa.types.is_date: "date", pa.types.is_timestamp: "timestamp", pa.types.is_decimal: "double",
}


def _spark_type(kind: pa.DataType) -> str:
    for test, name in _SPARK_TYPES.items():
        if test(kind):
            return name
    return "string"


def _spark_schema(table: pa.Table) -> str:
    """A DDL schema string for the frame's columns (an all-null column still gets its arrow type)."""
    return ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in table.schema)


# The most rows one driver-side read of a day-partitioned table takes at once (`read_by_days`): ~7
# columns of interactions are ~100-200 bytes a row in Arrow plus pandas, so one chunk is ~100 MB.
CHUNK_ROWS = 500_000


def day_chunks(counts: Sequence[tuple[Any, int]], max_rows: int = CHUNK_ROWS) -> list[tuple[Any, Any]]:
    """Consecutive days grouped into (first, last) ranges of at most `max_rows` rows each (a day holding
    more is a range of its own: a partition is the smallest unit a range read can prune to)."""
    chunks: list[tuple[Any, Any]] = []
    first = last = None
    rows = 0
    for day, n in sorted(counts, key=lambda c: c[0]):
        if first is not None and rows + n > max_rows:
            chunks.append((first, last))
            first, rows = None, 0
        if first is None:
            first = day
        last, rows = day, rows + int(n)
    if first is not None:
        chunks.append((first, last))
    return chunks


def read_by_days(
    con: SparkConnection, table: str, day_column: str, sql: str, max_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """`sql` run once per range of days of `table` (its `{days}` slot becomes the range's predicate on
    `day_column`), oldest first, each range at most `max_rows` rows: a table's history reaches the
    driver in chunks, never as one collect (a whole-table `toPandas` holds every partition's Arrow
    batches and the frame at once, and stops at spark.driver.maxResultSize). `max_rows`: CHUNK_ROWS
    unless given. On a table partitioned by
    `day_column` each read touches only its days' files. Memory on the driver: one chunk at a time,
    plus whatever the caller keeps; the per-day counts are one row per day."""
    counts = con.execute(f"select {day_column}, count(*) from {table} group by {day_column}").fetchall()
    for first, last in day_chunks([c for c in counts if c[0] is not None], max_rows or CHUNK_ROWS):
        days = f"{day_column} between date'{first.isoformat()}' and date'{last.isoformat()}'"
        yield con.execute(sql.format(days=days)).df()


def java_available() -> bool:
    """Whether a JVM is there to start Spark with (JAVA_HOME or `java` on PATH; `make java`)."""
    import shutil

    return bool(tool_env.tool_variable("JAVA_HOME")) or shutil.which("java") is not None


__all__ = [
    "CHUNK_ROWS", "LOCAL_JIT", "METASTORE_WAIT_S", "SparkConnection", "confs", "day_chunks",
    "default_driver_memory", "embedded_metastore", "hold_metastore", "java_available", "is_local",
    "machine_memory_bytes", "read_by_days", "running",
    "session", "stop",
]  # fmt: skip
