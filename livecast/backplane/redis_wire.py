"""RESP on a plain ``asyncio.Protocol``, for the hot connections of the Redis
broker on one server: a pub/sub reader (redis_pubsub.Shard), the owner's
per-tick publish script (``Publisher``) and the control messages (a
reply-less ``Publisher``).  redis-py keeps every other command (leases,
heartbeats, a Redis Cluster's); these carry a message per forwarded send and
per batch, where redis-py's client costs several times the CPU of the parse
itself (docs/benchmarks.md, "The cluster: the cost").

Each reply is parsed by hiredis as bytes arrive (``data_received``) and handed
on at once: no coroutine, future or timeout per reply read.

Invariants:
1. A connection that fails (closed, a protocol error, a reply that does not
   come within ``COMMAND_TIMEOUT``) is dropped whole: every call waiting on it
   fails with ``ConnectionError`` and the next call connects again, so a
   reply is never taken for another command's.
2. ``Publisher.call_many`` writes its commands in one write and its replies
   come in the same order (one connection, pipelined): one round trip.
3. A reply-less ``Publisher`` (``replies=False``) asks Redis for no reply on
   its connection (``CLIENT REPLY OFF``, sent first on every connection it
   makes) and ``send_many`` only writes: nothing waits on Redis and no reply
   wakes the process.  Whatever Redis answers there all the same (an error,
   or a server that keeps replies on) is counted and an error logged, never
   taken for anything.  Its unsent bytes are bounded (``SEND_BUFFER_MAX``):
   past that the connection is dropped, as a dead one is.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

__all__ = ["CONNECT_TIMEOUT", "ERRORS", "Endpoint", "Publisher", "Wire", "command", "open_wire"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 2.0
SEND_BUFFER_MAX = 4 << 20  # bytes a reply-less connection may hold unsent (invariant 3)
ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, ssl.SSLError)


class NotSent(ConnectionError):
    """The connection could not be made: nothing of the call was sent."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a connection goes: a TCP host and port, or a unix socket."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # a unix socket instead of host and port
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # rediss:// options, as redis-py reads them from the URL's query
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"  # "required", "optional" or "none"
    check_hostname: bool | None = None  # None: as cert_reqs implies

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """``redis://``, ``rediss://`` or ``unix://``, as redis-py reads them
        (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
        and ``ssl_check_hostname`` included, so that these connections trust
        what redis-py's do)."""
        kw = parse_url(url)
        tls = isinstance(kw.get("connection_class"), type) and issubclass(
            kw["connection_class"], SSLConnection)
        check = kw.get("ssl_check_hostname")
        return cls(str(kw.get("host", "127.0.0.1")), int(kw.get("port", 6379)),
                   str(kw.get("path", "")), kw.get("username"), kw.get("password"), tls,
                   _text(kw.get("ssl_ca_certs")), _text(kw.get("ssl_certfile")),
                   _text(kw.get("ssl_keyfile")),
                   str(kw.get("ssl_cert_reqs") or "required").lower(),
                   None if check is None else bool(check))

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of a ``rediss://`` endpoint (None without TLS)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_certs)
        reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}.get(
            self.cert_reqs, ssl.CERT_REQUIRED)
        context.check_hostname = (reqs != ssl.CERT_NONE if self.check_hostname is None
                                  else self.check_hostname and reqs != ssl.CERT_NONE)
        context.verify_mode = reqs
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def command(*args: bytes | str | int) -> bytes:
    """One command in RESP (hiredis's own encoder; its stub types the
    argument as a one-item tuple, hence the cast)."""
    return bytes(hiredis.pack_command(cast(Any, args)))


class Wire(asyncio.Protocol):
    """One connection: every reply parsed as it arrives and handed to ``on_reply``
    (an error reply as a ``hiredis.ReplyError`` value)."""

    def __init__(self, on_reply: Callable[[Any], None]) -> None:
        self.parser = hiredis.Reader()
        self.on_reply = on_reply
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.heard = False  # anything read since the owner last cleared it

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
        self._lose(exc or ConnectionError("connection closed"))

    def _lose(self, exc: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()  # retrieved: whoever waits re-raises it

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or self.lost.done():
            raise ConnectionError("not connected")
        self.transport.write(data)

    def fail(self, exc: Exception) -> None:
        """Drop the connection (invariant 1)."""
        self._lose(exc)
        if self.transport is not None:
            self.transport.close()


async def open_wire(endpoint: Endpoint, on_reply: Callable[[Any], None]) -> Wire:
    """A connected, authenticated ``Wire`` (within ``CONNECT_TIMEOUT``)."""
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[Any] = asyncio.Queue()
    wire = Wire(replies.put_nowait)
    e = endpoint
    tls = e.tls_context()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if e.path:
                await loop.create_unix_connection(lambda: wire, e.path)
            else:
                await loop.create_connection(lambda: wire, e.host, e.port, ssl=tls)
            if e.password is not None:
                wire.send(command(b"AUTH", *([e.username] if e.username else []), e.password))
                got = asyncio.ensure_future(replies.get())
                await asyncio.wait([got, wire.lost], return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    wire.lost.result()  # raises why
                if isinstance(got.result(), hiredis.ReplyError):
                    raise ConnectionError(f"Redis refused AUTH: {got.result()}")
    except BaseException:
        wire.fail(ConnectionError("not connected"))
        raise
    wire.on_reply = on_reply
    return wire


class Publisher:
    """Commands on a connection of their own, pipelined (invariant 2); with
    ``replies=False``, written and not answered (invariant 3)."""

    def __init__(self, endpoint: Endpoint, *, replies: bool = True) -> None:
        self.endpoint = endpoint
        self.replies = replies
        self.stray = 0  # replies heard on a reply-less connection (invariant 3)
        self.last_stray: Any = None
        self._wire: Wire | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._connecting = asyncio.Lock()

    async def call_many(self, commands: Sequence[bytes]) -> list[Any]:
        """Each command's reply, in order; ``ConnectionError``/``TimeoutError``/
        ``OSError`` when the connection fails, a ``hiredis.ReplyError`` value in
        place of a refused command's reply."""
        assert self.replies
        wire = self._wire if self._wire is not None else await self._connected()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(futures)
        try:
            wire.send(b"".join(commands))
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return [await f for f in futures]
        except BaseException as exc:
            self._drop(wire, exc)
            raise

    async def send_many(self, commands: Sequence[bytes]) -> None:
        """A reply-less connection: the commands in one write, done once written
        (``ConnectionError``/``OSError`` when it cannot connect or is dropped)."""
        assert not self.replies
        wire = self._wire if self._wire is not None else await self._connect()
        try:
            wire.send(b"".join(commands))
            transport = wire.transport
            if transport is not None and transport.get_write_buffer_size() > SEND_BUFFER_MAX:
                raise ConnectionError("Redis does not read what is sent")
        except BaseException as exc:
            self._drop(wire, exc)
            raise

    async def _connected(self) -> Wire:
        """``_connect``, its failure a ``NotSent``: no command went out."""
        try:
            return await self._connect()
        except ERRORS as exc:
            raise NotSent(f"cannot connect: {exc}") from exc

    async def _connect(self) -> Wire:
        async with self._connecting:
            if self._wire is None:
                wire = await open_wire(self.endpoint, self._reply)
                if not self.replies:
                    wire.send(command(b"CLIENT", b"REPLY", b"OFF"))
                wire.lost.add_done_callback(self._lost)
                self._wire = wire
            return self._wire

    def _reply(self, reply: Any) -> None:
        if not self.replies:  # invariant 3
            self.stray += 1
            self.last_stray = reply
            if isinstance(reply, hiredis.ReplyError):
                log.warning("Redis refused a command sent without reply: %s", reply)
            return
        if self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_result(reply)

    def _lost(self, lost: asyncio.Future[None]) -> None:
        wire = self._wire
        if wire is not None and wire.lost is lost:
            self._drop(wire, ConnectionError("connection lost"))

    def _drop(self, wire: Wire, exc: BaseException) -> None:
        """The connection goes, and every call waiting on it fails (invariant 1)."""
        wire.fail(ConnectionError(str(exc) or type(exc).__name__))
        if self._wire is not wire:
            return  # dropped already: its calls failed then
        self._wire = None
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(ConnectionError(f"connection dropped: {exc!r}"))
                future.exception()

    def close(self) -> None:
        if self._wire is not None:
            self._drop(self._wire, ConnectionError("closed"))
