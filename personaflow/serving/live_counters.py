"""Live counters and /events dedupe in Redis, shared by every BentoML worker.

A user's live activity since the nightly run is one Redis hash (`personaflow:live:<user_id>`) with a
field per UTC day and counter (`2026-12-01|n_views`, `...|n_events`, `...|revenue`,
`...|bought|<item_id>`) plus `last_event_ts` and `seq` (orders the bought items). One Lua script adds
an event: it drops the days the nightly features already hold, then HINCRBY/HINCRBYFLOAT the day's
counters. Redis runs a script alone, so two workers adding events of one user at once both count (the
SQLite path's JSON bucket is a read-modify-write, exact only inside one process:
personaflow/serving/online.py).

Reads give the same `buckets` shape as the JSON bucket (day -> counters, revenue, purchased items), so
personaflow/serving/online.py sums both the same way.

The dedupe of /events (personaflow/ingest/live.py) claims a duplicate key with SET NX: the first worker to
claim it writes the event, the others answer with its event id.
"""

from __future__ import annotations

from datetime import date
from typing import Any

PREFIX = "personaflow:"
# As long as the `user_live` view's TTL: a user silent for a month has no live activity the nightly
# features do not hold.
LIVE_TTL_SECONDS = 30 * 86_400
# Dedupe keys outlive their day's file being open by a day (late events of yesterday still dedupe).
SEEN_TTL_SECONDS = 2 * 86_400

# KEYS[1] the user's hash; ARGV: day, counter, revenue ('' none), bought item ('' none), event_ts,
# as_of ('' before any nightly run), ttl. Returns the live events counted after this one.
RECORD_SCRIPT = """
local h, day, as_of = KEYS[1], ARGV[1], ARGV[6]
local total = 0
local all = redis.call('HGETALL', h)
for i = 1, #all, 2 do
  local f = all[i]
  if f ~= 'last_event_ts' and f ~= 'seq' then
    if as_of ~= '' and string.sub(f, 1, 10) <= as_of then
      redis.call('HDEL', h, f)
    elseif string.sub(f, 11) == '|n_events' then
      total = total + tonumber(all[i + 1])
    end end end redis.call('HINCRBY', h, day .. '|' .. ARGV[2], 1)
redis.call('HINCRBY', h, day .. '|n_events', 1)
if as_of == '' or day > as_of then total = total + 1 end
if ARGV[3] ~= '' then redis.call('HINCRBYFLOAT', h, day .. '|revenue', ARGV[3]) end
if ARGV[4] ~= '' and redis.call('HEXISTS', h, day .. '|bought|' .. ARGV[4]) == 0 then
  redis.call('HSET', h, day .. '|bought|' .. ARGV[4], redis.call('HINCRBY', h, 'seq', 1))
end local last = redis.call('HGET', h, 'last_event_ts')
if (not last) or ARGV[5] > last then redis.call('HSET', h, 'last_event_ts', ARGV[5]) end
redis.call('EXPIRE', h, ARGV[7])
return total
"""


def connect(url: str):
    """One client per process (redis-py pools its connections and is safe across threads)."""
    import redis

    # a Redis that is down costs an /events batch about a second, not redis-py's retries of 5 s each
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)


def connect_async(url: str):
    """The asyncio client for the request handlers (connects on first use, inside the server's loop)."""
    from redis import asyncio as aredis

    return aredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def counter_of(event_type: str) -> str:
    return "n_returns" if event_type == "return" else f"n_{event_type}s"


def buckets_from_hash(fields: dict[bytes, bytes]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The hash as (day -> {counter: n, revenue, purchased (first bought first)}, last_event_ts)."""
    buckets: dict[str, dict[str, Any]] = {}
    bought: dict[str, list[tuple[int, str]]] = {}
    last = None
    for raw_key, raw_value in fields.items():
        key, value = raw_key.decode(), raw_value.decode()
        if key == "last_event_ts":
            last = value
            continue
        if key == "seq":  # the order purchases arrived in
            continue
        day, _, name = key.partition("|")
        if name.startswith("bought|"):
            bought.setdefault(day, []).append((int(value), name[len("bought|") :]))
            continue
        buckets.setdefault(day, {})[name] = float(value) if name == "revenue" else int(value)
    for day, items in bought.items():
        buckets.setdefault(day, {})["purchased"] = [item for _, item in sorted(items)]
    return buckets, last


class RedisCounters:
    """Live counters of every user, changed atomically in Redis."""

    def __init__(self, client, aclient=None) -> None:
        self.client, self.aclient = client, aclient
        self._record = client.register_script(RECORD_SCRIPT)
        self._record_async = aclient.register_script(RECORD_SCRIPT) if aclient is not None else None

    @staticmethod
    def key(user_id: str) -> str:
        return f"{PREFIX}live:{user_id}"

    def read(self, user_id: str) -> tuple[dict[str, dict[str, Any]], str | None]:
        return buckets_from_hash(self.client.hgetall(self.key(user_id)))

    async def read_async(self, user_id: str) -> tuple[dict[str, dict[str, Any]], str | None]:
        return buckets_from_hash(await self.aclient.hgetall(self.key(user_id)))

    def record(self, user_id: str, day: date, event: dict[str, Any], as_of: date | None) -> int:
        """Count one event on its day; returns the user's live events since the nightly run."""
        return int(self._record(keys=[self.key(user_id)], args=record_args(day, event, as_of)))

    async def record_async(self, user_id: str, day: date, event: dict[str, Any], as_of: date | None) -> int:
        return int(await self._record_async(keys=[self.key(user_id)], args=record_args(day, event, as_of)))


def record_args(day: date, event: dict[str, Any], as_of: date | None) -> list:
    """RECORD_SCRIPT's ARGV for one event."""
    kind = event["event_type"]
    revenue = ""
    if kind in ("purchase", "return"):
        revenue = repr(event["price"] * event["quantity"] * (1 if kind == "purchase" else -1))
    return [
        day.isoformat(),
        counter_of(kind),
        revenue,
        event["item_id"] if kind == "purchase" else "",
        event["event_ts"],
        as_of.isoformat() if as_of else "",
        LIVE_TTL_SECONDS,
    ]


class RedisSeen:
    """The /events dedupe shared by all workers: duplicate key -> the first event's id, per day."""

    def __init__(self, client) -> None:
        self.client = client

    @staticmethod
    def key(day: date, key: bytes) -> str:
        return f"{PREFIX}seen:{day.isoformat()}:{key.hex()}"

    def claim_many(self, day: date, claims: list[tuple[bytes, str]]) -> list[str | None]:
        """For each (key, event_id): None when it is the first with its key (now claimed), else the
        first one's id. One round trip for a whole group-commit batch (SET NX GET, in order)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key, event_id in claims:
                pipe.set(self.key(day, key), event_id, nx=True, ex=SEEN_TTL_SECONDS, get=True)
            found = pipe.execute()
        return [earlier.decode() if earlier is not None else None for earlier in found]

    def release(self, day: date, key: bytes) -> None:
        """The claimed event was not written (disk error): a retry must be able to write it."""
        self.client.delete(self.key(day, key))

    def seed(self, day: date, seen: dict[bytes, str]) -> None:
        """Claims for the events already in a day's file (a Redis emptied since still dedupes them)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key, event_id in seen.items():
                pipe.set(self.key(day, key), event_id, nx=True, ex=SEEN_TTL_SECONDS)
            pipe.execute()


def forget_in_redis(url: str, user_id: str, project: str = "personaflow") -> int:
    """`personaflow forget` on the Redis online store: the user's Feast hash (every view keyed by
    user_id: profile, purchases, segments, churn) and their live counters; returns the keys deleted.
    The /events dedupe keys hold event ids under a hash of the event, not the id, and expire in 2 days."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    entity = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    client = connect(url)
    try:
        return int(client.delete(_redis_key(project, entity, 3), RedisCounters.key(user_id)))
    finally:
        client.close()


def redis_holds(url: str, user_id: str, project: str = "personaflow") -> list[str]:
    """The keys `forget_in_redis` would delete that exist (the check `personaflow forget` runs)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    entity = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    client = connect(url)
    try:
        keys = [_redis_key(project, entity, 3), RedisCounters.key(user_id)]
        held = [k for k in keys if client.exists(k)]
        return [k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in held]
    finally:
        client.close()
