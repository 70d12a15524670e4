"""The UCI Online Retail export (one invoice line a row) mapped to the landing layout (raw contract v2).

    InvoiceNo   -> order_id and session_id (an invoice is one basket)
    StockCode   -> item_id              Description -> description
    Quantity    -> quantity             UnitPrice   -> price
    InvoiceDate -> event_ts             Country     -> country
    CustomerID  -> user_id ('17850.0' -> '17850'; '' -> NULL)
    event_type  =  'return' if InvoiceNo starts with 'C' (a cancellation) else 'purchase'
    event_id    =  InvoiceNo || '-' || source_row   (source_row: 1-based data line of the export)

Values are kept as they came: cancellations keep their negative quantity, price <= 0 and rows without
a customer stay, exact duplicates stay. Staging (dbt) flags them; this module only counts them, by the
same rules, so an import prints the fault counts that the data-quality mart will show.
Accepts the column names of "Online Retail II" too (Invoice, Price, Customer ID), and the file as CSV,
compressed CSV (.csv.gz, ...) or the UCI original .xlsx (personaflow/ingest/sheets.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from personaflow.ingest.csvfile import bad_values, write_rejects
from personaflow.ingest.sheets import read_export_text

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
ALIASES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
# The UCI sheet saved as CSV by Excel ('12/1/2010 8:26'), or by pandas (ISO).
DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
# "Exact duplicate of an earlier row": every business column equal (as staging's stg_events has it;
# the PROVENANCE count of 5,268 compares all eight columns of the export, Country included).
BUSINESS_COLUMNS = [
    "order_id", "session_id", "item_id", "event_ts", "quantity", "price", "user_id", "event_type",
    "description", "country",
]  # fmt: skip


def _reject_values(path: Path, column: str, lines: np.ndarray, values: pd.Series, bad: np.ndarray, kind: str):
    if bad.any():
        raise bad_values(path, column, lines, values, bad, kind)


def _timestamps(path: Path, text: pa.ChunkedArray, lines: np.ndarray) -> pd.Series:
    parsed = pa.nulls(len(text), pa.timestamp("s"))
    for fmt in DATE_FORMATS:  # pyarrow's strptime: pandas' per-row fallback takes seconds at 0.5 M rows
        parsed = pc.coalesce(parsed, pc.strptime(text, format=fmt, unit="s", error_is_null=True))
    out = parsed.to_pandas().astype("datetime64[ns]")
    _reject_values(
        path, "InvoiceDate", lines, text.to_pandas(), out.isna().to_numpy(), "a date like 12/1/2010 8:26"
    )
    return out


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    return pc.utf8_trim_whitespace(table.column(name))


def _or_null(values: pa.ChunkedArray) -> pd.Series:
    """Empty text as NULL, as a pandas object column (string ops stay in pyarrow: 0.5 M rows)."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values).to_pandas()


def to_landing(path: Path, table: pa.Table, lines: np.ndarray) -> tuple[pd.DataFrame, int]:
    """The export's text columns as a landing-layout frame; also how many CustomerIDs looked like floats."""
    quantity_text = _text(table, "Quantity").to_pandas()
    quantity = pd.to_numeric(quantity_text, errors="coerce")
    bad_q = (quantity.isna() | (quantity % 1 != 0)).to_numpy()
    _reject_values(path, "Quantity", lines, quantity_text, bad_q, "a whole number")
    price_text = _text(table, "UnitPrice").to_pandas()
    price = pd.to_numeric(price_text, errors="coerce")
    _reject_values(path, "UnitPrice", lines, price_text, price.isna().to_numpy(), "a number")
    event_ts = _timestamps(path, _text(table, "InvoiceDate"), lines)

    customer = _text(table, "CustomerID")
    float_text = pc.sum(pc.match_substring_regex(customer, r"^\d+\.0+$")).as_py() or 0
    customer = pc.replace_substring_regex(customer, r"^(\d+)\.0+$", r"\1")
    invoice = _text(table, "InvoiceNo")
    source_row = lines.astype(np.int64) - 1
    event_id = pc.binary_join_element_wise(invoice, pa.array(source_row.astype(str)), "-")
    is_return = pc.starts_with(pc.utf8_upper(invoice), "C").to_numpy(zero_copy_only=False)
    order = _or_null(invoice)
    frame = pd.DataFrame(
        {
            "event_id": event_id.to_pandas(),
            "user_id": _or_null(customer),
            "item_id": _or_null(_text(table, "StockCode")),
            "event_type": np.where(is_return, "return", "purchase"),
            "event_ts": event_ts,
            "session_id": order,
            "quantity": quantity.astype(np.int64),
            "price": price.astype(np.float64),
            "order_id": order,
            "description": _or_null(table.column("Description")),
            "country": _or_null(_text(table, "Country")),
            "source_format": "online-retail",
            "source_row": source_row,
        }
    )
    return frame, int(float_text)


def fault_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per fault, each counted on its own (a row can have several), named as staging names them."""
    returns = frame["event_type"] == "return"
    negative = frame["quantity"] < 0
    return {
        "return": int(returns.sum()),
        "missing_customer": int(frame["user_id"].isna().sum()),
        "non_positive_price": int((frame["price"] <= 0).sum()),
        "duplicate": int(frame.duplicated(subset=BUSINESS_COLUMNS, keep="first").sum()),
        # Not exclusion reasons, but what a reader of the export asks about next.
        "zero_price": int((frame["price"] == 0).sum()),
        "negative_price": int((frame["price"] < 0).sum()),
        "negative_quantity": int(negative.sum()),
        "negative_quantity_not_return": int((negative & ~returns).sum()),
        "missing_description": int(frame["description"].isna().sum()),
    }


def read_online_retail(
    path: Path, max_rejects: int = 0, rejects_file: Path | None = None
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read the export (CSV, compressed CSV or the .xlsx sheet; UTF-8 or latin-1) into the landing
    layout, with its fault counts."""
    path = Path(path)
    text = read_export_text(path, required=COLUMNS, aliases=ALIASES, max_rejects=max_rejects)
    rejects = write_rejects(text.rejects, rejects_file) if rejects_file else None
    frame, float_ids = to_landing(path, text.table, text.lines)
    return frame, {
        "rows": len(frame),
        "customers": int(frame["user_id"].nunique()),
        "products": int(frame["item_id"].nunique()),
        "products_without_description": int(
            frame.groupby("item_id")["description"].count().eq(0).sum()
        ),
        "faults": fault_counts(frame),
        "customer_ids_normalized": float_ids,
        "first_event_ts": str(frame["event_ts"].min())[:16] if len(frame) else None,
        "last_event_ts": str(frame["event_ts"].max())[:16] if len(frame) else None,
        **text.report(),
        # not in the layout: not loaded, but kept (the import's raw copy, personaflow/ingest/landing.py)
        "ignored_columns": [c for c in text.columns if c not in COLUMNS],
        "rejects_file": str(rejects) if rejects else None,
    }
