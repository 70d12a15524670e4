"""The customers, campaigns and redemptions imports as a stage: Settings -> the warehouse, then the
pure readers (personaflow/ingest/customers.py, personaflow/ingest/campaigns.py) and their loads.

A redemption is checked against the customers the warehouse has events of and the campaigns loaded
before it, when those exist (load events and campaigns first).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.ingest.campaigns import (
    campaign_mapping,
    known_campaigns,
    load_campaigns,
    load_redemptions,
    read_campaigns,
    read_redemptions,
    redemption_mapping,
)
from personaflow.ingest.customers import customer_mapping, load_customers, read_customers
from personaflow.ingest.shop_tables import known_users
from personaflow.profiles.campaigns import (
    COMPARISON,
    COUPON_COMPARISON,
    PRE_DAYS,
    campaign_history,
    campaign_response,
    coupon_profile,
    fit_response_model,
    promoted,
    redeemed_on,
    response_features,
    response_rows,
    score,
)
from personaflow.profiles.demographics import for_customers

KINDS = ("customers", "products", "campaigns", "coupons", "redemptions")


def import_table(kind: str, path: Path, mapping: str, s: Settings, refresh: bool = True) -> dict[str, Any]:
    """`personaflow ingest PATH --kind customers|products|campaigns|redemptions --mapping M`: read, check,
    load; then (`refresh`) the profile's demographics and campaign fields. `personaflow history FOLDER`
    imports every table first and refreshes once, in its audiences stage."""
    where = wh.location(s)
    path = Path(path)
    refresh_profile = refresh_profile_tables if refresh else (lambda _s: {"skipped": "refreshed later"})
    if kind == "customers":
        frame, report = read_customers(path, customer_mapping(mapping))
        return {
            "kind": kind,
            **report,
            **load_customers(where, frame, path),
            "profile": refresh_profile(s),
        }
    if kind == "products":
        return {"kind": kind, **import_products(path, mapping, s)}
    if kind == "campaigns":
        campaigns, members, report = read_campaigns(path, campaign_mapping(mapping))
        loaded = load_campaigns(where, campaigns, members, path)
        return {"kind": kind, **report, **loaded, "profile": refresh_profile(s)}
    if kind == "coupons":
        return {"kind": kind, **import_coupons(path, mapping, s), "profile": refresh_profile(s)}
    if kind == "redemptions":
        frame, report = read_redemptions(
            path, redemption_mapping(mapping), known_users(where), known_campaigns(where)
        )
        loaded = load_redemptions(where, frame, path)
        return {"kind": kind, **report, **loaded, "profile": refresh_profile(s)}
    raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")


def import_coupons(path: Path, mapping: str, s: Settings) -> dict[str, Any]:
    """Which products each campaign's coupons are for: read and check the export (named errors; exact
    repeats dropped and counted), run the batch's checks before loading; a failed batch goes to
    quarantine (DataQualityError, raw.coupons unchanged), a good one into raw.coupons (re-runs replace
    the same rows). Campaign ids are checked against raw.campaigns, products against raw.products, when
    those are loaded (load campaigns and the catalogue first)."""
    from personaflow.ingest.campaigns import coupon_mapping, load_coupons, read_coupons, stamp
    from personaflow.pipeline._common import write_json
    from personaflow.quality.coupons import check_coupons, quarantine_coupons
    from personaflow.quality.validate import DataQualityError

    where = wh.location(s)
    frame, report = read_coupons(path, coupon_mapping(mapping), known_campaigns(where))
    rows = stamp(frame, path)
    result = check_coupons(rows, known_products(where))
    report["checks"] = {"success": result.success, "expectations": result.n_expectations,
                        "failures": [f.describe() for f in result.failures]}  # fmt: skip
    batch_id = str(rows["batch_id"].iloc[0]) if len(rows) else "coupons-empty"
    write_json(s.reports_dir / "quality" / f"coupons_{batch_id}.json", report)
    if not result.success:
        folder = quarantine_coupons(where, rows, s.quarantine_dir, result) if len(rows) else None
        raise DataQualityError(
            f"coupons batch {batch_id} quarantined ({folder}): {'; '.join(report['checks']['failures'])}",
            result,
            quarantine_path=folder,
        )
    return {**report, **load_coupons(where, rows)}


def known_products(warehouse: Any) -> set[str] | None:
    """The catalogue's product ids (None: no catalogue loaded, so nothing to check against)."""
    if not wh.exists(warehouse):
        return None
    with wh.connect(warehouse, read_only=True) as con:
        if not con.table_exists("raw.products"):
            return None
        return {str(i) for (i,) in con.execute("select distinct item_id from raw.products").fetchall()}


def import_products(path: Path, mapping: str, s: Settings) -> dict[str, Any]:
    """The catalogue: read and check the export (named errors), drop nothing silently, run the batch's
    checks before loading; a failed batch goes to quarantine (DataQualityError, raw.products unchanged),
    a good one into raw.products (re-runs replace the same versions)."""
    from personaflow.ingest.products import load_products, product_mapping, read_products, stamp
    from personaflow.pipeline._common import write_json
    from personaflow.quality.products import check_products, quarantine_products
    from personaflow.quality.validate import DataQualityError

    spec = product_mapping(mapping)
    frame, report = read_products(path, spec)
    rows = stamp(frame, path)
    result = check_products(rows, with_category="category" in spec.columns)
    report["checks"] = {"success": result.success, "expectations": result.n_expectations,
                        "failures": [f.describe() for f in result.failures],
                        "notices": [f.describe() for f in result.notices]}  # fmt: skip
    batch_id = str(rows["batch_id"].iloc[0]) if len(rows) else f"{spec.name}-empty"
    write_json(s.reports_dir / "quality" / f"products_{batch_id}.json", report)
    if not result.success:
        folder = quarantine_products(wh.location(s), rows, s.quarantine_dir, result) if len(rows) else None
        raise DataQualityError(
            f"products batch {batch_id} quarantined ({folder}): {'; '.join(report['checks']['failures'])}",
            result,
            quarantine_path=folder,
        )
    return {**report, **load_products(wh.location(s), rows)}


DEMOGRAPHICS_FILE = "customer_demographics.parquet"
CAMPAIGNS_FILE = "customer_campaigns.parquet"
DAILY_SQL = """
    select user_id, date_trunc('day', event_ts) as day,
        sum(coalesce(quantity, 1) * coalesce(price, 0)) as revenue,
        count(distinct coalesce(order_id, cast(event_ts as varchar))) as baskets
    from raw.events where event_type = 'purchase' group by 1, 2
"""


# What each redemption was spent on: the customer's purchases on their redemption days (a semi-join,
# O(those lines)), and the catalogue's department of each product (its latest version).
REDEMPTION_DAY_SQL = """
    select e.user_id, date_trunc('day', e.event_ts) as day, e.item_id from raw.events e
    where e.event_type = 'purchase' and exists (
        select 1 from raw.redemptions r
        where r.user_id = e.user_id and date_trunc('day', r.redemption_date) = date_trunc('day', e.event_ts))
"""
DEPARTMENT_SQL = """
    select distinct on (item_id) item_id, coalesce(department, category) as department
    from raw.products order by item_id, valid_from desc
"""
# Spend on each campaign's own coupon products per customer and day, from PRE_DAYS before its start to
# its end (profiles/campaigns.py coupon_spend, in SQL): O(campaign-customer-days on those products). The
# window is a condition of the join itself, so lines outside every window of their product are never
# paired (joining on the product first and filtering after held 1.6 GB on The Complete Journey; this
# 0.36 GB, 1.1 s).
COUPON_SPEND_SQL = f"""
    with own as (
        select distinct o.campaign_id, o.item_id,
            date_trunc('day', c.start_date) - interval '{PRE_DAYS} days' as lo,
            date_trunc('day', c.end_date) + interval '1 day' as hi
        from raw.coupons o join raw.campaigns c on c.campaign_id = o.campaign_id
    ), lines as (
        select own.campaign_id, e.user_id, date_trunc('day', e.event_ts) as day,
            coalesce(e.quantity, 1) * coalesce(e.price, 0) as revenue,
            coalesce(e.order_id, cast(e.event_ts as varchar)) as basket
        from raw.events e
        join own on own.item_id = e.item_id and e.event_ts >= own.lo and e.event_ts < own.hi
        where e.event_type = 'purchase'
    )
    select campaign_id, user_id, day, sum(revenue) as revenue, count(distinct basket) as baskets
    from lines group by 1, 2, 3
"""


def _read(con: Any, sql: str) -> pd.DataFrame | None:
    table = sql.split(" from ")[1].split()[0]
    return con.execute(sql).df() if con.table_exists(table) else None


def refresh_profile_tables(s: Settings, as_of: date | None = None) -> dict[str, Any]:
    """The profile's demographics and campaign fields as of `as_of` (default: the last purchase day), for
    every customer with events, into features_dir (read by /profile and the audiences):
    - customer_demographics.parquet: bands and label, point in time ("unknown" where none);
    - customer_campaigns.parquet: campaign history, the redemption score for the next campaign of the
      latest campaign's type (model trained on campaigns ended by `as_of`), reached by a campaign
      running at `as_of`.
    Memory: O(customer-days) for the spend, O(customers) for the outputs."""
    where = wh.location(s)
    if not wh.exists(where):
        return {"skipped": "no warehouse"}
    with wh.connect(where, read_only=True) as con:
        customers = _read(con, "select * from raw.customers")
        campaigns = _read(con, "select campaign_id, campaign_type, start_date, end_date from raw.campaigns")
        if customers is None and campaigns is None:  # a shop without these tables: its profile has none
            return {"skipped": "no customer or campaign tables"}
        daily = _read(con, DAILY_SQL)
        members = _read(con, "select campaign_id, user_id from raw.campaign_members")
        redemptions = _read(
            con, "select user_id, campaign_id, redemption_date, coupon_id from raw.redemptions"
        )
        coupons = _read(con, "select distinct campaign_id, coupon_id, item_id from raw.coupons")
        coupon_tables = _coupon_tables(con, coupons, redemptions)
    if daily is None or daily.empty:
        return {"skipped": "no purchases loaded"}
    daily = daily.astype({"user_id": str}).assign(day=lambda f: pd.to_datetime(f["day"]))
    when = pd.Timestamp(as_of) if as_of else daily["day"].max()
    users = sorted(daily["user_id"].unique())
    s.features_dir.mkdir(parents=True, exist_ok=True)
    demo = for_customers(users, customers, when + pd.Timedelta(days=1) - pd.Timedelta(seconds=1))
    _write(demo.assign(as_of_date=when.date()), s.features_dir / DEMOGRAPHICS_FILE)
    out: dict[str, Any] = {
        "as_of": str(when.date()),
        "customers": len(users),
        "with_demographics": int((demo["demographic_label"] != "unknown").sum()),
    }
    if campaigns is None or members is None or campaigns.empty:
        return out
    redemptions = (
        redemptions
        if redemptions is not None
        else pd.DataFrame(columns=["user_id", "campaign_id", "redemption_date", "coupon_id"])
    )
    history = campaign_history(campaigns, members, redemptions, when)
    frame = pd.DataFrame({"user_id": users}).merge(history, on="user_id", how="left")
    frame = frame.fillna({"campaigns_reached": 0, "campaigns_redeemed": 0, "coupons_redeemed": 0})
    running = campaigns[
        (pd.to_datetime(campaigns["start_date"]) <= when) & (pd.to_datetime(campaigns["end_date"]) >= when)
    ]["campaign_id"].astype(str)
    reached_now = set(
        members.loc[members["campaign_id"].astype(str).isin(set(running)), "user_id"].astype(str)
    )
    frame["reached_by_running_campaign"] = frame["user_id"].isin(reached_now)
    if coupon_tables is not None:
        spent = redeemed_on(redemptions, coupons, coupon_tables["bought"], coupon_tables["departments"])
        frame = frame.merge(coupon_profile(spent, when), on="user_id", how="left")
        out["redemptions_matched_to_purchases"] = int(spent["matched"].sum())
    for column in ("coupon_departments", "coupon_products"):  # a list per customer, empty if none
        values = frame[column] if column in frame else pd.Series([None] * len(frame), index=frame.index)
        frame[column] = values.map(lambda v: list(v) if isinstance(v, list | np.ndarray) else [])
    frame["redeem_score"], frame["redeem_score_campaign_type"] = float("nan"), None
    ended = campaigns[pd.to_datetime(campaigns["end_date"]) < when]["campaign_id"].astype(str).tolist()
    rows = response_rows(daily, campaigns, members, redemptions, customers, ended) if ended else None
    if rows is not None and rows["redeemed"].nunique() == 2:
        latest = campaigns.sort_values("start_date").iloc[-1]
        nxt = pd.Series(
            {
                "campaign_id": "next",
                "campaign_type": latest["campaign_type"],
                "start_date": when + pd.Timedelta(days=1),
                "end_date": when + pd.Timedelta(days=1),
            }
        )
        feats = response_features(daily, nxt, users, campaigns, members, redemptions, customers)
        scores = score(fit_response_model(rows), feats)
        frame["redeem_score"] = frame["user_id"].map(scores)
        frame["redeem_score_campaign_type"] = latest["campaign_type"]
        out["redeem_model_rows"] = len(rows)
    _write(frame.assign(as_of_date=when.date()), s.features_dir / CAMPAIGNS_FILE)
    out["reached_by_running_campaign"] = len(reached_now & set(users))
    out["response_report"] = str(
        _write_response(s, daily, campaigns, members, redemptions, demo, when, coupons, coupon_tables)
    )
    return out


def _coupon_tables(con: Any, coupons: pd.DataFrame | None, redemptions: pd.DataFrame | None) -> dict | None:
    """The frames the coupon fields need (None for a shop without coupons or redemptions): purchases on
    redemption days, the catalogue's departments (empty without a catalogue), coupon-product spend."""
    if coupons is None or coupons.empty or redemptions is None or not con.table_exists("raw.events"):
        return None
    departments = (
        con.execute(DEPARTMENT_SQL).df() if con.table_exists("raw.products") else pd.DataFrame(
            columns=["item_id", "department"])
    )
    spend = con.execute(COUPON_SPEND_SQL).df() if con.table_exists("raw.campaigns") else None
    return {
        "bought": con.execute(REDEMPTION_DAY_SQL).df(),
        "departments": departments.astype({"item_id": str}).set_index("item_id")["department"],
        "spend": spend.astype({"user_id": str, "campaign_id": str}).assign(
            day=lambda f: pd.to_datetime(f["day"])) if spend is not None else None,
    }  # fmt: skip


def _write_response(s: Settings, daily: pd.DataFrame, campaigns: pd.DataFrame, members: pd.DataFrame,
                    redemptions: pd.DataFrame, demo: pd.DataFrame, when: pd.Timestamp,
                    coupons: pd.DataFrame | None = None,
                    coupon_tables: dict | None = None) -> Path:  # fmt: skip
    """The per-campaign response table (campaigns started by `when`, data up to `when`) as JSON for the
    nightly report's campaign section: reports_dir/campaigns/response.json. With coupons: what each
    campaign promoted and the comparison on its own coupon products beside the one on all products."""
    started = campaigns[pd.to_datetime(campaigns["start_date"]) <= when]
    seen = daily[daily["day"] <= when]
    redeemed = redemptions[pd.to_datetime(redemptions["redemption_date"]) <= when]
    known = set(demo.loc[demo["demographic_label"] != "unknown", "user_id"])
    spend = coupon_tables["spend"] if coupon_tables is not None else None
    if spend is not None:
        spend = spend[spend["day"] <= when]
    table = campaign_response(seen, started, members, redeemed, known, coupon_daily=spend)
    if coupons is not None and coupon_tables is not None and len(table):
        table = table.merge(promoted(coupons, coupon_tables["departments"]), on="campaign_id", how="left")
    rows = []
    if len(table):
        for column in ("start_date", "end_date"):
            table[column] = table[column].astype(str).str[:10]
        rows = json.loads(table.to_json(orient="records"))  # NaN (no comparison) -> null
    path = s.reports_dir / "campaigns" / "response.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"as_of": str(when.date()), "comparison": COMPARISON,
                    "coupon_comparison": COUPON_COMPARISON if spend is not None else None,
                    "campaigns": rows}, indent=1)  # fmt: skip
    )
    return path


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
