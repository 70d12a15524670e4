"""One way into the warehouse, whichever engine holds it: DuckDB (the embedded default), PostgreSQL or
Spark.

`PERSONAFLOW_WAREHOUSE_URL=postgresql://...` moves the warehouse to PostgreSQL, `spark` to the tables of
a Spark catalog (`SparkWarehouse`: master, warehouse dir, confs; personaflow/core/spark.py holds the
session and its connection); unset, it is the DuckDB file at `PERSONAFLOW_WAREHOUSE`. Every stage opens
it with `connect(location(settings))` and talks the small DuckDB-shaped API the engines offer here:
`execute(sql, params)` with `$1, $2, ...` placeholders (both engines' own; personaflow/core/placeholders.py),
then `fetchall()` / `fetchone()` / `df()` / `arrow()`;
`register(name, frame)` to use a frame in SQL (a temp table filled by one `COPY` on PostgreSQL, a temp
view on Spark); `begin()` / `commit()` / `rollback()` (no-ops on Spark). SQL that DuckDB and PostgreSQL
read is written once (`double precision`, not `double`); what only one dialect has goes through
`con.engine`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from personaflow.core.placeholders import check
from personaflow.core.spark import SparkError, SparkMissingTable, SparkWarehouse

Location = Path | str | SparkWarehouse


# What a read of a table that is not built yet raises, on any engine.
try:
    import psycopg
    from psycopg import errors as pg_errors

    MISSING_TABLE: tuple[type[Exception], ...] = (
        duckdb.CatalogException, pg_errors.UndefinedTable, pg_errors.InvalidSchemaName, SparkMissingTable
    )
    ERRORS: tuple[type[Exception], ...] = (duckdb.Error, psycopg.Error, SparkError)
except ImportError:  # the embedded default needs no PostgreSQL driver
    psycopg = None
    MISSING_TABLE = (duckdb.CatalogException, SparkMissingTable)
    ERRORS = (duckdb.Error, SparkError)


def is_postgres(where: Location) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


def is_spark(where: Location) -> bool:
    return isinstance(where, SparkWarehouse)


def location(settings: Any) -> Location:
    """The warehouse a run uses: Spark (PERSONAFLOW_WAREHOUSE_URL=spark), the PostgreSQL URL when set,
    else the DuckDB file."""
    url = getattr(settings, "warehouse_url", "")
    if url.strip().lower() == "spark":
        return SparkWarehouse(settings.spark_master, Path(settings.spark_dir), tuple(settings.spark_conf),
                              getattr(settings, "spark_driver_memory", ""))  # fmt: skip
    return url if url else Path(settings.warehouse)


def describe(where: Location) -> str:
    """For messages: the file, the Spark master and warehouse dir, or the URL without any password."""
    if isinstance(where, SparkWarehouse):
        return f"spark ({where.master}, {where.directory})"
    if not is_postgres(where):
        return str(where)
    from urllib.parse import urlsplit

    parts = urlsplit(str(where))
    host = parts.hostname or ""
    return f"postgresql://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"


def exists(where: Location) -> bool:
    """Whether there is a warehouse to read: the DuckDB file is there (a PostgreSQL server is taken to
    be; a read of a table not built yet raises one of MISSING_TABLE)."""
    if isinstance(where, SparkWarehouse):
        return True  # like a server: a read of a table not built yet raises one of MISSING_TABLE
    return is_postgres(where) or Path(where).is_file()


class DamagedWarehouse(ValueError):
    """The DuckDB file is not a database DuckDB can read (truncated, overwritten)."""


# DuckDB's own checks: a header it does not know (at open), or a block the file does not hold (at open,
# or at the first statement that reads it: the statement fails and its transaction is rolled back).
_DAMAGE = ("not a valid DuckDB database file", "Could not read enough bytes from file")


def connect(where: Location, read_only: bool = False) -> DuckConnection | PgConnection | Any:
    if isinstance(where, SparkWarehouse):
        from personaflow.core.spark import SparkConnection

        return SparkConnection(where, read_only=read_only)
    if is_postgres(where):
        return PgConnection(str(where), read_only=read_only)
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if not _is_damage(exc):
            raise
        raise _damaged(path, exc) from exc
    return DuckConnection(raw, path)


def _is_damage(exc: duckdb.IOException) -> bool:
    return any(sign in str(exc) for sign in _DAMAGE)


def _damaged(path: Path, exc: duckdb.IOException) -> DamagedWarehouse:
    # The raw layer can be rebuilt from the landing files, which are kept.
    what = str(exc).splitlines()[0]
    return DamagedWarehouse(
        f"warehouse {path} is damaged ({what}); move it aside and rebuild it from the kept landing "
        "files: personaflow ingest --through <last day> (or personaflow history FILE)"
    )


class _Transactions:
    """What both connections do the same way: explicit transactions, closing, `with`."""

    raw: Any

    def begin(self) -> None:
        self.raw.execute("begin")

    def commit(self) -> None:
        self.raw.execute("commit")

    def rollback(self) -> None:
        self.raw.execute("rollback")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckConnection(_Transactions):
    """The DuckDB connection, plus the few calls the PostgreSQL side needs spelled out."""

    engine = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self.raw = con
        self.path = path

    def execute(self, sql: str, params: Sequence | None = None) -> DuckConnection:
        if params is not None:
            check(sql)  # DuckDB binds `?` too: a DuckDB-only run would never see PostgreSQL refuse it
        try:
            self.raw.execute(sql, params) if params is not None else self.raw.execute(sql)
        except duckdb.IOException as exc:
            if self.path is None or not _is_damage(exc):
                raise
            raise _damaged(self.path, exc) from exc
        return self

    def fetchall(self) -> list[tuple]:
        return self.raw.fetchall()

    def fetchone(self) -> tuple | None:
        return self.raw.fetchone()

    def df(self) -> pd.DataFrame:
        return self.raw.df()

    def arrow(self) -> pa.Table:
        return self.raw.to_arrow_table()  # duckdb 2.0 (fetch_arrow_table is gone)

    def register(self, name: str, frame: pa.Table | pd.DataFrame) -> None:
        self.raw.register(name, frame)

    def unregister(self, name: str) -> None:
        self.raw.unregister(name)

    def table_exists(self, qualified: str) -> bool:
        schema, table = qualified.split(".")
        return bool(self.raw.execute(
            "select count(*) from information_schema.tables where table_schema = $1 and table_name = $2",
            [schema, table],
        ).fetchall()[0][0])



_PG_TYPES = {
    pa.types.is_boolean: "boolean", pa.types.is_int8: "smallint", pa.types.is_int16: "smallint",
    pa.types.is_int32: "integer", pa.types.is_int64: "bigint", pa.types.is_floating: "double precision",
    pa.types.is_date: "date", pa.types.is_timestamp: "timestamp", pa.types.is_decimal: "numeric",
}


def _pg_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return "timestamptz"
    for test, name in _PG_TYPES.items():
        if test(kind):
            return name
    return "text"


class PgConnection(_Transactions):
    """A psycopg connection speaking the DuckDB-shaped subset above (autocommit unless `begin()`)."""

    engine = "postgres"

    def __init__(self, url: str, read_only: bool = False) -> None:
        if psycopg is None:
            raise RuntimeError("PERSONAFLOW_WAREHOUSE_URL is PostgreSQL but psycopg is not installed")
        # RawCursor: psycopg sends the SQL as written, with PostgreSQL's own `$n` markers (no `%s`
        # parsing, so a `%` or `?` in a literal is left alone)
        self.raw = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.RawCursor)
        if read_only:
            self.raw.execute("set default_transaction_read_only = on")
        self._cursor: Any = None

    def execute(self, sql: str, params: Sequence | None = None) -> PgConnection:
        cursor = self.raw.cursor()
        if params is None:
            cursor.execute(sql)  # without parameters psycopg runs several statements in one string
        else:
            check(sql)
            cursor.execute(sql, list(params))
        self._cursor = cursor
        return self

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def df(self) -> pd.DataFrame:
        columns = [c.name for c in self._cursor.description or []]
        return pd.DataFrame(self._cursor.fetchall(), columns=columns)

    def arrow(self) -> pa.Table:
        return pa.Table.from_pandas(self.df(), preserve_index=False)

    def register(self, name: str, frame: pa.Table | pd.DataFrame) -> None:
        """The frame as a temp table `name` for this connection, filled by one CSV COPY."""
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        columns = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in table.schema)
        self.raw.execute(f'drop table if exists "{name}"')
        self.raw.execute(f'create temp table "{name}" ({columns})')
        if table.num_rows == 0:
            return
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
        with self.raw.cursor().copy(f'copy "{name}" from stdin (format csv)') as copy:
            copy.write(buffer.getvalue())

    def unregister(self, name: str) -> None:
        self.raw.execute(f'drop table if exists "{name}"')

    def table_exists(self, qualified: str) -> bool:
        return self.raw.execute("select to_regclass($1) is not null", [qualified]).fetchone()[0]

