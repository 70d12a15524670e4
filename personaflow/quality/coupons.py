"""Great Expectations over a coupon batch (raw.coupons rows of one import), and its quarantine.

The batch suite (critical): a batch with rows, a coupon, a product and a campaign on every row, one row
per campaign, coupon and product, and, where a catalogue is loaded, coupons mostly for products in it
(at least `min_in_catalogue_share`: a mapping pointing item_id at the wrong column fails here, not in the
campaign figures; The Complete Journey: 41,851 of 41,857 coupon products are in its catalogue).

The checks run before the load, as for the catalogue (personaflow/quality/products.py): a failed batch
goes to quarantine.coupons (same columns, plus when and why), never into raw.coupons, and
`quarantine_dir/coupons/<batch_id>/` holds reasons.json and the batch's rows as JSON lines.
Memory: one batch of coupon rows in a frame, the catalogue's ids as a set.
"""

from __future__ import annotations

from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd

from personaflow.core.warehouse import Location
from personaflow.quality.checks import CheckResult, _run_suite

MIN_IN_CATALOGUE_SHARE = 0.9


def coupon_expectations(with_catalogue: bool, min_in_catalogue: float) -> list:
    out = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="a batch with coupons"),
        gxe.ExpectColumnValuesToNotBeNull(column="coupon_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="campaign_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["campaign_id", "coupon_id", "item_id"]),
    ]
    if with_catalogue:
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="in_catalogue", value_set=[True], mostly=min_in_catalogue,
                description="coupons mostly for products in the catalogue",
            )  # fmt: skip
        )
    return out


def check_coupons(
    frame: pd.DataFrame, catalogue: set[str] | None, *, docs_dir: Path | None = None,
    min_in_catalogue_share: float = MIN_IN_CATALOGUE_SHARE,
) -> CheckResult:  # fmt: skip
    """Validate one batch of coupon rows; `catalogue`: the product ids loaded (None: no catalogue)."""
    data = frame.drop(columns=[c for c in ("raw_record",) if c in frame.columns])
    if catalogue is not None:
        data = data.assign(in_catalogue=data["item_id"].isin(catalogue))
    source = str(frame["source"].iloc[0]) if len(frame) else "empty"
    expectations = coupon_expectations(catalogue is not None, min_in_catalogue_share)
    return _run_suite(f"raw_coupons.{source}", [("raw.coupons", data, expectations)], docs_dir,
                      f"coupons-{source}")  # fmt: skip


def quarantine_coupons(
    warehouse: Location, rows: pd.DataFrame, quarantine_dir: Path, result: CheckResult
) -> Path:
    """Put a failed batch (raw.coupons' columns with its batch_id) into quarantine.coupons, never into
    raw.coupons. Returns the folder with the reasons and the rows."""
    from personaflow.ingest.campaigns import DDL
    from personaflow.quality.quarantine import quarantine_table_batch

    return quarantine_table_batch(warehouse, "coupons", DDL, rows, quarantine_dir, result)
