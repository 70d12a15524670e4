"""Great Expectations over a loaded catalogue batch (raw.products), and its quarantine.

The batch suite (critical unless said): a batch with rows, a product id on every row, one record per
product and date, prices at least 0, no version dated in the future, and, where the mapping maps a
category, categories mostly present (at most `max_missing_category_share` without: a mapping pointing at
the wrong column fails here, not in the marts); the share without a name is a notice only.

The checks run before the load: a failed batch goes to quarantine.products (same columns, plus when and
why), never into raw.products, and `quarantine_dir/products/<batch_id>/` holds reasons.json and the
batch's rows as JSON lines. Memory: one batch of products in a frame.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd

from personaflow.core.warehouse import Location
from personaflow.quality.checks import CheckResult, _run_suite

MAX_MISSING_CATEGORY_SHARE = 0.5


def product_expectations(now: datetime, with_category: bool, max_missing: float) -> list:
    out = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="a batch with products"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["item_id", "valid_from"]),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(
            column="valid_from", max_value=now, description="no future versions"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="name", mostly=1.0, severity="info"),
    ]
    if with_category:
        out.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column="category", mostly=1 - max_missing, description="products mostly have a category"
            )
        )
    return out


def check_products(
    frame: pd.DataFrame, *, with_category: bool = True, now: datetime | None = None,
    docs_dir: Path | None = None, max_missing_category_share: float = MAX_MISSING_CATEGORY_SHARE,
) -> CheckResult:  # fmt: skip
    """Validate one batch of products (raw.products rows of one batch_id)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    data = frame.drop(columns=[c for c in ("raw_record",) if c in frame.columns])
    source = str(frame["source"].iloc[0]) if len(frame) else "empty"
    expectations = product_expectations(now, with_category, max_missing_category_share)
    return _run_suite(f"raw_products.{source}", [("raw.products", data, expectations)], docs_dir,
                      f"products-{source}")  # fmt: skip


def quarantine_products(
    warehouse: Location, rows: pd.DataFrame, quarantine_dir: Path, result: CheckResult
) -> Path:
    """Put a failed batch (`rows`, raw.products' columns with its batch_id) into quarantine.products,
    never into raw.products: the catalogue the marts read stays as it was. Returns the folder with the
    reasons and the rows."""
    from personaflow.ingest.products import DDL
    from personaflow.quality.quarantine import quarantine_table_batch

    return quarantine_table_batch(warehouse, "products", DDL, rows, quarantine_dir, result)
