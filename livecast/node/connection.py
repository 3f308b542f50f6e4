"""One client connection as the node sees it: a transport to write bytes to.

All server-to-client frames are written here synchronously with
``transport.write`` (no per-member coroutine, docs/design.md, Bounded outbox); the
transport's write buffer is the bounded outbox whose size decides whether a
member is served in full, degraded (no Low/Lowest) or shed.

The outbox counts the kernel's send queue too: the kernel takes bytes first
(its send buffer bounded by ``LIVECAST_SNDBUF_KB``, ``bound_sndbuf``), and
only once it is full does asyncio's buffer fill.  So whenever asyncio's
buffer is non-empty, the kernel's unsent bytes (``SIOCOUTQ``, one ioctl) are
added: a member is judged by everything it has not read yet, and an ioctl is
paid only by members that lag.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import itertools
import socket
import struct
import termios
from typing import Any

import orjson

from livecast.core.wsframe import frame

_ids = itertools.count(1)
_OUTQ = termios.TIOCOUTQ  # SIOCOUTQ on Linux: bytes queued and not yet acknowledged
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_ACKED = struct.Struct("=Q")  # tcp_info.tcpi_bytes_acked (Linux >= 4.1), at byte 120
_ACKED_AT = 120


def kernel_queued(fd: int) -> int:
    """Bytes in the kernel's send queue of socket ``fd`` (0 if not told)."""
    if fd < 0:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, _OUTQ, buf, True)
    except OSError:
        return 0
    return buf[0]


def bytes_acked(transport: Any) -> int | None:
    """Bytes the peer has acknowledged so far (TCP_INFO), None if not told."""
    sock = transport.get_extra_info("socket")
    if sock is None or _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _ACKED_AT + _ACKED.size)
    except OSError:
        return None
    if len(info) < _ACKED_AT + _ACKED.size:
        return None
    return int(_ACKED.unpack_from(info, _ACKED_AT)[0])


def bound_sndbuf(transport: Any, size: int) -> int:
    """Set SO_SNDBUF of the transport's TCP socket to ``size`` (the kernel
    doubles it for its bookkeeping); return its fd, -1 if not a TCP socket."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return -1
    if size > 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    return int(sock.fileno())


class Connection:
    __slots__ = (
        "__weakref__",
        "avatar",
        "close_code",
        "closing",
        "fd",
        "guest",
        "held",
        "id",
        "logged_in",
        "nick",
        "peer",
        "rooms",
        "stall_acked",
        "stall_since",
        "transport",
        "user",
    )

    def __init__(self, transport: asyncio.BaseTransport | Any, peer: str = "") -> None:
        self.id = next(_ids)
        self.transport: Any = transport
        self.peer = peer
        self.user = ""
        self.logged_in = False
        self.guest = False
        self.nick = ""
        self.avatar = ""
        self.rooms: set[str] = set()
        self.closing = False
        self.close_code = 0
        self.fd = -1            # the TCP socket's fd, for the kernel's queue (-1: not told)
        self.stall_since = 0.0  # when the outbox was last seen non-empty and not draining
        self.stall_acked: int | None = None
        self.held = b""  # a frame the fan-out left for the next write (fanout.py)

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user!r} peer={self.peer}>"

    def buffered(self) -> int:
        """Bytes written and not yet taken by the peer: asyncio's buffer and,
        when that is non-empty, the kernel's send queue."""
        size = int(self.transport.get_write_buffer_size())
        if size and not self.transport.is_closing():
            size += kernel_queued(self.fd)
        return size

    def stalled(self, now: float, timeout: float) -> bool:
        """Whether the outbox has not drained at all for ``timeout`` seconds:
        asyncio's buffer non-empty at every look since, and no byte
        acknowledged by the peer (or, where the kernel does not tell, the
        outbox never smaller).  Asked by the heartbeat sweep only."""
        if not self.transport.get_write_buffer_size() or self.transport.is_closing():
            self.stall_since = 0.0
            return False
        acked = bytes_acked(self.transport)
        progress = -self.buffered() if acked is None else acked
        if not self.stall_since or self.stall_acked is None or progress > self.stall_acked:
            self.stall_since, self.stall_acked = now, progress
            return False
        return now - self.stall_since >= timeout

    def charge(self, size: int) -> None:
        """A reply of ``size`` bytes of the room's messages (a join's history
        or recovery) was made for this connection: its cost to the request
        budget, where the connection has one (``WsConnection``)."""

    def write(self, data: bytes) -> None:
        if self.held:  # the tick's frame, then this (its reply): one write, in order
            data, self.held = self.held + data, b""
        if not self.closing and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, obj: dict[str, Any]) -> None:
        self.write(frame(orjson.dumps(obj)))
