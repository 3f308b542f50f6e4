"""One pub/sub connection to one Redis server, kept subscribed by itself.

A ``Shard`` holds the set of channels it should be subscribed to and one
reader task.  The reader connects, subscribes every wanted channel (SUBSCRIBE,
or SSUBSCRIBE on a Redis Cluster master), then reads; when the connection
fails it marks itself down, waits a short backoff and does it all again, so
that after a Redis restart every current room is subscribed again without
anyone asking.

The connection is a ``redis_wire.Wire`` (a plain ``asyncio.Protocol``
speaking RESP2 with hiredis's parser), not redis-py's ``PubSub``: each
message Redis pushes is parsed in ``data_received`` and handed on at once,
with no coroutine, future or timeout per message (redis-py's
``get_message`` cost about three times the CPU per message received:
docs/benchmarks.md, "The cluster: the cost").  Only what a subscriber
needs is spoken: AUTH, SUBSCRIBE/SSUBSCRIBE and their UN- forms, PING.

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
4. An error reply (a refused AUTH, a SSUBSCRIBE to a slot the server does not
   serve) closes the connection: the reader connects again after its backoff.
5. A sign that a channel's slot is served elsewhere now is reported to
   ``on_moved`` (a Redis Cluster's slot moved, or its master failed over):
   a ``MOVED`` error reply, a ``sunsubscribe`` Redis pushed for a channel
   still wanted (no one here asked for it), or each failed connection from
   the second in a row on (a replica is promoted only after the cluster's
   node timeout: the slot map is asked again until it names a new master).
   The broker then maps the channels to their masters again and moves them
   (``forget`` here, ``add`` on the new master's shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.crc import key_slot

from livecast.backplane.redis_wire import ERRORS as _ERRORS
from livecast.backplane.redis_wire import Endpoint, Wire, command, open_wire

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 2.0
PROBE_INTERVAL = 1.0
BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)  # seconds before reconnect attempts 1, 2, ...
SUBSCRIBE_BATCH = 512
_MESSAGES = (b"message", b"smessage")


class Shard:
    def __init__(self, name: str, endpoint: Endpoint, sharded: bool,
                 on_message: Callable[[bytes, bytes], None],
                 on_moved: Callable[[], None] | None = None) -> None:
        self.name = name
        self.endpoint = endpoint
        self.channels: dict[bytes, None] = {}
        self.up = False
        self._sharded = sharded
        self._sub, self._unsub = (b"ssubscribe", b"sunsubscribe") if sharded else (
            b"subscribe", b"unsubscribe")
        self._on_message = on_message
        self._on_moved = on_moved
        self._wire: Wire | None = None
        self._waiting: dict[tuple[bytes, bytes], list[asyncio.Future[None]]] = {}
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

    def forget(self, channel: bytes) -> None:
        """No longer wanted here, with no command (its slot is served elsewhere:
        an unsubscribe would be refused, and is done already)."""
        self.channels.pop(channel, None)

    async def _command(self, kind: bytes, channel: bytes) -> None:
        wire = self._wire
        if wire is None or not self.up:
            return  # the reader (re)subscribes the wanted set when it connects
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((kind, channel), []).append(future)
        try:
            wire.send(command(kind, channel))
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
        failures = 0  # the backoff's step: it grows, whatever came in between
        refused = 0  # connections refused in a row
        while True:
            try:
                await self._serve()
            except _ERRORS as exc:
                if self.up or failures == 0:
                    log.warning("pub/sub connection to %s lost: %s", self.name, exc)
                refused = 0 if self.up else refused + 1
                if refused >= 2:  # a dead master: failed over? asked again each time
                    self._moved()  # (invariant 5), until the slot map names another
            finally:
                self.up = False
                wire, self._wire = self._wire, None
                if wire is not None:
                    wire.fail(ConnectionError("the reader stopped"))
                self._release_waiters()
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    async def _serve(self) -> None:
        wire = self._wire = await open_wire(self.endpoint, self._reply)
        self.up = True
        self.connects += 1
        if self.connects > 1:
            log.info("pub/sub connection to %s back: subscribing %d channels",
                     self.name, len(self.channels))
        for batch in self._batches():
            wire.send(command(self._sub, *batch))
        await self._watch(wire)

    async def _watch(self, wire: Wire) -> None:
        """Until the connection is lost; PING when silent (invariant 3)."""
        probing = False
        while True:
            wire.heard = False
            done, _ = await asyncio.wait([wire.lost], timeout=PROBE_INTERVAL)
            if done:
                wire.lost.result()  # raises why
            if wire.heard:
                probing = False
                continue
            if probing:
                raise ConnectionError(f"no answer from {self.name} to PING")
            wire.send(command(b"PING"))
            probing = True

    def _batches(self) -> list[Sequence[bytes]]:
        """The wanted channels in commands of up to ``SUBSCRIBE_BATCH``; for
        SSUBSCRIBE, each command's channels share one slot (Redis requires it)."""
        groups: dict[int, list[bytes]] = {}
        for channel in self.channels:
            groups.setdefault(key_slot(channel) if self._sharded else 0, []).append(channel)
        return [group[i:i + SUBSCRIBE_BATCH] for group in groups.values()
                for i in range(0, len(group), SUBSCRIBE_BATCH)]

    def _reply(self, reply: Any) -> None:
        """One reply read: a message, a confirmation, a pong, or an error."""
        if isinstance(reply, list) and len(reply) >= 3:
            kind = reply[0]
            if kind in _MESSAGES:
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:  # the next message is read all the same
                    log.exception("a message on %r failed", reply[1])
                return
            waiters = self._waiting.pop((kind, reply[1]), [])
            for future in waiters:
                if not future.done():
                    future.set_result(None)
            if kind == b"sunsubscribe" and not waiters and reply[1] in self.channels:
                self._moved()  # pushed by Redis: the slot went elsewhere (invariant 5)
            return
        if isinstance(reply, hiredis.ReplyError):  # invariant 4 (a pong: [b"pong", b""])
            log.warning("pub/sub connection to %s: %s", self.name, reply)
            if str(reply).startswith("MOVED"):
                self._moved()
            if self._wire is not None:
                self._wire.fail(ConnectionError(f"Redis answered: {reply}"))

    def _moved(self) -> None:
        if self._on_moved is not None:
            self._on_moved()

    def _release_waiters(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
