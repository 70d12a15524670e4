"""Great Expectations over a warehouse on PostgreSQL: the batch is validated where it lies.

With `PERSONAFLOW_WAREHOUSE_URL=postgresql://...` the batch suite does not pull a day of raw.events
into pandas: GX's PostgreSQL data source (`context.data_sources.add_postgres`) gets a table asset on
raw.events partitioned by day (`add_batch_definition_daily` on batch_date), and each expectation is a
query in the database. The embedded DuckDB warehouse keeps the pandas data source (GX has no DuckDB
one); quality/checks.py runs both through the same suites and the same result handling.

Two differences of SQL that matter here, handled once in this module:
- GX's compound-uniqueness metric joins the duplicate groups back with `=`, so rows whose key has a
  NULL (order_id of a synthetic event, say) never count as duplicates on SQL, while pandas counts them.
  The duplicates expectation therefore runs on a query asset of the day with every key column as text
  and NULL as '' (the loader stores '' as NULL, so nothing is merged that was distinct);
- the connection string is handed to GX as `${PERSONAFLOW_GX_WAREHOUSE_URL}`, so a file-based GX
  context (the Data Docs site) never writes the warehouse password into its great_expectations.yml.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import great_expectations.expectations as gxe

SOURCE_NAME = "warehouse_postgres"
URL_VARIABLE = "PERSONAFLOW_GX_WAREHOUSE_URL"


@dataclass(frozen=True)
class SqlBatch:
    """One day of a warehouse table on PostgreSQL (`query`: a query asset instead of the table's day)."""

    url: str
    table: str  # schema.table
    day_column: str
    day: date
    n_rows: int
    key: str | None = None  # a column naming the rows in failure samples (GX unexpected_index_column_names)
    query: str | None = None


def split_for_sql(batch: SqlBatch, expectations: Sequence[gxe.Expectation]) -> list[tuple[SqlBatch, list]]:
    """The parts a SQL batch is validated in: the table's day for most expectations, a query asset for
    compound uniqueness (NULL-safe, see the module text)."""
    plain = [e for e in expectations if not isinstance(e, gxe.ExpectCompoundColumnsToBeUnique)]
    compound = [e for e in expectations if isinstance(e, gxe.ExpectCompoundColumnsToBeUnique)]
    parts = [(batch, plain)]
    for expectation in compound:
        columns = ", ".join(f"coalesce(cast({c} as varchar), '') as {c}" for c in expectation.column_list)
        query = (
            f"select {columns} from {batch.table} "
            f"where {batch.day_column} = cast('{batch.day.isoformat()}' as date)"
        )
        parts.append((replace(batch, query=query, key=None, n_rows=0), [expectation]))
    return parts


def sql_batch_definition(context: Any, batch: SqlBatch) -> tuple[Any, dict[str, Any]]:
    """The GX batch definition for `batch`, and the batch parameters that pick its day."""
    os.environ[URL_VARIABLE] = batch.url  # GX substitutes it when it connects (see the module text)
    source = context.data_sources.add_or_update_postgres(
        name=SOURCE_NAME, connection_string="${" + URL_VARIABLE + "}"
    )
    schema, table = batch.table.split(".")
    if batch.query is not None:
        name = f"{batch.table}.query"
        if any(a.name == name for a in source.assets):
            source.delete_asset(name)  # the day is in the query: a fresh asset per validation
        asset = source.add_query_asset(name=name, query=batch.query)
        return asset.add_batch_definition_whole_table(name="whole"), {}
    asset = next((a for a in source.assets if a.name == batch.table), None) or source.add_table_asset(
        name=batch.table, schema_name=schema, table_name=table
    )
    definition = next((b for b in asset.batch_definitions if b.name == "daily"), None)
    if definition is None:
        definition = asset.add_batch_definition_daily(name="daily", column=batch.day_column)
    return definition, {"year": batch.day.year, "month": batch.day.month, "day": batch.day.day}
