"""Redis store: one redis-server or a Redis Cluster, shared by every node.

URL forms (``connect``):
- ``redis://[user:password@]host:port[/db]`` (``rediss://`` for TLS): one server;
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (or
  ``rediss+cluster://``), or a ``redis://`` URL listing several hosts separated
  by commas: a Redis Cluster, the hosts being seed nodes (one is enough).

Keys (``lc`` is the prefix; ``<gid>`` the group id as is):
- ``lc:schema``                 string: the layout version (1)
- ``lc:groups``                 sorted set: group id -> created (the index)
- ``lc:kicks``                  hash: user -> time of the last kick
- ``lc:seen:<key>``             string "1" with a TTL of the de-duplication window
- ``lc:{g:<gid>}:info``         hash: owner, type, created, profile, mute_all,
                                info seq and times, max_member_num, rate, burst
- ``lc:{g:<gid>}:app``          hash: AppDefinedData key -> value
- ``lc:{g:<gid>}:counters``     hash: counter key -> int64
- ``lc:{g:<gid>}:attrs``        hash: group attribute key -> value
- ``lc:{g:<gid>}:mutes``        sorted set: user -> end time (FOREVER: permanent)
- ``lc:{g:<gid>}:bans``         sorted set: user -> end time
- ``lc:{g:<gid>}:likes``        string: the like total

Invariants:
1. One room's keys share the hash tag ``{g:<gid>}`` (Redis hashes only what is
   between the first ``{`` and the next ``}``, the same for every key of the
   room), so a cluster holds a room on one slot and every multi-key change of
   a room is one MULTI/EXEC; the call returns once EXEC has answered.
2. The index is on its own slot: ``put_*`` adds to it before the room's
   transaction and ``delete_group`` removes from it after, so a crash between
   the two leaves at most an index entry without an ``info`` hash, which
   ``load_all`` skips. A room is never stored without its index entry.
3. Floats are written with ``repr`` (and sorted-set scores read back with
   Redis's 17 digits), so every time round-trips exactly.
4. ``seen`` is ``SET NX PX``: atomic, expired by the server's own clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord
from livecast.store.base import DEDUP_WINDOW, Instrument, Observer, Snapshot, StoreError

__all__ = ["SCHEMA_VERSION", "RedisStore", "connect"]

SCHEMA_VERSION = 1
LOAD_BATCH = 500  # rooms read per pipeline by load_all
Client = Redis | RedisCluster
T = TypeVar("T")

_ROOM_READS = 7  # commands queued by _read_room
_PURGES = 2  # commands queued by _purge
_ROOM_PARTS = ("info", "app", "counters", "attrs", "mutes", "bans", "likes")
_SETTINGS_PARTS = ("info", "app", "counters", "attrs")
_STRINGS = ("type", "owner", "name", "introduction", "notification", "face_url")
_FLOATS = ("created", "last_info_time", "last_msg_time")
_INTS = ("max_member_num", "info_seq")
_OPTIONAL_INTS = ("rate", "burst")

# Keep the later of the stored and the given kick time.
_SET_KICK = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
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
    if not host or not port.isdigit():
        raise ValueError(f"a Redis Cluster seed must be host:port, got {seed!r}")
    return ClusterNode(host, int(port))


class RedisStore:
    """The Store protocol over redis-py's asyncio client (module invariants)."""

    def __init__(self, client: Client, *, prefix: str = "lc",
                 observe: Observer | None = None) -> None:
        self._client = client
        self._prefix = prefix
        self._inst = Instrument(observe, (RedisError, RedisClusterException, OSError))
        self._index = f"{prefix}:groups"
        self._kicks = f"{prefix}:kicks"

    @classmethod
    async def open(cls, url: str, *, prefix: str = "lc",
                   observe: Observer | None = None) -> RedisStore:
        """Connect to ``url`` and check the stored layout version."""
        try:
            store = cls(connect(url), prefix=prefix, observe=observe)
        except (ValueError, RedisError, RedisClusterException) as exc:
            raise StoreError(f"bad Redis URL: {exc}") from exc
        try:
            await store._check_schema()
        except (RedisError, RedisClusterException, OSError, StoreError) as exc:
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

    def _keys(self, group_id: str, parts: Sequence[str] = _ROOM_PARTS) -> dict[str, str]:
        return {part: f"{self._prefix}:{{g:{group_id}}}:{part}" for part in parts}

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
            keys = self._keys(gid)
            if now is not None:
                _purge(pipe, keys, now)
            _read_room(pipe, keys)
        replies = await pipe.execute()
        step = _ROOM_READS + (0 if now is None else _PURGES)
        loaded = []
        for i, gid in enumerate(ids):
            end = (i + 1) * step
            found = _decode(gid, replies[end - _ROOM_READS:end])
            if found is not None:
                loaded.append(found)
        return loaded

    async def load_group(self, group_id: str) -> GroupRecord | None:
        return await self._run("load_group", lambda: self._load_group(group_id))

    async def _load_group(self, group_id: str) -> GroupRecord | None:
        pipe = self._client.pipeline(transaction=True)
        _read_room(pipe, self._keys(group_id))
        found = _decode(group_id, await pipe.execute())
        return None if found is None else found[0]

    async def put_group(self, record: GroupRecord) -> None:
        await self._run("put_group", lambda: self._put(record, True))

    async def put_settings(self, record: GroupRecord) -> None:
        await self._run("put_settings", lambda: self._put(record, False))

    async def _put(self, record: GroupRecord, restrictions: bool) -> None:
        await self._client.zadd(self._index, {record.group_id: record.created})
        keys = self._keys(record.group_id)
        pipe = self._client.pipeline(transaction=True)
        written = ("info", "app", "counters", "attrs")
        pipe.delete(*(keys[p] for p in (*written, "mutes", "bans")[:6 if restrictions else 4]))
        pipe.hset(keys["info"], mapping=_info(record))
        for part, values in zip(written[1:], (record.app_defined, record.counters,
                                              record.attributes), strict=True):
            if values:
                pipe.hset(keys[part], mapping=_any(values))
        if restrictions:
            for part, table in (("mutes", record.mutes), ("bans", record.bans)):
                if table:
                    pipe.zadd(keys[part], dict(table))
        await pipe.execute()

    async def delete_group(self, group_id: str) -> bool:
        return await self._run("delete_group", lambda: self._delete(group_id))

    async def _delete(self, group_id: str) -> bool:
        keys = self._keys(group_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.exists(keys["info"])
        pipe.delete(*keys.values())
        found, _ = await pipe.execute()
        await self._client.zrem(self._index, group_id)
        return bool(found)

    async def set_mute(self, group_id: str, user: str, until: float) -> None:
        key = self._keys(group_id, ("mutes",))["mutes"]
        await self._run("set_mute", lambda: self._client.zadd(key, {user: until}))

    async def clear_mute(self, group_id: str, user: str) -> None:
        key = self._keys(group_id, ("mutes",))["mutes"]
        await self._run("clear_mute", lambda: self._client.zrem(key, user))

    async def set_ban(self, group_id: str, user: str, until: float) -> None:
        key = self._keys(group_id, ("bans",))["bans"]
        await self._run("set_ban", lambda: self._client.zadd(key, {user: until}))

    async def clear_ban(self, group_id: str, user: str) -> None:
        key = self._keys(group_id, ("bans",))["bans"]
        await self._run("clear_ban", lambda: self._client.zrem(key, user))

    async def set_kick(self, user: str, at: float) -> None:
        await self._run("set_kick", lambda: self._eval(_SET_KICK, [self._kicks], [user, repr(at)]))

    async def _eval(self, script: str, keys: list[str], args: list[str]) -> Any:
        return await self._client.eval(script, len(keys), *keys, *args)

    async def kick_time(self, user: str) -> float | None:
        found = await self._run("kick_time", lambda: self._client.hget(self._kicks, user))
        return None if found is None else float(found)

    async def seen(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        name = f"{self._prefix}:seen:{key}"
        ms = max(1, round(window * 1000))
        fresh = await self._run("seen", lambda: self._client.set(name, 1, nx=True, px=ms))
        return not fresh

    async def add_likes(self, group_id: str, n: int) -> int:
        key = self._keys(group_id, ("likes",))["likes"]
        return int(await self._run("add_likes", lambda: self._client.incrby(key, n)))

    async def likes(self, group_id: str) -> int:
        key = self._keys(group_id, ("likes",))["likes"]
        found = await self._run("likes", lambda: self._client.get(key))
        return 0 if found is None else int(found)

    async def close(self) -> None:
        if self._inst.closed:
            return
        self._inst.closed = True
        await self._client.aclose()


def _any(values: Mapping[str, Any]) -> dict[Any, Any]:
    """A copy typed for redis-py's encodable mappings."""
    return dict(values)


def _info(r: GroupRecord) -> dict[Any, Any]:
    info: dict[Any, Any] = {name: getattr(r, name) for name in _STRINGS}
    info.update({name: repr(getattr(r, name)) for name in _FLOATS})
    info.update({name: str(getattr(r, name)) for name in _INTS})
    info.update({name: str(getattr(r, name)) for name in _OPTIONAL_INTS
                 if getattr(r, name) is not None})
    info["mute_all"] = "1" if r.mute_all else "0"
    return info


def _purge(pipe: Any, keys: Mapping[str, str], now: float) -> None:
    """Delete the mutes and bans over at ``now`` (those at FOREVER never are)."""
    upper = f"({FOREVER}" if now >= FOREVER else repr(now)
    for part in ("mutes", "bans"):
        pipe.zremrangebyscore(keys[part], "-inf", upper)


def _read_room(pipe: Any, keys: Mapping[str, str]) -> None:
    """Queue the 7 reads ``_decode`` expects, in its order."""
    for part in ("info", "app", "counters", "attrs"):
        pipe.hgetall(keys[part])
    for part in ("mutes", "bans"):
        pipe.zrange(keys[part], 0, -1, withscores=True)
    pipe.get(keys["likes"])


def _decode(group_id: str, replies: Sequence[Any]) -> tuple[GroupRecord, int] | None:
    info, app, counters, attrs, mutes, bans, likes = replies
    if not info:
        return None
    fields: dict[str, Any] = {name: info.get(name, "") for name in _STRINGS}
    fields.update({name: float(info[name]) for name in _FLOATS})
    fields.update({name: int(info[name]) for name in _INTS})
    fields.update({name: int(info[name]) if name in info else None for name in _OPTIONAL_INTS})
    record = GroupRecord(
        group_id=group_id, mute_all=info.get("mute_all") == "1",
        app_defined=dict(app), counters={k: int(v) for k, v in counters.items()},
        attributes=dict(attrs), mutes=dict(mutes), bans=dict(bans), **fields)
    return record, 0 if likes is None else int(likes)
