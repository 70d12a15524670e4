"""`personaflow export-customer USER_ID`: everything the platform holds about one customer, as JSON (the
right of access, GDPR art. 15, beside `personaflow forget`'s right to erasure).

It finds the customer the way `forget` does, **by column** (personaflow/core/ids.py: `user_id` and its
aliases, any written form of the id), so what it exports is exactly what `forget` would erase:
- the named sections a person asks about: `profile` (tonight's fields as /profile and the audiences read
  them), `events`, `reviews` (each as it came, with its score and complaints), `demographics` (every
  version with its date, and tonight's bands), `segment`, `scores` (churn, redemption), `audiences` (the
  saved audiences they are in), `campaigns` (reached, redeemed, tonight's summary);
- `warehouse`: their rows in every other warehouse table (marts, quarantine, staging tables);
- `files`: their rows in every other Parquet table under the home (Feast snapshots, audience members);
- `held_in`: every place forget's check finds them (landing day files, live logs, models, reports), so a
  copy that is not exported row by row is still named.
An id that no store holds is an error (`UnknownUser`, like forget's); so is a forgotten customer, whom
the platform no longer holds.

Memory: one customer's rows; each warehouse table is filtered in SQL, each Parquet file read by its
customer columns first, then only the matching rows.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.forgotten import Forgotten
from personaflow.core.ids import is_user_column, names_user, normal_user_id
from personaflow.core.settings import Settings
from personaflow.pipeline.forget import UnknownUser, _cells, _files, _sql_patterns, _tables, holding

# warehouse tables given their own section: (schema, table) -> section
NAMED_TABLES = {
    ("raw", "events"): "events",
    ("raw", "customers"): "demographics",
    ("raw", "campaign_members"): "campaigns",
    ("raw", "redemptions"): "campaigns",
    ("raw", "reviews"): "reviews",
    ("raw", "review_scores"): "reviews",
    ("raw", "review_complaints"): "reviews",
}
# tonight's per-customer files (features_dir) the profile sections are made of
PROFILE_FILES = {
    "segment": "user_segments.parquet",
    "churn": "churn_scores.parquet",
    "demographics": "customer_demographics.parquet",
    "campaigns": "customer_campaigns.parquet",
    "reviews": "customer_reviews.parquet",
}


def _plain(value: Any) -> Any:
    """A cell as a JSON value: NaN/NaT -> null, numpy scalars and arrays -> Python, times -> ISO text."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _warehouse_rows(s: Settings, user_id: str) -> dict[str, list[dict[str, Any]]]:
    """Their rows in every base table with a customer column: "schema.table" -> rows (as stored)."""
    where = wh.location(s)
    if not wh.exists(where):
        return {}
    whole = _sql_patterns(user_id)[0]
    postgres = wh.is_postgres(where)
    out: dict[str, list[dict[str, Any]]] = {}
    with wh.connect(where, read_only=True) as con:
        skip = "and c.table_schema not in ('pg_catalog', 'information_schema')" if postgres else ""
        for (schema, table), cols in sorted(_tables(con, skip).items()):
            users = [c for c, _ in cols if is_user_column(c)]
            if not users:
                continue
            test = " or ".join(  # every test reads the one pattern, $1
                f'cast("{c}" as varchar) ~ $1' if postgres else f'regexp_matches(cast("{c}" as varchar), $1)'
                for c in users
            )
            frame = con.execute(f'select * from "{schema}"."{table}" where {test}', [whole]).df()
            if len(frame):
                out[f"{schema}.{table}"] = _records(frame)
    return out


def _file_rows(s: Settings, user_id: str) -> dict[str, list[dict[str, Any]]]:
    """Their rows in every Parquet table under the home (by its customer columns): path -> rows."""
    import pyarrow.parquet as pq

    out: dict[str, list[dict[str, Any]]] = {}
    for path in _files(s):
        if path.suffix.lower() != ".parquet":
            continue
        try:
            users = [c for c in pq.read_schema(path).names if is_user_column(c)]
        except (OSError, ValueError):  # a file being replaced: the next export sees it
            continue
        if not users:
            continue
        keys = pd.read_parquet(path, columns=users)
        mine = np.zeros(len(keys), dtype=bool)
        for c in users:
            mine |= _cells(keys[c], user_id, names_user)
        if mine.any():
            out[str(path)] = _records(pd.read_parquet(path)[mine].reset_index(drop=True))
    return out


def _one(rows: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return rows[-1] if rows else None


def export_customer(user_id: str, s: Settings) -> dict[str, Any]:
    """Everything held about `user_id` (any written form), as JSON-ready types; see the module doc."""
    user_id = normal_user_id(user_id)
    if not user_id:
        raise ValueError("export-customer: USER_ID is empty")
    if user_id in Forgotten(s):
        raise UnknownUser(
            f"export-customer: user_id {user_id!r} was forgotten (personaflow forget); the platform holds "
            "nothing about them"
        )
    held = holding(user_id, s)
    if not held:
        raise UnknownUser(
            f"export-customer: no store holds user_id {user_id!r} (landing, live logs, warehouse, Feast, "
            "models); nothing to export. Check the id"
        )
    tables = _warehouse_rows(s, user_id)
    files = _file_rows(s, user_id)
    features = {p: files.pop(str(s.features_dir / name), None) for p, name in PROFILE_FILES.items()}
    audiences = sorted(
        Path(p).stem for p in list(files) if Path(p).parent.name == "members" and "audiences" in Path(p).parts
    )
    named: dict[str, dict[str, list]] = {}
    for (schema, table), section in NAMED_TABLES.items():
        rows = tables.pop(f"{schema}.{table}", None)
        if rows is not None:
            named.setdefault(section, {})[table] = rows
    from personaflow.pipeline.reviews import reviews_of

    user_features = tables.get("marts.user_features")
    return {
        "user_id": user_id,
        "exported_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "profile": {
            "features": _one(user_features),
            "segment": _one(features["segment"]),
            "churn": _one(features["churn"]),
            "demographics": _one(features["demographics"]),
            "campaigns": _one(features["campaigns"]),
            "reviews": _one(features["reviews"]),
        },
        "events": named.get("events", {}).get("events", []),
        "reviews": _plain(reviews_of(user_id, s)),
        "demographics": {
            "versions": named.get("demographics", {}).get("customers", []),
            "as_of_tonight": _one(features["demographics"]),
        },
        "segment": _one(features["segment"]),
        "scores": {
            "churn": _one(features["churn"]),
            "redeem_score": (_one(features["campaigns"]) or {}).get("redeem_score"),
        },
        "audiences": audiences,
        "campaigns": {
            "reached": named.get("campaigns", {}).get("campaign_members", []),
            "redemptions": named.get("campaigns", {}).get("redemptions", []),
            "summary": _one(features["campaigns"]),
        },
        "warehouse": tables,
        "files": files,
        "held_in": held,
    }


def write_export(result: dict[str, Any], path: Path) -> Path:
    """The export as one JSON file, readable by its owner only (it is their personal data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
