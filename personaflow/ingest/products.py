"""Bring your own product catalogue through a declared column mapping, into `raw.products`, an as-of
table like raw.customers: every version of a product's record is kept with the date it holds from, never
overwritten, so a point-in-time read (`as_of` below; the marts' int_items) never sees a later category.

    personaflow ingest products.parquet --kind products --mapping complete-journey-products

Ours: item_id (required); name, department, category, brand, price (optional; price a number >= 0);
valid_from (the date a row holds from) is a column, or `[options] valid_from = "YYYY-MM-DD"` for an
export without one. Errors name the file, the row and the column, and nothing is loaded: a missing
column, an empty product id, a price that is not a number or is negative, a bad date, one product given
two different records for the same date. Raw kept (`raw_record`); re-runs replace the rows with the same
(source, item_id, valid_from). The loaded batch then goes through its checks
(personaflow/quality/products.py), which quarantine it on failure.

Memory: the export in one frame, O(products × columns); duplicates are found by hashing, never pairwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core.warehouse import Location
from personaflow.ingest.shop_tables import Columns, TableMapping, load_mapping, load_rows, read_table, sha256

REQUIRED = ("item_id",)
ATTRIBUTES = ("name", "department", "category", "brand", "price")
OPTIONAL = (*ATTRIBUTES, "valid_from")
COLUMNS = (
    "item_id",
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
create table if not exists raw.products (
    item_id varchar, name varchar, department varchar, category varchar, brand varchar,
    price double precision, valid_from timestamp, source varchar, batch_id varchar, source_file varchar,
    source_row bigint, raw_record varchar, loaded_at timestamp
);
"""


def product_mapping(name_or_path: str | Path) -> TableMapping:
    return load_mapping(name_or_path, REQUIRED, OPTIONAL, "products")


def read_products(path: Path, mapping: TableMapping) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and check a catalogue export: (one row per product version in our columns, counts)."""
    path = Path(path)
    frame, records = read_table(path, mapping.format)
    cols = Columns(path, frame, mapping, mapping.columns)
    items = cols.required("item_id", "a product id")
    price_text = cols.get("price")
    price = pd.to_numeric(price_text, errors="coerce")
    bad = (price_text.notna() & (price.isna() | (price < 0))).to_numpy()
    if bad.any():
        raise cols.fault("price", bad, "a price (a number, 0 or more)")
    out = pd.DataFrame(
        {
            "item_id": items,
            **{a: cols.get(a) for a in ATTRIBUTES if a != "price"},
            "price": price.astype("float64"),
            "valid_from": cols.valid_from("a catalogue record"),
        }
    )
    out, repeats = cols.versions(out, "item_id", ATTRIBUTES, records, "product")
    report = {
        "source": mapping.name,
        "records": len(frame),
        "rows": len(out),
        "repeats_dropped": repeats,
        "products": int(out["item_id"].nunique()),
        "with_category": int(out["category"].notna().sum()),
        "with_price": int(out["price"].notna().sum()),
    }
    return out, report


def stamp(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The rows as raw.products holds them: with the batch id (source and the file's hash) and load time."""
    batch = f"{frame['source'].iloc[0] if len(frame) else 'products'}-{sha256(path)[:12]}"
    return frame.assign(batch_id=batch, loaded_at=datetime.now(UTC).replace(tzinfo=None))[list(COLUMNS)]


def load_products(warehouse: Location, rows: pd.DataFrame) -> dict[str, Any]:
    """Append stamped versions to raw.products (same source, product and date: replaced)."""
    total = load_rows(warehouse, DDL, "raw.products", rows, ["source", "item_id", "valid_from"])
    return {"batch_id": str(rows["batch_id"].iloc[0]) if len(rows) else None, "table_rows": total}


def as_of(versions: pd.DataFrame, when: str | pd.Timestamp) -> pd.DataFrame:
    """Each product's record as it stood at `when`: the newest version with valid_from on or before it
    (ties between sources: the first source by name, as the int_items model orders them). A product
    whose first version is dated later is not in the answer. Memory: O(versions)."""
    seen = versions[pd.to_datetime(versions["valid_from"]) <= pd.Timestamp(when)]
    newest = seen.sort_values(["item_id", "valid_from", "source"], ascending=[True, False, True])
    return newest.drop_duplicates("item_id", keep="first").reset_index(drop=True)
