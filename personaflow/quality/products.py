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

import json
from datetime import UTC, datetime
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd

from personaflow.core import warehouse as wh
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
    import pyarrow as pa

    from personaflow.ingest.products import DDL

    now = datetime.now(UTC).replace(tzinfo=None)
    batch_id = str(rows["batch_id"].iloc[0])
    target = quarantine_dir / "products" / batch_id
    target.mkdir(parents=True, exist_ok=True)
    reasons = [f.describe() for f in result.failures]
    table = pa.Table.from_pandas(rows, preserve_index=False)
    cols = ", ".join(rows.columns)
    with wh.connect(warehouse) as con:
        con.execute(DDL)
        con.execute("create schema if not exists quarantine")
        con.execute(
            "create table if not exists quarantine.products as select *, cast(null as timestamp) as "
            "quarantined_at, cast(null as varchar) as reason from raw.products limit 0"
        )
        con.register("failed_rows", table)
        con.begin()
        try:
            con.execute("delete from quarantine.products where batch_id = ?", [batch_id])
            con.execute(
                f"insert into quarantine.products ({cols}, quarantined_at, reason) "
                f"select {cols}, cast(? as timestamp), cast(? as varchar) from failed_rows",
                [now, "; ".join(reasons)],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.unregister("failed_rows")
    reasons_doc = {"batch_id": batch_id, "quarantined_at": now.isoformat(), "reasons": reasons,
                   "result": result.to_dict()}  # fmt: skip
    (target / "reasons.json").write_text(json.dumps(reasons_doc, indent=2, default=str))
    with (target / "rows.jsonl").open("w") as handle:
        for record in rows.drop(columns=["loaded_at"]).to_dict(orient="records"):
            handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    return target
