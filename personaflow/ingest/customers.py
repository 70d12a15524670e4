"""Bring your own customer table (demographics) through a declared column mapping, into `raw.customers`,
an as-of table: every version of a customer's record is kept with the date it holds from, never
overwritten, so a point-in-time read (personaflow/profiles/demographics.py `as_of`) never sees a later value.

    personaflow ingest demographics.parquet --kind customers --mapping complete-journey-customers

Ours: user_id (required); age, income, home_ownership, marital_status, household_size, household_comp,
kids_count (optional, kept as text: the bands are read by personaflow/profiles/demographics.py); valid_from
(the date a row holds from) is a column, or `[options] valid_from = "YYYY-MM-DD"` for an export without
one. Errors name the file, the row and the column: a missing column, an empty customer id, a bad date,
one customer given two different records for the same date. Raw kept (`raw_record`); re-runs replace
the rows with the same (source, user_id, valid_from).

Memory: the export in one frame, O(customers × columns).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core.ids import normal_user_id
from personaflow.core.warehouse import Location
from personaflow.ingest.shop_tables import Columns, TableMapping, load_mapping, load_rows, read_table, sha256

REQUIRED = ("user_id",)
ATTRIBUTES = (
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)
OPTIONAL = (*ATTRIBUTES, "valid_from")
COLUMNS = (
    "user_id",
    *ATTRIBUTES,
    "valid_from",
    "source",
    "batch_id",
    "source_file",
    "source_row",
    "raw_record",
    "loaded_at",
)
DDL = """
create schema if not exists raw;
create table if not exists raw.customers (
    user_id varchar, age varchar, income varchar, home_ownership varchar, marital_status varchar,
    household_size varchar, household_comp varchar, kids_count varchar, valid_from timestamp,
    source varchar, batch_id varchar, source_file varchar, source_row bigint, raw_record varchar,
    loaded_at timestamp
);
"""


def customer_mapping(name_or_path: str | Path) -> TableMapping:
    return load_mapping(name_or_path, REQUIRED, OPTIONAL, "customers")


def read_customers(path: Path, mapping: TableMapping) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and check a customer export: (one row per customer version in our columns, counts)."""
    frame, records = read_table(path, mapping.format)
    cols = Columns(path, frame, mapping, mapping.columns)
    users = cols.required("user_id", "a customer id").map(normal_user_id)
    valid_from = cols.valid_from("a customer record")
    out = pd.DataFrame({"user_id": users, **{a: cols.get(a) for a in ATTRIBUTES}, "valid_from": valid_from})
    out, repeats = cols.versions(out, "user_id", ATTRIBUTES, records, "customer")
    report = {
        "source": mapping.name,
        "records": len(frame),
        "rows": len(out),
        "repeats_dropped": repeats,
        "customers": int(out["user_id"].nunique()),
    }
    return out, report


def load_customers(warehouse: Location, frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    """Append the versions to raw.customers (same source, customer and date: replaced)."""
    batch = f"{frame['source'].iloc[0] if len(frame) else 'customers'}-{sha256(path)[:12]}"
    rows = frame.assign(batch_id=batch, loaded_at=datetime.now(UTC).replace(tzinfo=None))[list(COLUMNS)]
    total = load_rows(warehouse, DDL, "raw.customers", rows, ["source", "user_id", "valid_from"])
    return {"batch_id": batch, "table_rows": total}
