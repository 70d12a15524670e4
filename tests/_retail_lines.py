"""A slice of the real Online Retail log (../shared/data/online-retail) as the usable events and items the
marts hold (intermediate.int_events_as_of / int_items columns the personas read), built with pandas here so
that unit-speed tests can run warehouse SQL on real lines without a dbt build. The rules are the marts':
customer present, price > 0, exact duplicates out, "C" invoices are returns (positive quantity, their value
in return_value), the non-product codes of dbt_project.yml, categories read off the description by its
description_categories (first match of a whole word, else "other")."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def retail_lines(first_month: str = "2011-01", months: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) of the months starting at `first_month` (YYYY-MM)."""
    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    ts = pd.to_datetime(raw["InvoiceDate"], format="mixed")
    start = pd.Timestamp(f"{first_month}-01")
    raw = raw.loc[(ts >= start) & (ts < start + pd.DateOffset(months=months))].drop_duplicates()
    raw = raw.loc[raw["CustomerID"] != ""]
    price, quantity = raw["UnitPrice"].astype(float), raw["Quantity"].astype(int)
    raw = raw.loc[price > 0]
    price, quantity = price.loc[raw.index], quantity.loc[raw.index]
    is_return = raw["InvoiceNo"].str.startswith("C")
    raw = raw.loc[is_return | (quantity > 0)]
    is_return, price, quantity = is_return.loc[raw.index], price.loc[raw.index], quantity.loc[raw.index].abs()
    codes = {c.upper() for c in project["non_product_codes"]}
    item = raw["StockCode"].str.strip()
    value = (quantity * price).round(2)
    events = pd.DataFrame(
        {
            "user_id": raw["CustomerID"].str.replace(".0", "", regex=False),
            "order_key": raw["InvoiceNo"],
            "item_id": item,
            "event_ts": pd.to_datetime(raw["InvoiceDate"], format="mixed"),
            "event_type": is_return.map({True: "return", False: "purchase"}),
            "quantity": quantity.astype("int64"),
            "revenue": value.where(~is_return, 0.0),
            "return_value": value.where(is_return, 0.0),
            "is_product": ~item.str.upper().isin(codes),
        }
    ).reset_index(drop=True)
    names = raw.groupby(item)["Description"].first()
    rules = [(r["category"], {w.upper() for w in r["words"]}) for r in project["description_categories"]]

    def category(text: str) -> str:
        words = set(re.findall(r"[A-Z0-9'-]+", text.upper()))
        return next((c for c, ws in rules if words & ws), "other")

    items = pd.DataFrame({"item_id": names.index, "category": [category(t) for t in names]})
    return events, items
