"""The first bytes of every connection: a WebSocket upgrade to ``/v1/ws`` is
answered here and the socket handed to a ``WsConnection``; anything else is
handed, bytes and all, to the aiohttp app's own protocol.

Upgraded sockets never pass through aiohttp's request and WebSocket machinery,
which would cost each idle member about 12 KB (docs/benchmarks.md, "Memory").
The decision is made here on the connection's first request; a head that
is malformed, too long, for another path, or a refused upgrade goes to
aiohttp, which answers it (``ws.handle_ws`` gives the reason for ``/v1/ws``).
An upgrade that comes as a later request on a kept-alive connection (clients
with a connection pool send them) reaches ``ws.handle_ws``, which takes the
socket back from aiohttp onto the same path.  While the node drains,
upgrades go to aiohttp too, and are answered 503.  A new connection has
``handshake_timeout`` seconds (LIVECAST_HANDSHAKE_TIMEOUT) to send its
first request's head.
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


class Front(asyncio.Protocol):
    __slots__ = ("buf", "cls", "http", "node", "timer", "transport")

    def __init__(self, app: web.Application, http: Callable[[], asyncio.Protocol]) -> None:
        self.node: Node = app[NODE]
        self.cls = app.get(CONNECTION, WsConnection)
        self.http = http
        self.buf: bytes | bytearray = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

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
        seen = len(self.buf)  # searched already, but for a separator cut in two
        buf: bytes | bytearray = data
        if isinstance(self.buf, bytearray):
            self.buf += data
            buf = self.buf
        end = buf.find(HEAD_END, max(0, seen - len(HEAD_END) + 1), MAX_HEAD_BYTES)
        if end < 0:
            if len(buf) >= MAX_HEAD_BYTES:
                self._to_http(bytes(buf))
            elif not seen:
                self.buf = bytearray(buf)  # appended to in place from now on
            return
        head = parse_head(bytes(buf[:end + len(HEAD_END)]))
        if (head is None or head.path != WS_PATH or self.node.draining
                or upgrade_error(head.method, head.version, head.headers) is not None):
            self._to_http(bytes(buf))
        else:
            self._to_ws(head.headers["sec-websocket-key"], bytes(buf[end + len(HEAD_END):]))

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
