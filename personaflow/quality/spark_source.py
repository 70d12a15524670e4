"""Great Expectations over the Spark warehouse (PERSONAFLOW_WAREHOUSE_URL=spark): GX's Spark data source.

On Spark the batch and the marts are validated where they lie: each table (a day of raw.events, a whole
mart) is handed to GX as a Spark DataFrame of the process's SparkSession (`context.data_sources
.add_or_update_spark`, a dataframe asset with a whole-dataframe batch definition, the frame as the batch
parameter), and GX's Spark execution engine computes each expectation's metrics as Spark jobs. The
expectation suites are the same objects as on DuckDB and PostgreSQL (personaflow/quality/suites.py);
personaflow/quality/checks.py runs all three through the same result handling.

Why the marts run through GX here while DuckDB and PostgreSQL count them with SQL
(personaflow/quality/sql_checks.py): there the alternative was pulling the marts into pandas; a Spark
DataFrame stays on the executors, so GX's own engine is the memory-safe path.

What differs from the pandas path, and why:
- rows in failure samples are named by a key column (`unexpected_index_column_names`, e.g. event_id), as
  on PostgreSQL: a Spark DataFrame has no row positions;
- GX persists (caches) each frame it validates, since every expectation scans it again: on the
  executors (memory, spilling to disk), never on the driver.

Memory: the driver holds each expectation's counts and up to SAMPLE_SIZE sample values; the executors
hold the cached day (batch) or mart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from personaflow.core.spark import SparkWarehouse, session

SOURCE_NAME = "warehouse_spark"


@dataclass(frozen=True)
class SparkBatch:
    """A Spark table (`schema.table`), or one day of it (`day_column` = `day`), validated by GX's Spark
    engine; `n_rows` counted by the caller, `key` names rows in failure samples."""

    where: SparkWarehouse
    table: str
    n_rows: int
    day_column: str | None = None
    day: date | None = None
    key: str | None = None


def spark_frame(batch: SparkBatch) -> Any:
    """The batch's rows as a Spark DataFrame (lazy: nothing is read until GX computes a metric)."""
    from pyspark.sql import functions as F

    frame = session(batch.where).table(batch.table)
    if batch.day_column is not None:
        frame = frame.where(F.col(batch.day_column) == F.lit(batch.day))
    return frame


def spark_batch_definition(context: Any, batch: SparkBatch) -> tuple[Any, dict[str, Any]]:
    """The GX batch definition for `batch` and its batch parameters (the DataFrame)."""
    source = context.data_sources.add_or_update_spark(name=SOURCE_NAME)
    asset = next((a for a in source.assets if a.name == batch.table), None) or source.add_dataframe_asset(
        name=batch.table
    )
    definition = next((b for b in asset.batch_definitions if b.name == "whole"), None)
    definition = definition or asset.add_batch_definition_whole_dataframe(name="whole")
    return definition, {"dataframe": spark_frame(batch)}


__all__ = ["SOURCE_NAME", "SparkBatch", "spark_batch_definition", "spark_frame"]
