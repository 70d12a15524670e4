"""The serving side of Feast: one FeatureStore per process, profile reads and live-event writes.

Live activity is kept as per-UTC-day buckets. A bucket counts only while its day is after the nightly
features' as-of day; once the nightly run has loaded that day, the same events are inside
`user_profile` and the bucket is dropped at the next write (and ignored on reads).

With Redis (PERSONAFLOW_REDIS_URL) Feast's online store is Redis and the buckets are Redis hashes
changed by one atomic script (personaflow/serving/live_counters.py): any number of workers count every event.
Embedded default (SQLite): the buckets are JSON in the `user_live` view, read-modify-write under this
process's lock, so exact with one worker only (the service refuses more without Redis).

SQLite's buckets are written in groups, one commit per group commit of the landing file
(personaflow/serving/live_buckets.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core import settings
from personaflow.core.feature_store import USER_COLUMNS, open_store
from personaflow.serving.live_buckets import record_many
from personaflow.serving.live_counters import RedisCounters, connect, connect_async

PROFILE_REFS = [f"user_profile:{name}" for name in USER_COLUMNS[1:]]
USER_REFS = [
    *PROFILE_REFS,
    "user_purchases:purchased_items",
    "user_live:live_buckets",
    "user_live:live_last_event_ts",
    # the nightly segments and churn stages (absent for users they did not cover, or before they ran)
    "user_segment:segment_id",
    "user_segment:segment_label",
    "user_segment:persona_id",
    "user_segment:persona",
    "user_churn:churn_score",
]
COUNTERS = ("n_views", "n_carts", "n_purchases", "n_returns")
# Churn risk from the churn model's probability of no order within the horizon. Logistic regression's
# probabilities are close to calibrated (the churn report's calibration table checks it), so the cuts
# read as "more likely than not, give or take" (high) and "a real chance" (medium).
CHURN_HIGH, CHURN_MEDIUM = 0.6, 0.3
REFRESH_SECONDS = 30.0


def load_catalogue(features_dir: Path) -> pd.DataFrame:
    """The latest item snapshot (item_id index; category, price, name), or an empty frame before any
    run. A shop's missing values are None, never NaN: answers carry them as null."""
    path = Path(features_dir) / "item_features.parquet"
    columns = ["category", "price", "name"]
    if not path.exists():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="item_id"))
    frame = pd.read_parquet(path)
    latest = frame.sort_values("feature_ts").drop_duplicates("item_id", keep="last").set_index("item_id")
    if "description" not in latest:  # snapshots from before item names were kept
        latest["description"] = None
    out = latest.rename(columns={"description": "name"})[columns].astype({"category": object, "name": object})
    return out.where(out.notna(), None)


def load_co_purchase(features_dir: Path) -> dict[str, list[tuple[str, float, int]]]:
    """item_id -> [(other_item_id, lift, n_orders_both)] best lift first, from the features stage's
    export of marts.co_purchase; empty before a run that had the mart."""
    path = Path(features_dir) / "co_purchase.parquet"
    if not path.exists():
        return {}
    frame = pd.read_parquet(path, columns=["item_id", "other_item_id", "lift", "n_orders_both"])
    frame = frame.sort_values(["item_id", "lift", "other_item_id"], ascending=[True, False, True])
    out: dict[str, list[tuple[str, float, int]]] = {}
    for item, other, lift, n_both in frame.itertuples(index=False, name=None):
        out.setdefault(item, []).append((other, float(lift), int(n_both)))
    return out


def load_text_neighbours(features_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """item_id -> [(other_item_id, cosine)] nearest names first (personaflow/serving/item_text.py, written by
    the features stage); empty before a run that had item names."""
    path = Path(features_dir) / "text_neighbours.parquet"
    if not path.exists():
        return {}
    frame = pd.read_parquet(path, columns=["item_id", "other_item_id", "cosine"])
    frame = frame.sort_values(["item_id", "cosine", "other_item_id"], ascending=[True, False, True])
    out: dict[str, list[tuple[str, float]]] = {}
    for item, other, cosine in frame.itertuples(index=False, name=None):
        out.setdefault(item, []).append((other, float(cosine)))
    return out


def load_segment_popularity(features_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """rfm_segment -> [(item_id, buyers in the segment)] most bought first (features stage export)."""
    path = Path(features_dir) / "segment_popularity.parquet"
    if not path.exists():
        return {}
    frame = pd.read_parquet(path, columns=["rfm_segment", "item_id", "n_buyers"])
    out: dict[str, list[tuple[str, float]]] = {}
    for segment, item, n_buyers in frame.itertuples(index=False, name=None):  # written in rank order
        out.setdefault(segment, []).append((item, float(n_buyers)))
    return out


def live_totals(buckets: dict[str, dict], as_of: date | None) -> dict[str, Any]:
    """Sum the buckets of days the nightly features do not include yet."""
    total: dict[str, Any] = {c: 0 for c in COUNTERS} | {"revenue": 0.0, "n_events": 0, "purchased": []}
    for day, bucket in sorted(buckets.items()):
        if as_of is not None and date.fromisoformat(day) <= as_of:
            continue
        for key in (*COUNTERS, "n_events"):
            total[key] += int(bucket.get(key, 0))
        total["revenue"] += float(bucket.get("revenue", 0.0))
        total["purchased"] += list(bucket.get("purchased", []))
    return total


class OnlineFeatures:
    def __init__(self, repo_dir: Path, features_dir: Path, redis_url: str | None = None) -> None:
        redis_url = settings.load().redis_url if redis_url is None else redis_url
        self.store = open_store(Path(repo_dir), Path(features_dir), redis_url)
        # Redis: live counters beside Feast's keys, shared by every worker; None: the user_live view.
        self.counters = RedisCounters(connect(redis_url), connect_async(redis_url)) if redis_url else None
        self._refs = USER_REFS if self.counters is None else [r for r in USER_REFS if "user_live:" not in r]
        self._lock = threading.Lock()  # one sqlite connection is shared by the event loop and a thread
        self._refreshed = 0.0
        self._as_of: date | None = None
        self._live_view = None
        self._pending: list[tuple[tuple[str, date, dict], asyncio.Future]] = []  # SQLite: next group
        if self.counters is None:
            self._sqlite_without_fsync()

    def _sqlite_without_fsync(self) -> None:
        """WAL with synchronous=NORMAL on the server's SQLite connection: a live write commits without
        an fsync (a rollback-journal commit fsynced 3 times, ~20 ms here, and capped /events at ~45/s).
        The counters are derived data: the landing file, fsynced by group commit, is the record; a power
        cut can lose the last counts until the nightly run, never an accepted event."""
        conn = self.store._get_provider().online_store._get_conn(self.store.config)
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=normal")

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed < REFRESH_SECONDS:
            return
        self._refreshed = now
        try:
            end = self.store.get_feature_view("user_profile").most_recent_end_time
            # Materialization ends one second after day_end(as_of), i.e. at midnight after as_of.
            self._as_of = (end - timedelta(seconds=2)).date() if end else None
        except Exception:  # no features built yet: every user is unknown, live events still count
            self._as_of = None
        try:
            self._live_view = self.store.get_feature_view("user_live")
        except Exception:
            self._live_view = None

    def as_of(self) -> date | None:
        with self._lock:
            self._refresh()
            return self._as_of

    def user(self, user_id: str) -> dict[str, Any]:
        """All online features of one user (values None where the store has nothing)."""
        with self._lock:
            self._refresh()
            rows = self.store.get_online_features(features=self._refs, entity_rows=[{"user_id": user_id}])
            if self.counters is not None:
                return _user_row(rows.to_dict(), *self.counters.read(user_id), self._as_of)
            row = rows.to_dict()
            return _user_row(row, json.loads(row["live_buckets"][0] or "{}"), None, self._as_of)

    async def user_async(self, user_id: str) -> dict[str, Any]:
        """`user()` without blocking the event loop on Redis: Feast's async read and the live hash at
        once, so a worker keeps serving while they travel (a managed Redis is ~0.5 ms away). SQLite
        answers in-process: read synchronously."""
        if self.counters is None:
            return self.user(user_id)
        with self._lock:
            self._refresh()
            as_of = self._as_of
        rows, (buckets, last) = await asyncio.gather(
            self.store.get_online_features_async(features=self._refs, entity_rows=[{"user_id": user_id}]),
            self.counters.read_async(user_id),
        )
        return _user_row(rows.to_dict(), buckets, last, as_of)

    async def record_async(self, user_id: str, day: date, event: dict[str, Any]) -> int:
        """`record()`, awaiting Redis instead of blocking on it."""
        if self.counters is None:
            return await self._record_grouped(user_id, day, event)
        with self._lock:
            self._refresh()
            as_of = self._as_of
        return await self.counters.record_async(user_id, day, event, as_of)

    def purchased(self, user_id: str) -> set[str]:
        return purchased_in(self.user(user_id))

    def record(self, user_id: str, day: date, event: dict[str, Any]) -> int:
        """Add one event to the user's live bucket for `day`; returns the live events now counted."""
        if self.counters is not None:
            with self._lock:
                self._refresh()
                as_of = self._as_of
            return self.counters.record(user_id, day, event, as_of)  # atomic in Redis: no lock
        return self._record_sqlite([(user_id, day, event)])[0]

    def _record_sqlite(self, events: list[tuple[str, date, dict]]) -> list[int]:
        with self._lock:
            self._refresh()
            if self._live_view is None:
                raise RuntimeError("the online store has no user_live view: run the features stage first")
            return record_many(self.store, self._live_view, events, self._as_of)

    async def _record_grouped(self, user_id: str, day: date, event: dict[str, Any]) -> int:
        """SQLite: the events that reach this point in one turn of the event loop (those a group commit
        just made durable) are counted by one read and one commit (`_flush`, scheduled after them)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append(((user_id, day, event), done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        group, self._pending = self._pending, []
        try:
            counts = self._record_sqlite([event for event, _ in group])
        except Exception as exc:  # every request of the group hears it (the events are on disk)
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), n in zip(group, counts, strict=True):
            if not done.done():
                done.set_result(n)


def _user_row(
    rows: dict[str, list], buckets: dict[str, dict], live_last: str | None, as_of: date | None
) -> dict[str, Any]:
    row = {k: v[0] for k, v in rows.items()}
    if live_last is not None or "live_last_event_ts" not in row:  # Redis: the hash holds it
        row["live_last_event_ts"] = live_last
    row["live"] = live_totals(buckets, as_of)
    row["as_of"] = as_of
    return row


def purchased_in(row: dict[str, Any]) -> set[str]:
    """Items a user row from OnlineFeatures.user() bought: nightly history plus live purchases."""
    return set(row.get("purchased_items") or []) | set(row["live"]["purchased"])


def churn_risk(
    churn_score: float | None, r_score: int | None, live_events: int
) -> tuple[str | None, str | None]:
    """(risk, basis): live activity since the nightly run -> low ("live"); else the churn model's score
    (high >= CHURN_HIGH, medium >= CHURN_MEDIUM, "model"); else the recency-score rule (r_score 1-2
    high, 3 medium, 4-5 low, "rule") for users the model did not score; (None, None) with neither."""
    if live_events:
        return "low", "live"
    if churn_score is not None:
        risk = "high" if churn_score >= CHURN_HIGH else "medium" if churn_score >= CHURN_MEDIUM else "low"
        return risk, "model"
    if r_score is not None:
        return ("high" if r_score <= 2 else "medium" if r_score == 3 else "low"), "rule"
    return None, None


def favourite_categories(items: list[str], categories: Mapping[str, str | None], n: int = 3) -> list[str]:
    """Up to n categories the items fall in most, from item_id -> category (Ranker.category_by_item)."""
    # a shop without categories (or an item without one) adds nothing, never a null entry
    counts = Counter(c for c in map(categories.get, items) if isinstance(c, str) and c)
    return [c for c, _ in counts.most_common(n)]
