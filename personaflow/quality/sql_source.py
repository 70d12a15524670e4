"""Great Expectations over a warehouse on PostgreSQL: the batch is validated where it lies.

With `PERSONAFLOW_WAREHOUSE_URL=postgresql://...` the batch suite does not pull a day of raw.events
into pandas: GX's PostgreSQL data source (`context.data_sources.add_postgres`) gets a query asset of
the day (`select * from raw.events where batch_date = ...`), and each expectation is a query in the
database. The embedded DuckDB warehouse keeps the pandas data source (GX has no DuckDB one);
personaflow/quality/checks.py runs both through the same suites and the same result handling.

What SQL needs beyond that, handled once in this module:
- column types: GX knows a query asset's columns but not their types, so the type and column-set
  expectations (about the table, not the day) run on a table asset of raw.events;
- days, not partitions: GX's SQL partitioners find a day among the table's rows, so a day with no
  rows (a closed shop, a header-only re-delivery, exactly what must fail loudly) would be "no batch";
  a query asset of the day is a batch with zero rows;
- NULL-safe duplicates: GX's compound-uniqueness metric joins the duplicate groups back with `=`,
  so rows whose key has a NULL (a synthetic event's order_id) never count as duplicates on SQL, while
  pandas counts them; that expectation runs on a query of the day with every key column as text and
  NULL as '' (the loader stores '' as NULL, so nothing distinct is merged);
- the connection string is handed to GX as `${PERSONAFLOW_GX_WAREHOUSE_URL}`, its value in the GX
  context's runtime environment (`runtime_environment`, not the process environment), so a file-based
  GX context (the Data Docs site) never writes the warehouse password into its great_expectations.yml.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import great_expectations.expectations as gxe

SOURCE_NAME = "warehouse_postgres"
URL_VARIABLE = "PERSONAFLOW_GX_WAREHOUSE_URL"


ISO_T = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})")
TABLE_LEVEL = (gxe.ExpectColumnValuesToBeInTypeList, gxe.ExpectTableColumnsToMatchSet)


@dataclass(frozen=True)
class SqlBatch:
    """One day of a warehouse table on PostgreSQL; `query` (set by `split_for_sql`) is what GX reads,
    None for the whole table."""

    url: str
    table: str  # schema.table
    day_column: str
    day: date
    n_rows: int
    key: str | None = None  # a column naming the rows in failure samples (GX unexpected_index_column_names)
    query: str | None = None


def split_for_sql(batch: SqlBatch, expectations: Sequence[gxe.Expectation]) -> list[tuple[SqlBatch, list]]:
    """The parts a SQL batch is validated in (see the module text): the day's rows first (its Data Docs
    page is the one an alert links), then the table's schema, then NULL-safe compound uniqueness."""
    day = f"{batch.day_column} = cast('{batch.day.isoformat()}' as date)"
    compound = [e for e in expectations if isinstance(e, gxe.ExpectCompoundColumnsToBeUnique)]
    table_level = [e for e in expectations if isinstance(e, TABLE_LEVEL)]
    rows = [e for e in expectations if e not in compound and e not in table_level]
    parts = [(replace(batch, query=f"select * from {batch.table} where {day}"), rows)]
    if table_level:
        parts.append((replace(batch, query=None, key=None, n_rows=0), table_level))
    for expectation in compound:
        columns = ", ".join(f"coalesce(cast({c} as varchar), '') as {c}" for c in expectation.column_list)
        query = f"select {columns} from {batch.table} where {day}"
        parts.append((replace(batch, query=query, key=None, n_rows=0), [expectation]))
    return parts


def runtime_environment(batches: Sequence[object]) -> dict[str, str]:
    """What `gx.get_context(runtime_environment=...)` needs for these batches: the warehouse URL."""
    urls = {b.url for b in batches if isinstance(b, SqlBatch)}
    if len(urls) > 1:
        raise ValueError("one GX context validates batches of one warehouse")
    return {URL_VARIABLE: urls.pop()} if urls else {}


def sql_batch_definition(context: Any, batch: SqlBatch) -> tuple[Any, dict[str, Any]]:
    """The GX batch definition for `batch` (a query asset, or the whole table)."""
    # GX substitutes ${URL_VARIABLE} from the context's runtime environment (`runtime_environment`)
    # when it connects (see the module text).
    source = context.data_sources.add_or_update_postgres(
        name=SOURCE_NAME, connection_string="${" + URL_VARIABLE + "}"
    )
    if batch.query is not None:
        name = f"{batch.table}.query.{len(source.assets)}"
        asset = source.add_query_asset(name=name, query=batch.query)
        return asset.add_batch_definition_whole_table(name="whole"), {}
    schema, table = batch.table.split(".")
    asset = next((a for a in source.assets if a.name == batch.table), None) or source.add_table_asset(
        name=batch.table, schema_name=schema, table_name=table
    )
    definition = next((b for b in asset.batch_definitions if b.name == "whole"), None)
    return definition or asset.add_batch_definition_whole_table(name="whole"), {}


def sql_text(value: Any) -> Any:
    """GX's SQL results carry timestamps as ISO text with a 'T': shown as the pandas path shows them."""
    if isinstance(value, dict):
        return {k: sql_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sql_text(v) for v in value]
    return ISO_T.sub(r"\1 \2", value) if isinstance(value, str) else value
