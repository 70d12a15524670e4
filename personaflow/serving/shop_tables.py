"""The demographics and campaign fields a /profile answer carries: tonight's
`features_dir/customer_demographics.parquet` and `customer_campaigns.parquet` (written after each
customers/campaigns/redemptions import and by `refresh_profile_tables`: personaflow/pipeline/shop_tables.py).

Re-read when a file changes (one stat per call each). Memory: one small row per customer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.serving.file_cache import FileCache
from personaflow.serving.file_cache import plain as _plain

DEMOGRAPHICS_FILE = "customer_demographics.parquet"
CAMPAIGNS_FILE = "customer_campaigns.parquet"


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    return {str(r["user_id"]): r for r in pd.read_parquet(path).to_dict(orient="records")}


def _names(value: Any) -> list[str]:
    """A list column as read back from Parquet (a numpy array, or None before coupons were loaded)."""
    return [str(v) for v in value] if value is not None and not isinstance(value, float) else []


class _Table:
    def __init__(self, path: Path) -> None:
        self._cache, self.rows = FileCache(path, _rows, {}), {}

    def get(self, user_id: str) -> dict[str, Any] | None:
        self.rows = self._cache.get()
        return self.rows.get(user_id)


class ShopTables:
    def __init__(self, features_dir: Path) -> None:
        self.demographics = _Table(Path(features_dir) / DEMOGRAPHICS_FILE)
        self.campaigns = _Table(Path(features_dir) / CAMPAIGNS_FILE)

    def fields(self, user_id: str) -> dict[str, Any]:
        """{"demographics": ..., "campaigns": ...} for the Profile: None where the shop has no such table;
        a customer the table does not list (new since the night) reads as unknown / never reached."""
        out: dict[str, Any] = {"demographics": None, "campaigns": None}
        demo = self.demographics.get(user_id)
        if demo is not None or self.demographics.rows:
            demo = demo or {}
            names = {"age_band": "age_band", "income_band": "income_band", "household": "household",
                     "label": "demographic_label"}  # fmt: skip
            out["demographics"] = {ours: demo.get(col, "unknown") for ours, col in names.items()}
        camp = self.campaigns.get(user_id)
        if camp is not None or self.campaigns.rows:
            camp = camp or {}
            out["campaigns"] = {
                "campaigns_reached": int(camp.get("campaigns_reached", 0)),
                "campaigns_redeemed": int(camp.get("campaigns_redeemed", 0)),
                "coupons_redeemed": int(camp.get("coupons_redeemed", 0)),
                "last_campaign_id": _plain(camp.get("last_campaign_id")),
                "reached_by_running_campaign": bool(camp.get("reached_by_running_campaign", False)),
                "redeem_score": _plain(camp.get("redeem_score")),
                "redeem_score_campaign_type": _plain(camp.get("redeem_score_campaign_type")),
                "coupon_departments": _names(camp.get("coupon_departments")),
                "coupon_products": _names(camp.get("coupon_products")),
            }
        return out
