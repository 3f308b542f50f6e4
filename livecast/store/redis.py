"""Redis store: one redis-server or a Redis Cluster, shared by every node.

URL forms (``connect``):
- ``redis://[user:password@]host:port[/db]`` (``rediss://`` for TLS): one server;
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (or
  ``rediss+cluster://``), or a ``redis://`` URL listing several hosts separated
  by commas: a Redis Cluster, the hosts being seed nodes (one is enough).

Keys (``lc`` is the prefix; ``<gid>`` the group id as is):
- ``lc:schema``               string: the layout version (1)
- ``lc:groups``               sorted set: group id -> created (the index)
- ``lc:kicks``                hash: user -> time of the last kick
- ``lc:profiles``             set: the users with a stored profile (``all_profiles``)
- ``lc:lock:<name>``          string: the token of a lock's holder (``lock``), with a TTL
- ``lc:seen:<key>``           string "1" that lives for the de-duplication window
- ``lc:{g:<gid>}:group``      string: JSON of the room but its mutes and bans
                              (owner, type, created, profile, MaxMemberNum,
                              mute_all, info seq and times, rate, burst,
                              AppDefinedData, counters, group attributes)
- ``lc:{g:<gid>}:mutes``      sorted set: user -> end time (FOREVER: permanent)
- ``lc:{g:<gid>}:bans``       sorted set: user -> end time
- ``lc:{g:<gid>}:likes``      string: the like total
- ``lc:{g:<gid>}:history``    stream and ``lc:{g:<gid>}:hepoch`` string: the
                              room's recent history (node/history.py's
                              RedisHistoryStore); ``delete_group`` removes them
                              too, not the broker's ``:seq`` and ``:fence``
- ``lc:profile:<user>``       string: JSON of the user's profile (tag -> value)

Invariants:
1. One room's keys share the hash tag ``{g:<gid>}`` (Redis hashes only what is
   between the first ``{`` and the next ``}``, the same for every key of the
   room), so a cluster holds a room on one slot and every multi-key change of
   a room is one MULTI/EXEC or one script; a call returns once Redis has
   answered it.
2. A stored room always has its index entry (the index is on its own slot).
   Only a create makes a ``group`` key (``SET NX`` in ``_PUT_GROUP``); an
   update writes only over an existing one (``EXISTS`` in the same script,
   ``SET XX``), so a write racing a delete cannot leave a room behind. A
   create adds the index entry before the room and again after it (a delete
   may have taken it between); ``delete_group`` removes the entry after the
   room, then puts it back if the room was created again meanwhile. A crash
   leaves at most an index entry without a ``group`` key, which ``load_all``
   skips.
3. Times round-trip exactly: JSON numbers are written shortest-exact, kick
   times with ``repr``, and sorted-set scores come back with 17 digits.
4. ``seen`` is ``SET NX PX``: atomic, expired by the server's own clock.
5. ``load_all`` reads a room with 4 replies, in pipelines of ``LOAD_BATCH``
   rooms; its ``now`` purge removes only entries ending at or before ``now``,
   so a mute set meanwhile by another node is never lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord
from livecast.store.base import (
    DEDUP_WINDOW,
    Instrument,
    Observer,
    Profile,
    Snapshot,
    StoreError,
    decode_profile,
    decode_record,
    expired,
    loads,
)

__all__ = ["SCHEMA_VERSION", "RedisStore", "connect"]

SCHEMA_VERSION = 1
LOAD_BATCH = 1000  # rooms read per pipeline by load_all
Client = Redis | RedisCluster
T = TypeVar("T")

_ROOM_PARTS = ("group", "mutes", "bans", "likes")
_DELETED = (*_ROOM_PARTS, "history", "hepoch")  # node/history.py's two, not :seq or :fence
_RESTRICTIONS = ("mutes", "bans")
_SETTINGS = tuple(f.name for f in fields(GroupRecord) if f.name not in ("group_id", *_RESTRICTIONS))
_ERRORS = (RedisError, RedisClusterException, OSError, UnicodeDecodeError)  # a value not UTF-8
# KEYS the lock; ARGV its holder's token: released only by its holder
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Keep the later of the stored and the given kick time.
_SET_KICK = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

# Write a room (invariant 2): KEYS group, mutes, bans; ARGV "1" to create
# (only if no group key) or "0" to update (only over one), the group's JSON,
# the number of mutes, then of bans, then (score, user) pairs of the mutes and
# then of the bans. Scores go to ZADD as given: a Lua number would round them.
# 1 if written, else 0 (and nothing written).
_PUT_GROUP = """
if (redis.call('EXISTS', KEYS[1]) == 1) == (ARGV[1] == '1') then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
local at = 5
for k = 2, 3 do
  for _ = 1, tonumber(ARGV[k + 1]) do
    redis.call('ZADD', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
end
return 1
"""


def connect(url: str, **options: Any) -> Client:
    """A client for ``url`` (module docstring); ``options`` go to redis-py."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    auth, at, hosts = parts.netloc.rpartition("@")
    seeds = [h for h in hosts.split(",") if h]
    options.setdefault("decode_responses", True)
    if not scheme.endswith("+cluster") and len(seeds) <= 1:
        return Redis.from_url(url, **options)
    if not seeds:
        raise ValueError(f"no host in the Redis Cluster URL {url!r}")
    first = urlunsplit((scheme.removesuffix("+cluster"), f"{auth}{at}{seeds[0]}",
                        parts.path, parts.query, ""))
    others = [_node(seed) for seed in seeds[1:]]
    return RedisCluster.from_url(first, startup_nodes=others or None, **options)


def _node(seed: str) -> ClusterNode:
    host, _, port = seed.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise ValueError(f"a Redis Cluster seed must be host:port, got {seed!r}")
    return ClusterNode(host, int(port))


class RedisStore:
    """The Store protocol over redis-py's asyncio client (module invariants)."""

    def __init__(self, client: Client, *, prefix: str = "lc",
                 observe: Observer | None = None) -> None:
        self._client = client
        self._prefix = prefix
        self._inst = Instrument(observe, _ERRORS)
        self._index = f"{prefix}:groups"
        self._kicks = f"{prefix}:kicks"
        self._profiles = f"{prefix}:profiles"

    @classmethod
    async def open(cls, url: str, *, prefix: str = "lc",
                   observe: Observer | None = None) -> RedisStore:
        """Connect to ``url`` and check the stored layout version."""
        try:
            store = cls(connect(url), prefix=prefix, observe=observe)
        except (ValueError, *_ERRORS) as exc:
            raise StoreError(f"bad Redis URL: {exc}") from exc
        try:
            await store._check_schema()
        except (*_ERRORS, StoreError) as exc:
            await store._client.aclose()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the Redis store: {exc}") from exc
        return store

    async def _check_schema(self) -> None:
        key = f"{self._prefix}:schema"
        await self._client.set(key, SCHEMA_VERSION, nx=True)
        version = int(str(await self._client.get(key)))
        if version > SCHEMA_VERSION:
            raise StoreError(f"Redis layout version {version} is newer than {SCHEMA_VERSION}")

    @property
    def healthy(self) -> bool:
        return self._inst.healthy and not self._inst.closed

    def _key(self, group_id: str, part: str) -> str:
        return f"{self._prefix}:{{g:{group_id}}}:{part}"

    def _keys(self, group_id: str) -> dict[str, str]:
        return {part: self._key(group_id, part) for part in _ROOM_PARTS}

    async def _run(self, op: str, work: Callable[[], Awaitable[T]]) -> T:
        return await self._inst.run(op, work)

    async def ping(self) -> bool:
        try:
            await self._run("ping", self._client.ping)
        except StoreError:
            return False
        return True

    async def load_all(self, now: float | None = None) -> Snapshot:
        return await self._run("load_all", lambda: self._load_all(now))

    async def _load_all(self, now: float | None) -> Snapshot:
        ids = [str(gid) for gid in await self._client.zrange(self._index, 0, -1)]
        groups: list[GroupRecord] = []
        likes: dict[str, int] = {}
        for start in range(0, len(ids), LOAD_BATCH):
            for record, total in await self._load_batch(ids[start:start + LOAD_BATCH], now):
                groups.append(record)
                if total:
                    likes[record.group_id] = total
        kicks = {str(u): float(t) for u, t in (await self._client.hgetall(self._kicks)).items()}
        return Snapshot(tuple(groups), kicks, likes)

    async def _load_batch(
        self, ids: Sequence[str], now: float | None
    ) -> list[tuple[GroupRecord, int]]:
        pipe = self._client.pipeline(transaction=False)
        for gid in ids:
            _read_room(pipe, self._keys(gid))
        replies = await pipe.execute()
        loaded = []
        stale = []
        for i, gid in enumerate(ids):
            found = _decode(gid, replies[i * len(_ROOM_PARTS):(i + 1) * len(_ROOM_PARTS)], now)
            if found is not None:
                loaded.append(found[:2])
                if found[2]:
                    stale.append(gid)
        if stale and now is not None:
            await self._purge(stale, now)
        return loaded

    async def _purge(self, ids: Sequence[str], now: float) -> None:
        """Delete the mutes and bans over at ``now`` (those at FOREVER never are)."""
        upper = f"({FOREVER}" if now >= FOREVER else repr(now)
        pipe = self._client.pipeline(transaction=False)
        for gid in ids:
            for part in _RESTRICTIONS:
                pipe.zremrangebyscore(self._key(gid, part), "-inf", upper)
        await pipe.execute()

    async def load_group(self, group_id: str) -> GroupRecord | None:
        return await self._run("load_group", lambda: self._load_group(group_id))

    async def _load_group(self, group_id: str) -> GroupRecord | None:
        pipe = self._client.pipeline(transaction=True)
        _read_room(pipe, self._keys(group_id))
        found = _decode(group_id, await pipe.execute(), None)
        return None if found is None else found[0]

    async def put_group(self, record: GroupRecord, create: bool = False) -> bool:
        return await self._run("put_group", lambda: self._put_group(record, create))

    async def _put_group(self, record: GroupRecord, create: bool) -> bool:
        entry = {record.group_id: record.created}
        if create:  # invariant 2: the entry first (kept as is if the room exists)
            await self._client.zadd(self._index, _any(entry), nx=True)
        keys = self._keys(record.group_id)
        args: list[bytes | str | int] = [
            int(create), _encode(record), len(record.mutes), len(record.bans),
            *_scored(record.mutes), *_scored(record.bans)]
        written = bool(await self._client.eval(
            _PUT_GROUP, 3, keys["group"], keys["mutes"], keys["bans"], *args))
        if written and create:  # again: a delete racing the create may have taken it
            await self._client.zadd(self._index, _any(entry))
        return written

    async def put_settings(self, record: GroupRecord) -> bool:
        key, blob = self._key(record.group_id, "group"), _encode(record)
        return bool(await self._run("put_settings", lambda: self._client.set(key, blob, xx=True)))

    async def delete_group(self, group_id: str) -> bool:
        return await self._run("delete_group", lambda: self._delete(group_id))

    async def _delete(self, group_id: str) -> bool:
        group = self._key(group_id, "group")
        pipe = self._client.pipeline(transaction=True)
        pipe.exists(group)
        pipe.delete(*(self._key(group_id, part) for part in _DELETED))
        found, _ = await pipe.execute()
        await self._client.zrem(self._index, group_id)
        again = await self._client.get(group)
        if again is not None:  # created again meanwhile by another process: invariant 2
            await self._client.zadd(self._index, {group_id: _created(again)})
        return bool(found)

    async def set_mute(self, group_id: str, user: str, until: float) -> None:
        key = self._key(group_id, "mutes")
        await self._run("set_mute", lambda: self._client.zadd(key, {user: until}))

    async def clear_mute(self, group_id: str, user: str) -> None:
        key = self._key(group_id, "mutes")
        await self._run("clear_mute", lambda: self._client.zrem(key, user))

    async def set_ban(self, group_id: str, user: str, until: float) -> None:
        key = self._key(group_id, "bans")
        await self._run("set_ban", lambda: self._client.zadd(key, {user: until}))

    async def clear_ban(self, group_id: str, user: str) -> None:
        key = self._key(group_id, "bans")
        await self._run("clear_ban", lambda: self._client.zrem(key, user))

    async def set_kick(self, user: str, at: float) -> None:
        args = (self._kicks, user, repr(at))
        await self._run("set_kick", lambda: self._client.eval(_SET_KICK, 1, *args))

    async def kick_time(self, user: str) -> float | None:
        found = await self._run("kick_time", lambda: self._client.hget(self._kicks, user))
        return None if found is None else float(found)

    async def marker(self) -> str:
        name, fresh = f"{self._prefix}:marker", uuid.uuid4().hex
        await self._run("marker", lambda: self._client.set(name, fresh, nx=True))
        found = await self._run("marker", lambda: self._client.get(name))
        return str(found)

    async def kick_times(self) -> dict[str, float]:
        found = await self._run("kick_times", lambda: self._client.hgetall(self._kicks))
        return {str(u): float(t) for u, t in found.items()}

    async def seen(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        name = f"{self._prefix}:seen:{key}"
        ms = max(1, round(window * 1000))
        fresh = await self._run("seen", lambda: self._client.set(name, 1, nx=True, px=ms))
        return not fresh

    async def recent(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        name = f"{self._prefix}:seen:{key}"
        return bool(await self._run("recent", lambda: self._client.exists(name)))

    async def unsee(self, key: str) -> None:
        name = f"{self._prefix}:seen:{key}"
        await self._run("unsee", lambda: self._client.delete(name))

    async def add_likes(self, group_id: str, n: int) -> int:
        key = self._key(group_id, "likes")
        return int(await self._run("add_likes", lambda: self._client.incrby(key, n)))

    async def likes(self, group_id: str) -> int:
        key = self._key(group_id, "likes")
        found = await self._run("likes", lambda: self._client.get(key))
        return 0 if found is None else int(found)

    def _profile_key(self, user: str) -> str:
        return f"{self._prefix}:profile:{user}"

    async def put_profile(self, user: str, profile: Profile) -> None:
        key, blob = self._profile_key(user), orjson.dumps(dict(profile))

        async def put() -> None:  # the index first: a user in it may have no profile yet
            await self._client.sadd(self._profiles, user)
            await self._client.set(key, blob)
        await self._run("put_profile", put)

    async def all_profiles(self, limit: int) -> dict[str, dict[str, str | int]] | None:
        async def read() -> dict[str, dict[str, str | int]] | None:
            if await self._client.scard(self._profiles) > limit:
                return None
            users = sorted(u.decode() if isinstance(u, bytes) else str(u)
                           for u in await self._client.smembers(self._profiles))
            return await self._load_profiles(users)
        return await self._run("all_profiles", read)

    async def load_profiles(self, users: Sequence[str]) -> dict[str, dict[str, str | int]]:
        return await self._run("load_profiles", lambda: self._load_profiles(users))

    async def _load_profiles(self, users: Sequence[str]) -> dict[str, dict[str, str | int]]:
        pipe = self._client.pipeline(transaction=False)  # users' keys: on many slots
        for user in users:
            pipe.get(self._profile_key(user))
        found = await pipe.execute()
        return {user: decode_profile(user, blob)
                for user, blob in zip(users, found, strict=True) if blob is not None}

    async def lock(self, name: str, ttl: float) -> str | None:
        key, token = f"{self._prefix}:lock:{name}", uuid.uuid4().hex
        taken = await self._run("lock", lambda: self._client.set(
            key, token, nx=True, px=max(1, int(ttl * 1000))))
        return token if taken else None

    async def unlock(self, name: str, token: str) -> None:
        key = f"{self._prefix}:lock:{name}"
        await self._run("unlock", lambda: self._client.eval(_UNLOCK, 1, key, token))

    async def close(self) -> None:
        if self._inst.closed:
            return
        self._inst.closed = True
        await self._client.aclose()


def _any(values: Mapping[str, Any]) -> dict[Any, Any]:
    """A copy typed for redis-py's encodable mappings."""
    return dict(values)


def _scored(table: Mapping[str, float]) -> list[str]:
    """``(score, member)`` pairs, flat, for ``_PUT_GROUP``: ``repr`` is exact."""
    return [item for user, until in table.items() for item in (repr(float(until)), user)]


def _created(blob: str | bytes) -> float:
    """The creation time in a room's JSON (0 if unreadable: ``load_all`` reports it)."""
    try:
        return float(orjson.loads(blob)["created"])
    except (ValueError, TypeError, KeyError):
        return 0.0


def _encode(record: GroupRecord) -> bytes:
    settings = {}
    for name in _SETTINGS:
        value = getattr(record, name)
        settings[name] = dict(value) if isinstance(value, Mapping) else value
    return orjson.dumps(settings)


def _read_room(pipe: Any, keys: Mapping[str, str]) -> None:
    """Queue the reads ``_decode`` expects, one per ``_ROOM_PARTS``, in its order."""
    pipe.get(keys["group"])
    for part in _RESTRICTIONS:
        pipe.zrange(keys[part], 0, -1, withscores=True)
    pipe.get(keys["likes"])


def _decode(
    group_id: str, replies: Sequence[Any], now: float | None
) -> tuple[GroupRecord, int, bool] | None:
    """``(record, likes, some restriction is over at now)``, or None for no room."""
    blob, mutes, bans, likes = replies
    if blob is None:
        return None
    tables = [dict(mutes), dict(bans)]
    stale = False
    if now is not None:
        for i, table in enumerate(tables):
            live = {u: t for u, t in table.items() if not expired(t, now)}
            stale = stale or len(live) < len(table)
            tables[i] = live
    record = decode_record(group_id, loads(f"room {group_id!r}", blob), tables[0], tables[1])
    return record, 0 if likes is None else int(likes), stale
