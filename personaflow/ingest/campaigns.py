"""Bring your own campaigns, their coupons and coupon redemptions through declared column mappings, into
`raw.campaigns` (one row per campaign: type and window), `raw.campaign_members` (who each reached),
`raw.coupons` (which products each campaign's coupons are for) and `raw.redemptions`.

    personaflow ingest campaign_descriptions.parquet --kind campaigns --mapping complete-journey-campaigns
    personaflow ingest coupons.parquet --kind coupons --mapping complete-journey-coupons
    personaflow ingest coupon_redemptions.parquet --kind redemptions --mapping complete-journey-redemptions

Campaigns, ours: campaign_id, start_date, end_date (required), campaign_type (optional); `[members]`
names the file beside it that lists who was reached (`file`, and its `campaign_id` and `user_id`
columns). Coupons, ours: coupon_id, item_id, campaign_id (all required): one row per product a coupon
is good for. Redemptions, ours: user_id, campaign_id, redemption_date (required), coupon_id (optional).

Errors name the file, the row and the column, and nothing is loaded: a missing column, a bad date, a
campaign that ends before it starts, a member of a campaign not in the campaign table, a redemption by
a customer the shop has no events of (when events are loaded) or of an unknown campaign, a coupon row
without its coupon, product or campaign, or of a campaign not loaded. Exact repeats of a coupon row
(same coupon, product and campaign) are dropped and counted (`repeats`), never an error: The Complete
Journey lists 4,872 of its 116,204 coupon rows twice. Raw kept; re-runs replace rows with the same keys.

Memory: each export in one frame, O(rows); membership checks are hash joins, never pairwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core.ids import normal_user_id
from personaflow.core.warehouse import Location
from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.shop_tables import Columns, TableMapping, load_mapping, load_rows, read_table, sha256

CAMPAIGN_REQUIRED = ("campaign_id", "start_date", "end_date")
CAMPAIGN_OPTIONAL = ("campaign_type",)
REDEMPTION_REQUIRED = ("user_id", "campaign_id", "redemption_date")
REDEMPTION_OPTIONAL = ("coupon_id",)
COUPON_REQUIRED = ("coupon_id", "item_id", "campaign_id")
DDL = """
create schema if not exists raw;
create table if not exists raw.campaigns (
    campaign_id varchar, campaign_type varchar, start_date timestamp, end_date timestamp, source varchar,
    source_file varchar, source_row bigint, raw_record varchar, batch_id varchar, loaded_at timestamp
);
create table if not exists raw.campaign_members (
    campaign_id varchar, user_id varchar, source varchar, batch_id varchar, loaded_at timestamp
);
create table if not exists raw.coupons (
    coupon_id varchar, item_id varchar, campaign_id varchar, source varchar, source_file varchar,
    source_row bigint, raw_record varchar, batch_id varchar, loaded_at timestamp
);
create table if not exists raw.redemptions (
    user_id varchar, campaign_id varchar, redemption_date timestamp, coupon_id varchar, source varchar,
    source_file varchar, source_row bigint, raw_record varchar, batch_id varchar, loaded_at timestamp
);
"""


def campaign_mapping(name_or_path: str | Path) -> TableMapping:
    mapping = load_mapping(name_or_path, CAMPAIGN_REQUIRED, CAMPAIGN_OPTIONAL, "campaigns")
    missing = [k for k in ("file", "campaign_id", "user_id") if k not in mapping.members]
    if missing:
        raise IngestError(f"mapping {mapping.path}: [members] must give {', '.join(missing)}")
    return mapping


def redemption_mapping(name_or_path: str | Path) -> TableMapping:
    return load_mapping(name_or_path, REDEMPTION_REQUIRED, REDEMPTION_OPTIONAL, "redemptions")


def coupon_mapping(name_or_path: str | Path) -> TableMapping:
    return load_mapping(name_or_path, COUPON_REQUIRED, (), "coupons")


def read_coupons(
    path: Path, mapping: TableMapping, campaign_ids: set[str] | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a coupon export (one row per coupon and product it is good for); `campaign_ids` (None: not
    checked) are the campaigns loaded. Exact repeats are dropped and counted; the first row of each is
    kept with its record."""
    path = Path(path)
    frame, records = read_table(path, mapping.format)
    cols = Columns(path, frame, mapping, mapping.columns)
    coupon = cols.required("coupon_id", "a coupon id")
    item = cols.required("item_id", "a product id")
    campaign = cols.required("campaign_id", "a campaign id")
    if campaign_ids is not None:
        unknown = ~campaign.isin(campaign_ids).to_numpy()
        if unknown.any():
            raise cols.fault("campaign_id", unknown, "a campaign loaded with --kind campaigns")
    out = pd.DataFrame(
        {
            "coupon_id": coupon,
            "item_id": item,
            "campaign_id": campaign,
            "source": mapping.name,
            "source_file": str(path),
            "source_row": cols.where.astype("int64"),
            "raw_record": records,
        }
    )
    repeats = out.duplicated(["campaign_id", "coupon_id", "item_id"]).to_numpy()
    out = out[~repeats].reset_index(drop=True)
    report = {
        "source": mapping.name,
        "rows_read": len(frame),
        "repeats": int(repeats.sum()),
        "coupon_rows": len(out),
        "coupons": int(out["coupon_id"].nunique()),
        "products": int(out["item_id"].nunique()),
        "campaigns": int(out["campaign_id"].nunique()),
    }
    return out, report


def read_campaigns(path: Path, mapping: TableMapping) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(campaigns, members, counts) of a campaign export and its members file."""
    path = Path(path)
    frame, records = read_table(path, mapping.format)
    cols = Columns(path, frame, mapping, mapping.columns)
    ids = cols.required("campaign_id", "a campaign id")
    start, end = cols.date("start_date"), cols.date("end_date")
    backwards = (end < start).to_numpy()
    if backwards.any():
        raise cols.fault("end_date", backwards, "on or after the campaign's start_date")
    if ids.duplicated().any():
        raise cols.fault(
            "campaign_id", ids.duplicated(keep=False).to_numpy(), "unique (one row per campaign)"
        )
    campaigns = pd.DataFrame(
        {
            "campaign_id": ids,
            "campaign_type": cols.get("campaign_type"),
            "start_date": start,
            "end_date": end,
            "source": mapping.name,
            "source_file": str(path),
            "source_row": cols.where.astype("int64"),
            "raw_record": records,
        }
    )

    members_path = path.parent / mapping.members["file"]
    member_frame, _ = read_table(members_path, mapping.format)
    member_cols = {k: v for k, v in mapping.members.items() if k != "file"}
    mcols = Columns(members_path, member_frame, mapping, member_cols)
    member_ids = mcols.required("campaign_id", "a campaign id")
    unknown = ~member_ids.isin(set(ids)).to_numpy()
    if unknown.any():
        raise mcols.fault("campaign_id", unknown, f"a campaign of {path.name}")
    members = pd.DataFrame(
        {
            "campaign_id": member_ids,
            "user_id": mcols.required("user_id", "a customer id").map(normal_user_id),
            "source": mapping.name,
        }
    ).drop_duplicates(["campaign_id", "user_id"], ignore_index=True)
    report = {
        "source": mapping.name,
        "campaigns": len(campaigns),
        "members": len(members),
        "customers_reached": int(members["user_id"].nunique()),
    }
    return campaigns, members, report


def read_redemptions(
    path: Path, mapping: TableMapping, users: set[str] | None, campaign_ids: set[str] | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a redemption export; `users` / `campaign_ids` (None: not checked) are the known ones."""
    path = Path(path)
    frame, records = read_table(path, mapping.format)
    cols = Columns(path, frame, mapping, mapping.columns)
    user = cols.required("user_id", "a customer id").map(normal_user_id)
    if users is not None:
        unknown = ~user.isin(users).to_numpy()
        if unknown.any():
            raise cols.fault("user_id", unknown, "a customer the shop has events of")
    campaign = cols.required("campaign_id", "a campaign id")
    if campaign_ids is not None:
        unknown = ~campaign.isin(campaign_ids).to_numpy()
        if unknown.any():
            raise cols.fault("campaign_id", unknown, "a campaign loaded with --kind campaigns")
    out = pd.DataFrame(
        {
            "user_id": user,
            "campaign_id": campaign,
            "redemption_date": cols.date("redemption_date"),
            "coupon_id": cols.get("coupon_id"),
            "source": mapping.name,
            "source_file": str(path),
            "source_row": cols.where.astype("int64"),
            "raw_record": records,
        }
    )
    report = {
        "source": mapping.name,
        "redemptions": len(out),
        "customers": int(out["user_id"].nunique()),
        "campaigns": int(out["campaign_id"].nunique()),
    }
    return out, report


def _stamp(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    batch = f"{frame['source'].iloc[0] if len(frame) else 'campaigns'}-{sha256(path)[:12]}"
    return frame.assign(batch_id=batch, loaded_at=datetime.now(UTC).replace(tzinfo=None))


def load_campaigns(warehouse: Location, campaigns: pd.DataFrame, members: pd.DataFrame, path: Path) -> dict:
    """Campaigns and members into the raw layer (same source and ids: replaced)."""
    n = load_rows(warehouse, DDL, "raw.campaigns", _stamp(campaigns, path), ["source", "campaign_id"])
    m = load_rows(
        warehouse, DDL, "raw.campaign_members", _stamp(members, path), ["source", "campaign_id", "user_id"]
    )
    return {"campaign_rows": n, "member_rows": m}


def stamp(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows with their batch_id (source and the file's hash) and loaded_at, as the checks see them."""
    return _stamp(frame, path)


def load_coupons(warehouse: Location, rows: pd.DataFrame) -> dict:
    """Stamped coupon rows (`stamp`) into raw.coupons (same source, campaign, coupon, product: replaced)."""
    key = ["source", "campaign_id", "coupon_id", "item_id"]
    return {"table_rows": load_rows(warehouse, DDL, "raw.coupons", rows, key)}


def load_redemptions(warehouse: Location, frame: pd.DataFrame, path: Path) -> dict:
    key = ["source", "user_id", "campaign_id", "redemption_date", "coupon_id"]
    # coupon_id may be empty: a replace keyed on NULL would never match, so an empty id is stored as ""
    rows = _stamp(frame.assign(coupon_id=frame["coupon_id"].fillna("")), path)
    return {"redemption_rows": load_rows(warehouse, DDL, "raw.redemptions", rows, key)}


def known_campaigns(warehouse: Location) -> set[str] | None:
    """The campaigns loaded (None: none loaded, so nothing to check against)."""
    from personaflow.core import warehouse as wh

    if not wh.exists(warehouse):
        return None
    with wh.connect(warehouse, read_only=True) as con:
        if not con.table_exists("raw.campaigns"):
            return None
        ids = {str(c) for (c,) in con.execute("select campaign_id from raw.campaigns").fetchall()}
    # empty: the table was only created (loading coupons or redemptions creates every campaign table),
    # so there is nothing to check against yet
    return ids or None
