"""The first bytes of every connection: a WebSocket upgrade to ``/v1/ws`` is
answered here and the socket handed to a ``WsConnection``; anything else is
handed, bytes and all, to the aiohttp app's own protocol.

Upgraded sockets never pass through aiohttp's request and WebSocket machinery,
which would cost each idle member about 12 KB (docs/benchmarks.md, "Memory").
The decision is made here on the connection's first request, once its head
has ended (the blank line; one ended by bare LFs goes to aiohttp as it is,
which answers 400): a head that is malformed, over 32 KiB
(``MAX_HEAD_BYTES``), for another path, or a refused upgrade goes to aiohttp,
which answers it (``ws.handle_ws`` gives the reason for ``/v1/ws``).  A head
not ended within ``MAX_FIRST_HEAD`` bytes is answered 431 here and the
connection closed: nothing is handed over before its head is whole.
An upgrade that comes as a later request on a kept-alive connection (clients
with a connection pool send them) reaches ``ws.handle_ws``, which takes the
socket back from aiohttp onto the same path.  While the node drains,
upgrades go to aiohttp too, and are answered 503.

Time: a new connection has ``handshake_timeout`` seconds
(LIVECAST_HANDSHAKE_TIMEOUT) to send its first request's head, whole, or a
refused one's peer to close; past it the socket is closed.  Once handed to
aiohttp, a connection is aiohttp's: idle between requests (a later request's
head arriving slowly included) it is closed after ``runner.KEEPALIVE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from aiohttp import web

from livecast.core.handshake import (
    HEAD_END,
    MAX_HEAD_BYTES,
    parse_head,
    upgrade_error,
)
from livecast.gateway.keys import CONNECTION, NODE
from livecast.gateway.ws import WS_PATH, WsConnection, accept
from livecast.node.node import Node

# the longest first head the front waits for: twice the upgrade limit, so that
# a whole head a little over it still reaches aiohttp and gets its reason (400)
MAX_FIRST_HEAD = 2 * MAX_HEAD_BYTES
_REASON = f"request head not ended within {MAX_FIRST_HEAD // 1024} KiB".encode()
# RFC 6585 section 5; "Connection: close", then a staged close (RFC 9112 section 9.6)
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n"
             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REASON), _REASON))


class Front(asyncio.Protocol):
    __slots__ = ("buf", "cls", "http", "node", "refused", "timer", "transport")

    def __init__(self, app: web.Application, http: Callable[[], asyncio.Protocol]) -> None:
        self.node: Node = app[NODE]
        self.cls = app.get(CONNECTION, WsConnection)
        self.http = http
        self.buf: bytes | bytearray = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.refused = False  # answered 431: what comes is read and dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timer = asyncio.get_running_loop().call_later(
            self.node.settings.handshake_timeout, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        seen = len(self.buf)  # searched already, but for a separator cut in two
        buf: bytes | bytearray = data
        if isinstance(self.buf, bytearray):
            self.buf += data
            buf = self.buf
        end = buf.find(HEAD_END, max(0, seen - len(HEAD_END) + 1), MAX_FIRST_HEAD)
        if end < 0:
            if buf.find(b"\n\n", max(0, seen - 1), MAX_FIRST_HEAD) >= 0:
                self._to_http(bytes(buf))  # a head ended by bare LFs: aiohttp answers it
            elif len(buf) >= MAX_FIRST_HEAD:
                self._too_large()
            elif not seen:
                self.buf = bytearray(buf)  # appended to in place from now on
            return
        end += len(HEAD_END)
        head = parse_head(bytes(buf[:end])) if end <= MAX_HEAD_BYTES else None
        if (head is None or head.path != WS_PATH or self.node.draining
                or upgrade_error(head.method, head.version, head.headers) is not None):
            self._to_http(bytes(buf))
        else:
            self._to_ws(head.headers["sec-websocket-key"], bytes(buf[end:]))

    def _too_large(self) -> None:
        """431, then a staged close: this side's FIN after the answer, and the
        rest read and dropped until the peer's FIN or the handshake timer
        (closing with input unread would reset the connection, and the reset
        could discard the answer)."""
        assert self.transport is not None
        self.refused, self.buf = True, b""
        self.transport.write(TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def _handover(self) -> asyncio.Transport:
        assert self.transport is not None and self.timer is not None
        self.timer.cancel()
        transport = self.transport
        self.transport = self.timer = None
        self.buf = b""
        return transport

    def _to_http(self, buf: bytes) -> None:
        protocol = self.http()
        transport = self._handover()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(buf)

    def _to_ws(self, key: str, rest: bytes) -> None:
        accept(self.node, self._handover(), key, rest, self.cls)
