"""One pub/sub connection to one Redis server, kept subscribed by itself.

A ``Shard`` holds the set of channels it should be subscribed to and one
reader task.  The reader connects, subscribes every wanted channel (SUBSCRIBE,
or SSUBSCRIBE on a Redis Cluster master), then reads; when the connection
fails it marks itself down, waits a short backoff and does it all again, so
that after a Redis restart every current room is subscribed again without
anyone asking.

The connection is a plain ``asyncio.Protocol`` speaking RESP2 with hiredis's
parser, not redis-py's ``PubSub``: each message Redis pushes is parsed in
``data_received`` and handed on at once, with no coroutine, future or
timeout per message (redis-py's ``get_message`` costs about four times the
CPU per message received: docs/benchmarks.md, "The cluster: the cost").
Only what a subscriber needs is spoken: AUTH, SUBSCRIBE/SSUBSCRIBE and
their UN- forms, PING.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.crc import key_slot

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
PROBE_INTERVAL = 1.0
BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)  # seconds before reconnect attempts 1, 2, ...
SUBSCRIBE_BATCH = 512
_ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, ssl.SSLError)
_MESSAGES = (b"message", b"smessage")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a pub/sub connection goes: a TCP host and port, or a unix socket."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # a unix socket instead of host and port
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """``redis://``, ``rediss://`` or ``unix://``, as redis-py reads them."""
        kw = parse_url(url)
        tls = isinstance(kw.get("connection_class"), type) and issubclass(
            kw["connection_class"], SSLConnection)
        return cls(str(kw.get("host", "127.0.0.1")), int(kw.get("port", 6379)),
                   str(kw.get("path", "")), kw.get("username"), kw.get("password"), tls)


def command(*args: bytes | str) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Wire(asyncio.Protocol):
    """The connection: every reply parsed as it arrives and handed to ``on_reply``."""

    def __init__(self, on_reply: Callable[[Any], None]) -> None:
        self.parser = hiredis.Reader()
        self.on_reply = on_reply
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.heard = False  # anything read since the last probe

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass

    def data_received(self, data: bytes) -> None:
        self.heard = True
        parser = self.parser
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                self.on_reply(reply)
        except hiredis.ProtocolError as exc:
            self.fail(ConnectionError(f"protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc or ConnectionError("connection closed"))
            self.lost.exception()  # retrieved: the reader re-raises it

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("not connected")
        self.transport.write(data)

    def fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()
        if self.transport is not None:
            self.transport.close()


class Shard:
    def __init__(self, name: str, endpoint: Endpoint, sharded: bool,
                 on_message: Callable[[bytes, bytes], None]) -> None:
        self.name = name
        self.endpoint = endpoint
        self.channels: dict[bytes, None] = {}
        self.up = False
        self._sharded = sharded
        self._sub, self._unsub = (b"ssubscribe", b"sunsubscribe") if sharded else (
            b"subscribe", b"unsubscribe")
        self._on_message = on_message
        self._wire: _Wire | None = None
        self._auth: asyncio.Future[None] | None = None
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
        failures = 0
        while True:
            try:
                await self._serve()
            except _ERRORS as exc:
                if self.up or failures == 0:
                    log.warning("pub/sub connection to %s lost: %s", self.name, exc)
            finally:
                self.up = False
                wire, self._wire = self._wire, None
                if wire is not None and wire.transport is not None:
                    wire.transport.close()
                self._release_waiters()
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    async def _connect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        e = self.endpoint
        wire = _Wire(self._reply)
        self._wire = wire
        tls = ssl.create_default_context() if e.tls else None
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if e.path:
                await loop.create_unix_connection(lambda: wire, e.path)
            else:
                await loop.create_connection(lambda: wire, e.host, e.port, ssl=tls)
            if e.password is not None:  # the one reply awaited; pushes come after it
                auth = self._auth = loop.create_future()
                wire.send(command(b"AUTH", *([e.username] if e.username else []), e.password))
                await asyncio.wait([auth, wire.lost], return_when=asyncio.FIRST_COMPLETED)
                if wire.lost.done():
                    wire.lost.result()  # raises why (a refused AUTH: invariant 4)
        return wire

    async def _serve(self) -> None:
        wire = await self._connect()
        self.up = True
        self.connects += 1
        if self.connects > 1:
            log.info("pub/sub connection to %s back: subscribing %d channels",
                     self.name, len(self.channels))
        for batch in self._batches():
            wire.send(command(self._sub, *batch))
        await self._watch(wire)

    async def _watch(self, wire: _Wire) -> None:
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
            for future in self._waiting.pop((kind, reply[1]), []):
                if not future.done():
                    future.set_result(None)
            return
        auth = self._auth
        if isinstance(reply, hiredis.ReplyError):
            log.warning("pub/sub connection to %s: %s", self.name, reply)
            if self._wire is not None:
                self._wire.fail(ConnectionError(f"Redis answered: {reply}"))
        elif auth is not None and not auth.done():
            auth.set_result(None)  # the AUTH's OK (a pong is a list: ``[b"pong", b""]``)

    def _release_waiters(self) -> None:
        if self._auth is not None and not self._auth.done():
            self._auth.cancel()
        self._auth = None
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
