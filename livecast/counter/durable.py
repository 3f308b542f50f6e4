"""Durable tallies of ``livecast counter`` in Redis (docs/counter.md, "Never lost,
never counted twice").

With ``LIVECAST_COUNTER_REDIS_URL`` (or ``LIVECAST_REDIS_URL``) the counter keeps
each room's counted likes and base in Redis, so a ``kill -9`` loses nothing:

- ``<prefix>:seen:<like_key>``  "1", for ``SEEN_TTL`` seconds: the callback's
  idempotency key (``core.likes.like_key``);
- ``<prefix>:counted``          hash: room -> likes counted since its base;
- ``<prefix>:base``             hash: room -> the value the room had when first read.

Invariants:
1. ``count`` is one Lua script: the key is set (``SET NX``) and the room's
   ``counted`` raised (``HINCRBY``) together or not at all, so a like is counted
   once whatever is retried, and a crash cannot separate the two.
2. The counter answers a callback only after ``count`` returned: an answered
   like is in Redis.  When Redis fails the callback gets HTTP 503 and livecast
   sends it again later (docs/webhooks.md).
3. The base is set once (``HSETNX``); the total written is ``base + counted``,
   so writing it again after a restart is harmless.
4. Every key shares the ``{likes}`` hash tag: one slot, so the script also runs
   on a Redis Cluster.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

PREFIX = "lccounter:{likes}"
SEEN_TTL = 7 * 86400  # a resent callback is recognised for a week

_COUNT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return {1, redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])}
end
return {0, tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')}
"""
_FORGET = """
local c = redis.call('HGET', KEYS[1], ARGV[1])
if c == false or tonumber(c) == tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

__all__ = ["DurableError", "DurableTally", "RedisError"]


class DurableError(Exception):
    """Redis did not answer: the callback is not acknowledged (HTTP 503)."""


class DurableTally:
    """The Redis side of a counter's tally (invariants above)."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self._client = client
        self._seen = f"{prefix}:seen:"
        self._counted = f"{prefix}:counted"
        self._base = f"{prefix}:base"
        self._count = client.register_script(_COUNT)
        self._forget = client.register_script(_FORGET)

    @classmethod
    def open(cls, url: str, prefix: str = PREFIX) -> DurableTally:
        return cls(aioredis.Redis.from_url(url, socket_timeout=3.0,
                                           socket_connect_timeout=3.0), prefix)

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise DurableError(type(exc).__name__) from None

    async def count(self, key: str, group_id: str, likes: int) -> tuple[bool, int]:
        """Count ``likes`` once for ``key``: (True when counted now, False when
        seen before; the room's counted likes in Redis after it)."""
        fresh, counted = await self._do(self._count(keys=[self._seen + key, self._counted],
                                                    args=[group_id, likes, SEEN_TTL]))
        return bool(int(fresh)), int(counted)

    async def set_base(self, group_id: str, value: int) -> int:
        """Record the room's base unless one is recorded; returns the recorded one."""
        await self._do(self._client.hsetnx(self._base, group_id, value))
        return int(await self._do(self._client.hget(self._base, group_id)))

    async def load(self) -> dict[str, tuple[int, int | None]]:
        """Every room: (counted, base or None)."""
        counted = await self._do(self._client.hgetall(self._counted))
        bases = await self._do(self._client.hgetall(self._base))
        return {_text(gid): (int(n), int(bases[gid]) if gid in bases else None)
                for gid, n in counted.items()}

    async def forget(self, group_id: str, counted: int | None = None) -> bool:
        """Drop a room (``counted`` given: only while it still holds that many)."""
        check = -1 if counted is None else counted
        if counted is None:
            await self._do(self._client.hdel(self._counted, group_id))
            await self._do(self._client.hdel(self._base, group_id))
            return True
        return bool(await self._do(self._forget(keys=[self._counted, self._base],
                                                args=[group_id, check])))

    async def close(self) -> None:
        await self._client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
