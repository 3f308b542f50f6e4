"""One pub/sub connection to one Redis server, kept subscribed by itself.

A ``Shard`` holds the set of channels it should be subscribed to and one
reader task.  The reader connects, subscribes every wanted channel (SUBSCRIBE,
or SSUBSCRIBE on a Redis Cluster master), then reads; when the connection
fails it marks itself down, waits a short backoff and does it all again, so
that after a Redis restart every current room is subscribed again without
anyone asking.  (redis-py's own ``PubSub`` re-subscribes its channels when it
reconnects inside a command's retry; the reader does not rely on that: each
connection gets a fresh ``PubSub`` and the wanted set is replayed on it, so a
room subscribed while Redis was away is subscribed too.)

Invariants:
1. ``channels`` is the wanted set: ``add`` and ``remove`` change it first,
   then act on the live connection if there is one; the reader subscribes the
   whole set after each connect, so every wanted channel ends up subscribed.
2. ``add`` and ``remove`` return once Redis has confirmed them on this
   connection (bounded by ``CONFIRM_TIMEOUT``; a lost connection ends the
   wait, invariant 1 covers the rest): what Redis publishes afterwards is
   read after the confirmation.
3. A silent connection is probed with PING every ``PROBE_INTERVAL``; no answer
   within one more interval counts as a lost connection (a partition without
   a TCP reset is noticed too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 2.0
PROBE_INTERVAL = 1.0
BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)  # seconds before reconnect attempts 1, 2, ...
SUBSCRIBE_BATCH = 512
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class Shard:
    def __init__(self, name: str, make_client: Callable[[], Redis], sharded: bool,
                 on_message: Callable[[bytes, bytes], None]) -> None:
        self.name = name
        self.channels: dict[bytes, None] = {}
        self.up = False
        self._make_client = make_client
        self._sharded = sharded
        self._sub, self._unsub = ("ssubscribe", "sunsubscribe") if sharded else (
            "subscribe", "unsubscribe")
        self._on_message = on_message
        self._pubsub: PubSub | None = None
        self._waiting: dict[tuple[str, bytes], list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name=f"pubsub {self.name}")

    async def add(self, channel: bytes) -> None:
        self.channels[channel] = None
        await self._command(self._sub, channel)

    async def remove(self, channel: bytes) -> None:
        self.channels.pop(channel, None)
        await self._command(self._unsub, channel)

    async def _command(self, kind: str, channel: bytes) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.up:
            return  # the reader (re)subscribes the wanted set when it connects
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((kind, channel), []).append(future)
        try:
            await getattr(pubsub, kind)(channel)
            await asyncio.wait_for(asyncio.shield(future), CONFIRM_TIMEOUT)
        except _ERRORS as exc:
            log.debug("%s %r on %s: %s (the reader takes over)", kind, channel, self.name, exc)
        finally:
            waiters = self._waiting.get((kind, channel), [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop((kind, channel), None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ----------------------------------------------------------- the reader
    async def _run(self) -> None:
        failures = 0
        while True:
            client = self._make_client()
            try:
                async with client:
                    await self._serve(client)
            except _ERRORS as exc:
                if self.up or failures == 0:
                    log.warning("pub/sub connection to %s lost: %s", self.name, exc)
            finally:
                self.up = False
                self._pubsub = None
                self._release_waiters()
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    async def _serve(self, client: Redis) -> None:
        async with client.pubsub() as pubsub:
            await pubsub.ping()  # connects; fails fast while the server is away
            self._pubsub = pubsub
            self.up = True
            self.connects += 1
            if self.connects > 1:
                log.info("pub/sub connection to %s back: subscribing %d channels",
                         self.name, len(self.channels))
            for batch in self._batches():
                await getattr(pubsub, self._sub)(*batch)
            await self._read(pubsub)

    def _batches(self) -> list[list[bytes]]:
        """The wanted channels in commands of up to ``SUBSCRIBE_BATCH``; for
        SSUBSCRIBE, each command's channels share one slot (Redis requires it)."""
        groups: dict[int, list[bytes]] = {}
        for channel in self.channels:
            groups.setdefault(key_slot(channel) if self._sharded else 0, []).append(channel)
        return [group[i:i + SUBSCRIBE_BATCH] for group in groups.values()
                for i in range(0, len(group), SUBSCRIBE_BATCH)]

    async def _read(self, pubsub: PubSub) -> None:
        probing = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False,
                                               timeout=PROBE_INTERVAL)
            if message is None:
                if probing:
                    raise ConnectionError(f"no answer from {self.name} to PING")
                await pubsub.ping()
                probing = True
                continue
            probing = False
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        channel = message.get("channel")
        if kind in ("message", "smessage") and isinstance(channel, bytes):
            data = message["data"]
            if isinstance(data, bytes):
                self._on_message(channel, data)
        elif isinstance(channel, bytes):
            for future in self._waiting.pop((kind, channel), []):
                if not future.done():
                    future.set_result(None)

    def _release_waiters(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
