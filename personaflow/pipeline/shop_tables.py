"""The customers, campaigns and redemptions imports as a stage: Settings -> the warehouse, then the
pure readers (personaflow/ingest/customers.py, personaflow/ingest/campaigns.py) and their loads.

A redemption is checked against the customers the warehouse has events of and the campaigns loaded
before it, when those exist (load events and campaigns first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

KINDS = ("customers", "campaigns", "redemptions")


def import_table(kind: str, path: Path, mapping: str, s: Settings) -> dict[str, Any]:
    """`personaflow ingest PATH --kind customers|campaigns|redemptions --mapping M`: read, check, load."""
    where = wh.location(s)
    path = Path(path)
    if kind == "customers":
        frame, report = read_customers(path, customer_mapping(mapping))
        return {"kind": kind, **report, **load_customers(where, frame, path)}
    if kind == "campaigns":
        campaigns, members, report = read_campaigns(path, campaign_mapping(mapping))
        return {"kind": kind, **report, **load_campaigns(where, campaigns, members, path)}
    if kind == "redemptions":
        frame, report = read_redemptions(
            path, redemption_mapping(mapping), known_users(where), known_campaigns(where)
        )
        return {"kind": kind, **report, **load_redemptions(where, frame, path)}
    raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
