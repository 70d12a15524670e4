"""The features stage: dbt marts -> Parquet snapshots -> Feast registry, online store and training set.

Feast is driven through its Python API inside one process (each `feast` CLI call costs 11-15 s of
imports). Only the interval since the last materialization is loaded into the online store.

The marts are read from whichever warehouse the run uses (`personaflow.core.warehouse`: the DuckDB file or
PostgreSQL). Feast's offline store stays the Parquet snapshots exported here on both: they are what
point-in-time joins and materialization read, the same files whatever engine built the marts, so the
Feast repo does not change with the warehouse (its postgres offline store would add a second set of
definitions and push the as-of snapshots into SQL tables for no gain at this size).
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.feature_store import (
    PROFILE_SOURCES,
    USER_COLUMNS,
    day_end,
    load_definitions,
    open_store,
)
from personaflow.core.settings import Settings
from personaflow.core.warehouse import location
from personaflow.serving.tables import export_serving_tables, write_atomic

ITEM_COLUMNS = [
    "item_id",
    "category",
    "brand",
    "price",
    "n_views",
    "n_purchases",
    "n_buyers",
    "popularity_rank",
    "description",
    "is_product",
]
# Columns a mart built before they existed may lack: NULL in the snapshot, not an error.
OPTIONAL_COLUMNS = {"description": None, "is_product": True}
# Most recent purchases kept per user in the `user_purchases` view (what /recommend can exclude).
MAX_PURCHASED_ITEMS = 500
# Users and items both count views and purchases; Feast needs feature names unique across a service.
ITEM_RENAMES = {"n_views": "item_n_views", "n_purchases": "item_n_purchases", "n_buyers": "item_n_buyers"}


def snapshot(frame: pd.DataFrame, columns: list[str], as_of: date, loaded_at: datetime) -> pd.DataFrame:
    """Stamp a mart's rows as the feature values valid from the end of `as_of`."""
    frame = frame.assign(**{c: v for c, v in OPTIONAL_COLUMNS.items() if c in columns and c not in frame})
    out = frame[columns].copy()
    if "last_event_ts" in out:
        out["last_event_ts"] = out["last_event_ts"].astype(str)
    # Feast compares timestamps across frames: keep every one tz-aware UTC at ns precision.
    out["feature_ts"] = pd.Timestamp(day_end(as_of), tz="UTC")
    out["created_ts"] = pd.Timestamp(loaded_at).tz_localize("UTC")
    return out


def append_snapshot(path: Path, snap: pd.DataFrame) -> int:
    """Add one as-of snapshot to the Parquet history, replacing an earlier export of the same day."""
    if path.exists():
        old = pd.read_parquet(path)
        old = old[old["feature_ts"] != snap["feature_ts"].iloc[0]]
        if len(old):  # an empty placeholder (ensure_profile_sources) adds nothing
            snap = pd.concat([old, snap], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    snap.to_parquet(tmp, index=False)
    tmp.replace(path)  # readers never see a half-written file
    return len(snap)


def purchased_items(purchases: pd.DataFrame, as_of: date, loaded_at: datetime) -> pd.DataFrame:
    """One row per buyer: the distinct items bought, most recent first (capped), stamped like a snapshot."""
    latest = purchases.sort_values("event_timestamp", ascending=False).drop_duplicates(["user_id", "item_id"])
    lists = latest.groupby("user_id", sort=True)["item_id"].agg(lambda s: list(s[:MAX_PURCHASED_ITEMS]))
    out = lists.rename("purchased_items").reset_index()
    out["feature_ts"] = pd.Timestamp(day_end(as_of), tz="UTC")
    out["created_ts"] = pd.Timestamp(loaded_at).tz_localize("UTC")
    return out


def ensure_live_source(features_dir: Path) -> None:
    """Feast wants the push source's batch file to exist; it stays empty (the landing JSONL is the record)."""
    path = features_dir / "user_live.parquet"
    if not path.exists():
        empty = pd.DataFrame(
            {
                "user_id": pd.Series(dtype="string"),
                "live_buckets": pd.Series(dtype="string"),
                "live_last_event_ts": pd.Series(dtype="string"),
                "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        empty.to_parquet(path, index=False)


def append_profile(features_dir: Path, view: str, frame: pd.DataFrame, as_of: date) -> int:
    """Stamp a profile stage's output (segments, churn scores) as of `as_of` and add it to the
    view's source; returns the rows in the file."""
    snap = snapshot(frame, list(PROFILE_SOURCES[view]), as_of, datetime.now())
    return append_snapshot(features_dir / f"{view}.parquet", snap)


def ensure_profile_sources(features_dir: Path) -> None:
    """Before the first segments/churn run (or while churn cannot train yet) the views' sources are
    empty typed files: Feast's apply and materialize need the file, and then load nothing."""
    stamps = {"feature_ts": "datetime64[ns, UTC]", "created_ts": "datetime64[ns, UTC]"}
    for view, dtypes in PROFILE_SOURCES.items():
        path = features_dir / f"{view}.parquet"
        if not path.exists():
            write_atomic(pd.DataFrame({c: pd.Series(dtype=d) for c, d in {**dtypes, **stamps}.items()}), path)


def read_marts(con: wh.DuckConnection | wh.PgConnection) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(marts.user_features, marts.item_features, the purchases as Feast's entity frame: user_id,
    item_id, event_timestamp tz-aware UTC), from either engine."""
    users = con.execute("select * from marts.user_features").df()
    items = con.execute("select * from marts.item_features").df()
    purchases = con.execute(
        "select user_id, item_id, last_event_ts as event_timestamp from marts.interactions "
        "where n_purchases > 0"
    ).df()
    purchases["event_timestamp"] = (
        pd.to_datetime(purchases["event_timestamp"]).astype("datetime64[ns]").dt.tz_localize("UTC")
    )
    return users, items, purchases


def build_features(
    warehouse: wh.Location, features_dir: Path, repo_dir: Path, as_of: date
) -> dict[str, object]:
    """Export the marts as of `as_of`, apply the Feast definitions, materialize the new interval and
    write a point-in-time correct training set (purchases joined with the features valid then)."""
    started = time.perf_counter()
    with wh.connect(warehouse, read_only=True) as con:
        users, items, purchases = read_marts(con)
        serving_tables = export_serving_tables(con, features_dir)
    now = datetime.now()
    user_rows = append_snapshot(
        features_dir / "user_features.parquet", snapshot(users, USER_COLUMNS, as_of, now)
    )
    item_rows = append_snapshot(
        features_dir / "item_features.parquet",
        snapshot(items, ITEM_COLUMNS, as_of, now).rename(columns=ITEM_RENAMES),
    )
    append_snapshot(features_dir / "user_purchases.parquet", purchased_items(purchases, as_of, now))
    ensure_live_source(features_dir)
    ensure_profile_sources(features_dir)

    store = open_store(repo_dir, features_dir)
    definitions = load_definitions(repo_dir)
    store.apply(definitions.DEFINITIONS)

    end = day_end(as_of)
    views = {fv.name: fv for fv in store.list_feature_views()}
    materialized = {}
    for name, view in views.items():
        if name in getattr(definitions, "PUSH_FED_VIEWS", ()):
            continue  # filled by POST /events through the push source, not from a batch file
        start = view.most_recent_end_time.replace(tzinfo=None) if view.most_recent_end_time else None
        start = min(start, end - timedelta(days=1)) if start else end - timedelta(days=1)
        store.materialize(start_date=start, end_date=end + timedelta(seconds=1), feature_views=[name])
        materialized[name] = f"{start.isoformat()} .. {end.isoformat()}"

    training = store.get_historical_features(
        entity_df=purchases, features=store.get_feature_service("recommender_features")
    ).to_df()
    training_path = features_dir / "training_set.parquet"
    training.to_parquet(training_path, index=False)
    return {
        "as_of": as_of.isoformat(),
        "user_snapshot_rows": int(len(users)),
        "item_snapshot_rows": int(len(items)),
        "user_history_rows": int(user_rows),
        "item_history_rows": int(item_rows),
        "materialized": materialized,
        "training_set_rows": int(len(training)),
        "training_rows_with_features": int(training["frequency"].notna().sum()),
        **serving_tables,
        "seconds": round(time.perf_counter() - started, 2),
    }


def features(as_of: date, s: Settings) -> dict[str, Any]:
    """Export marts to Feast, materialize the new interval, write the point-in-time training set."""
    return build_features(location(s), s.features_dir, s.feature_repo_dir, as_of)
