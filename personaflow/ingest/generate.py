"""A deterministic synthetic shop: users, items and daily batches of view -> cart -> purchase events.

Everything is drawn with numpy in whole arrays (no per-event Python loop), so a million events take a
few seconds. What makes the data worth learning from:
- long-tail item popularity (Zipf over a shuffled catalogue);
- per-user category taste (a sparse Dirichlet), so collaborative filtering has structure to find;
- a handful of personal favourite items per user, re-viewed and re-bought (repeat purchases);
- users who churn: a share of users stops having sessions at a random date;
- optionally (`follow`, on by default in the no-re-buy shop) sequential structure: a fixed, seeded
  item -> successor map (one cycle through the catalogue, blind to category), and a later session
  of a user who bought A tends to end on A's successor, which only a model of order or
  co-occurrence can find.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from personaflow.core.landing import batch_path

CATEGORIES = (
    "home", "kitchen", "garden", "toys", "books", "beauty",
    "fashion", "shoes", "sports", "electronics", "stationery", "grocery",
)  # fmt: skip
COUNTRIES = ("UK", "DE", "FR", "NL", "ES", "IT", "US", "PL")
COUNTRY_WEIGHTS = (0.35, 0.15, 0.12, 0.08, 0.08, 0.08, 0.08, 0.06)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_WEIGHTS = (0.14, 0.30, 0.24, 0.16, 0.10, 0.06)
FOLLOW_NO_REBUY = 0.5  # `follow` when rebuy=False and follow is not given
FOLLOW_CART, FOLLOW_BUY = 0.7, 0.7  # a successor view's funnel: carted, then bought given carted


@dataclass(frozen=True)
class Shop:
    users: pd.DataFrame
    items: pd.DataFrame
    events: pd.DataFrame  # sorted by event_ts, in the raw contract's column order
    # (personaflow/ingest/load.py)


def _items(rng: np.random.Generator, n_items: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    cat_share = rng.dirichlet(np.full(len(CATEGORIES), 2.0))
    category = rng.choice(len(CATEGORIES), size=n_items, p=cat_share)
    brand = rng.integers(0, 8, size=n_items)
    base_price = np.exp(rng.normal(2.5, 0.4, size=len(CATEGORIES)))
    price = np.round(base_price[category] * np.exp(rng.normal(0, 0.5, size=n_items)), 2).clip(0.5)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1  # Zipf, then shuffled over the catalogue
    popularity = popularity[rng.permutation(n_items)]
    frame = pd.DataFrame(
        {
            "item_id": [f"i{i:05d}" for i in range(1, n_items + 1)],
            "category": np.array(CATEGORIES)[category],
            "brand": [f"{CATEGORIES[c]}-brand-{b}" for c, b in zip(category, brand, strict=True)],
            "price": price,
        }
    )
    return frame, category, popularity


def _users(rng: np.random.Generator, n_users: int, start: date, days: int) -> tuple[pd.DataFrame, np.ndarray]:
    # 70% signed up in the year before the log starts, 30% during it.
    before = rng.random(n_users) < 0.7
    offset = np.where(before, -rng.integers(1, 366, n_users), rng.integers(0, days, n_users))
    signup = np.datetime64(start) + offset.astype("timedelta64[D]")
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in range(1, n_users + 1)],
            "signup_date": pd.to_datetime(signup).date,
            "country": rng.choice(COUNTRIES, size=n_users, p=COUNTRY_WEIGHTS),
            "age_band": rng.choice(AGE_BANDS, size=n_users, p=AGE_WEIGHTS),
        }
    )
    return frame, np.maximum(offset, 0)


def _sample_items(rng, n, cat_of_event, category, popularity) -> np.ndarray:
    """Pick an item inside each event's category, proportional to item popularity."""
    out = np.empty(n, dtype=np.int64)
    for c in range(len(CATEGORIES)):
        mask = cat_of_event == c
        members = np.flatnonzero(category == c)
        if members.size == 0:  # an empty category: fall back to the whole catalogue
            members = np.arange(category.size)
        cum = np.cumsum(popularity[members])
        picks = np.searchsorted(cum, rng.random(mask.sum()) * cum[-1])
        out[mask] = members[np.minimum(picks, members.size - 1)]
    return out


def successors(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """item index -> its successor: one random cycle through the whole catalogue (never itself when
    there are two items or more; categories play no part)."""
    cycle = rng.permutation(n_items)
    out = np.empty(n_items, dtype=np.int64)
    out[cycle] = np.roll(cycle, -1)
    return out


def _follow(
    rng: np.random.Generator,
    follow: float,
    succ: np.ndarray,
    sessions: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_views: np.ndarray,
    v_item: np.ndarray,
    carted: np.ndarray,
    bought: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With probability `follow`, a session's last view becomes the successor (`succ`, see
    `successors`) of the user's latest purchase on an earlier day (then carted and bought more often);
    returns new (item, carted, bought).

    The anchors are the purchases drawn before this step, less the views about to be replaced, so every
    anchor stays a real purchase; a successor bought here does not anchor another one (no chains)."""
    s_user, s_day, s_start = sessions
    n_s = s_user.size
    v_session = np.repeat(np.arange(n_s), n_views)
    last_view = np.cumsum(n_views) - 1
    marked = rng.random(n_s) < follow
    source = bought.copy()
    source[last_view[marked]] = False
    last_pos = np.full(n_s, -1, dtype=np.int64)  # each session's last anchor (views are in time order)
    np.maximum.at(last_pos, v_session[source], np.flatnonzero(source))
    # Sessions in time order per user, grouped by (user, day): the anchor of a session is the latest
    # anchor of the user's previous active day (a running max of positions, read at each group's end).
    order = np.lexsort((s_start, s_day, s_user))
    has = np.where(last_pos[order] >= 0, np.arange(n_s), -1)
    running = np.maximum.accumulate(has) if n_s else has
    new_group = np.r_[True, (np.diff(s_user[order]) != 0) | (np.diff(s_day[order]) != 0)]
    group = np.cumsum(new_group) - 1
    group_end = np.r_[np.flatnonzero(new_group)[1:], n_s] - 1
    prev = np.where(group > 0, running[group_end[np.maximum(group - 1, 0)]], -1)
    ok = prev >= 0
    ok[ok] = s_user[order[prev[ok]]] == s_user[order[ok]]
    take = ok & marked[order]
    target = last_view[order[take]]
    anchor = v_item[last_pos[order[prev[take]]]]
    items, cart, buy = v_item.copy(), carted.copy(), bought.copy()
    items[target] = succ[anchor]
    cart[target] = rng.random(target.size) < FOLLOW_CART
    buy[target] = cart[target] & (rng.random(target.size) < FOLLOW_BUY)
    return items, cart, buy


# Users drawn together. A constant, never derived from the machine, so a seed gives the same shop
# everywhere; a shop of up to this many users is one chunk, drawn exactly as before chunks existed.
CHUNK_USERS = 50_000
# Temporary numeric event columns (per chunk, sorted by day) that `stream_shop` merges into day files.
_EVENT_KINDS = np.array(["view", "cart", "purchase"])


@dataclass(frozen=True)
class _Plan:
    """What every chunk shares: the catalogue, the users, the successor map, the generators' seeds."""

    seed: int
    start: date
    days: int
    sessions_per_day: float
    rebuy: bool
    follow: float
    item_frame: pd.DataFrame
    category: np.ndarray
    popularity: np.ndarray
    user_frame: pd.DataFrame
    first_day: np.ndarray
    rng: np.random.Generator  # chunk 0 goes on with the catalogue's generator (unchanged small shops)
    follow_rng: np.random.Generator | None
    succ: np.ndarray | None


def _plan(
    users: int, items: int, days: int, seed: int, start: date, sessions_per_day: float, rebuy: bool,
    follow: float | None,
) -> _Plan:  # fmt: skip
    follow = (0.0 if rebuy else FOLLOW_NO_REBUY) if follow is None else float(follow)
    if not 0.0 <= follow <= 1.0:
        raise ValueError(f"follow must be in [0, 1] (got {follow})")
    if users < 1 or items < 1 or days < 1:
        raise ValueError(f"users, items and days must be >= 1 (got {users}, {items}, {days})")
    rng = np.random.default_rng(seed)
    item_frame, category, popularity = _items(rng, items)
    user_frame, first_day = _users(rng, users, start, days)
    follow_rng = np.random.default_rng((seed, 1)) if follow > 0 else None
    succ = successors(follow_rng, items) if follow_rng is not None else None
    return _Plan(
        seed, start, days, sessions_per_day, rebuy, follow, item_frame, category, popularity, user_frame,
        first_day, rng, follow_rng, succ,
    )  # fmt: skip


def _chunk_events(plan: _Plan, chunk: int, lo: int, hi: int, session_base: int) -> pd.DataFrame:
    """The events of users [lo, hi) as numeric columns (user, item, session, kind, day, second,
    quantity), sorted by (day, second, user) like the whole shop. Memory: O(events of these users)."""
    if chunk == 0:
        rng, follow_rng = plan.rng, plan.follow_rng
    else:  # every later chunk has generators of its own: its draws do not depend on the chunks before
        rng = np.random.default_rng((plan.seed, 2, chunk))
        follow_rng = np.random.default_rng((plan.seed, 3, chunk)) if plan.follow > 0 else None
    users, days, category, popularity = hi - lo, plan.days, plan.category, plan.popularity
    first_day = plan.first_day[lo:hi]

    # Churn: 35% of users stop at a random day in the second half of their active window.
    churns = rng.random(users) < 0.35
    last_day = np.where(churns, first_day + (rng.random(users) * (days - first_day)).astype(int), days)
    activity = rng.lognormal(0.0, 0.8, users) * plan.sessions_per_day
    n_sessions = rng.poisson(activity * np.maximum(last_day - first_day, 0))
    s_user = np.repeat(np.arange(users), n_sessions)
    s_day = first_day[s_user] + (rng.random(s_user.size) * (last_day - first_day)[s_user]).astype(int)
    s_start = rng.integers(0, 86_400 - 3_600, s_user.size)  # seconds into the day

    # Views per session (1 + Poisson); then each view's item from favourites or from the user's taste.
    n_views = 1 + rng.poisson(2.5, s_user.size)
    v_session = np.repeat(np.arange(s_user.size), n_views)
    v_user = s_user[v_session]
    taste = rng.dirichlet(np.full(len(CATEGORIES), 0.3), size=users)
    cum_taste = np.cumsum(taste, axis=1)
    v_cat = (cum_taste[v_user] < rng.random(v_user.size)[:, None]).sum(axis=1).clip(max=len(CATEGORIES) - 1)
    v_item = _sample_items(rng, v_user.size, v_cat, category, popularity)
    favourites = _sample_items(
        rng,
        users * 5,
        (cum_taste.repeat(5, axis=0) < rng.random(users * 5)[:, None])
        .sum(axis=1)
        .clip(max=len(CATEGORIES) - 1),
        category,
        popularity,
    ).reshape(users, 5)
    is_fav = rng.random(v_user.size) < 0.35
    v_item = np.where(is_fav, favourites[v_user, rng.integers(0, 5, v_user.size)], v_item)

    # Funnel: favourites are carted and bought more often.
    carted = rng.random(v_user.size) < np.where(is_fav, 0.5, 0.2)
    bought = carted & (rng.random(v_user.size) < 0.6)
    if follow_rng is not None:
        sessions = (s_user, s_day, s_start)
        v_item, carted, bought = _follow(
            follow_rng, plan.follow, plan.succ, sessions, n_views, v_item, carted, bought
        )
    gaps = rng.exponential(60.0, v_user.size).astype(np.int64) + 5
    # Seconds since session start: cumulative gaps within each session.
    csum = np.cumsum(gaps)
    first_idx = np.cumsum(n_views) - n_views
    offset = csum - np.repeat(csum[first_idx] - gaps[first_idx], n_views)
    v_second = s_start[v_session] + offset

    quantity = 1 + rng.poisson(0.4, v_user.size)
    kinds = [(0, np.ones(v_user.size, bool), 0), (1, carted, 20), (2, bought, 60)]
    parts = []
    for kind, mask, lag in kinds:
        idx = np.flatnonzero(mask)
        parts.append(
            pd.DataFrame(
                {
                    "user": v_user[idx] + lo,
                    "item": v_item[idx],
                    "session": v_session[idx] + session_base,
                    "kind": np.full(idx.size, kind, dtype=np.int8),
                    "day": s_day[v_session[idx]],
                    "second": np.minimum(v_second[idx] + lag, 86_399),
                    "quantity": quantity[idx] if kind else np.ones(idx.size, dtype=np.int64),
                }
            )
        )
    ev = pd.concat(parts, ignore_index=True).sort_values(["day", "second", "user"], kind="stable")
    if not plan.rebuy:  # per user, so per chunk: a user's events all lie in one chunk
        again = (ev["kind"] == 2) & ev.duplicated(["user", "item", "kind"])
        ev = ev.loc[~again]
    return ev.reset_index(drop=True)


def _chunks(plan: _Plan, chunk_users: int) -> Iterator[pd.DataFrame]:
    """Every chunk's events in user order; session numbers run on across chunks."""
    n_users, session_base = len(plan.user_frame), 0
    for chunk, lo in enumerate(range(0, n_users, chunk_users)):
        ev = _chunk_events(plan, chunk, lo, min(lo + chunk_users, n_users), session_base)
        session_base = int(ev["session"].max()) + 1 if len(ev) else session_base
        yield ev


def _event_frame(plan: _Plan, ev: pd.DataFrame, first_id: int) -> pd.DataFrame:
    """Numeric events (sorted) as the raw contract's columns, ids numbered from `first_id`."""
    ts = (
        np.datetime64(plan.start, "s")
        + ev["day"].to_numpy().astype("timedelta64[D]")
        + ev["second"].to_numpy().astype("timedelta64[s]")
    )
    items = ev["item"].to_numpy()
    return pd.DataFrame(
        {
            "event_id": [f"e{i:09d}" for i in range(first_id, first_id + len(ev))],
            "user_id": plan.user_frame["user_id"].to_numpy()[ev["user"].to_numpy()],
            "item_id": plan.item_frame["item_id"].to_numpy()[items],
            "event_type": _EVENT_KINDS[ev["kind"].to_numpy()],
            "event_ts": ts,
            "session_id": [f"s{s:08d}" for s in ev["session"].to_numpy()],
            "quantity": ev["quantity"].to_numpy().astype(np.int64),
            "price": plan.item_frame["price"].to_numpy()[items],
        }
    )


def generate_shop(
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    seed: int = 42,
    start: date = date(2026, 9, 1),
    sessions_per_day: float = 0.15,
    rebuy: bool = True,
    follow: float | None = None,
    chunk_users: int = CHUNK_USERS,
) -> Shop:
    """Draw a whole shop in memory (about 0.5 KB per event: for tests and small shops; `stream_shop`
    writes a large one to disk instead). Same arguments, same shop: the users are drawn in chunks of
    `chunk_users`, the first from the catalogue's seeded generator, each later one from its own
    generator seeded (seed, 2, chunk), so a shop of up to CHUNK_USERS users is what it was before chunks.
    `rebuy=False`: a shop where nobody buys an item twice (only a user's first purchase of an item is
    kept; views and carts stay), for recommenders that must find new items rather than re-buys.
    `follow`: the share of sessions that end on the successor of the user's latest earlier purchase
    (see `_follow`); None means 0 in a re-buy shop (its output is unchanged) and FOLLOW_NO_REBUY
    without re-buys, because a shop of durable goods is one where the next purchase follows the last
    (a sofa, then its cover). Its draws come from a second generator seeded (seed, 1) (later chunks:
    (seed, 3, chunk)), taken only when follow > 0, so every shop drawn without it stays identical."""
    plan = _plan(users, items, days, seed, start, sessions_per_day, rebuy, follow)
    ev = pd.concat(list(_chunks(plan, chunk_users)), ignore_index=True)
    # Chunks hold disjoint users, so a stable sort of their concatenation is the whole shop's order.
    ev = ev.sort_values(["day", "second", "user"], kind="stable")
    return Shop(users=plan.user_frame, items=plan.item_frame, events=_event_frame(plan, ev, 1))


def _write_day(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


def write_shop(shop: Shop, landing_dir: Path) -> list[Path]:
    """Write users.csv, items.csv and one events CSV per day; returns the batch files written."""
    (landing_dir / "events").mkdir(parents=True, exist_ok=True)
    shop.users.to_csv(landing_dir / "users.csv", index=False)
    shop.items.to_csv(landing_dir / "items.csv", index=False)
    days = shop.events["event_ts"].to_numpy().astype("datetime64[D]")
    bounds = np.flatnonzero(np.diff(days.astype(np.int64))) + 1
    written = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(days)], strict=True):
        day = pd.Timestamp(days[lo]).date()
        path = batch_path(landing_dir, day)
        _write_day(shop.events.iloc[lo:hi], path)
        written.append(path)
    return written


@dataclass(frozen=True)
class Written:
    """What `stream_shop` wrote."""

    files: list[Path]
    events: int
    users: int
    items: int


def stream_shop(
    landing_dir: Path,
    users: int = 2000,
    items: int = 500,
    days: int = 60,
    seed: int = 42,
    start: date = date(2026, 9, 1),
    sessions_per_day: float = 0.15,
    rebuy: bool = True,
    follow: float | None = None,
    chunk_users: int = CHUNK_USERS,
) -> Written:
    """The shop `generate_shop` draws with the same arguments, written file by file as
    `write_shop(generate_shop(...))` writes it, without holding every event in memory.

    Two passes: each chunk of users is drawn and its events spilled to a temporary Arrow file (numeric
    columns, sorted by day, about 50 bytes an event on disk); then each day is read back from every
    chunk's file (memory-mapped), merged and written as that day's CSV. Memory bound: the users and
    items tables (O(users + items)) plus the larger of one chunk's events (O(chunk_users), about 0.5 KB
    an event while drawn) and one day's events (O(events / days)); never the whole log."""
    plan = _plan(users, items, days, seed, start, sessions_per_day, rebuy, follow)
    (landing_dir / "events").mkdir(parents=True, exist_ok=True)
    plan.user_frame.to_csv(landing_dir / "users.csv", index=False)
    plan.item_frame.to_csv(landing_dir / "items.csv", index=False)
    spill = Path(tempfile.mkdtemp(prefix=".generate-", dir=landing_dir))
    try:
        parts: list[tuple[Path, np.ndarray]] = []  # (chunk file, row where each day starts)
        for k, ev in enumerate(_chunks(plan, chunk_users)):
            path = spill / f"chunk-{k:05d}.arrow"
            with pa.OSFile(str(path), "wb") as sink:
                table = pa.Table.from_pandas(ev, preserve_index=False)
                with pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
            parts.append((path, np.searchsorted(ev["day"].to_numpy(), np.arange(days + 1))))
            del ev, table
        files, next_id = [], 1
        readers = [(pa.ipc.open_file(pa.memory_map(str(p))), bounds) for p, bounds in parts]
        tables = [(r.read_all(), bounds) for r, bounds in readers]  # memory-mapped: read lazily
        for day in range(days):
            pieces = [t.slice(b[day], b[day + 1] - b[day]) for t, b in tables if b[day + 1] > b[day]]
            if not pieces:
                continue
            ev = pa.concat_tables(pieces).to_pandas().sort_values(["second", "user"], kind="stable")
            path = batch_path(landing_dir, plan.start + timedelta(days=day))
            _write_day(_event_frame(plan, ev, next_id), path)
            files.append(path)
            next_id += len(ev)
        del tables, readers
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return Written(files=files, events=next_id - 1, users=users, items=items)


def last_day(start: date, days: int) -> date:
    return start + timedelta(days=days - 1)
