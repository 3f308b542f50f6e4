"""The bench's member connection: a raw asyncio Protocol, no aiohttp.

It does the WebSocket handshake itself, logs in and joins one room (in its
``dialect``: livecast's two pipelined requests, ids 1 and 2, or Socket.IO's
connect and join event), then counts ``msgs`` pushes by scanning bytes
(``wire.seq_span``): no JSON decoding per message.  Other frames (replies,
tips, kicked) are rare and decoded with orjson by the dialect.

Invariants:
- ``ready`` resolves exactly once: 0 when the join was answered with code 0,
  otherwise the refusing reply's code, or a negative number when the
  connection closed first (minus the close code, or -1 when none was seen).
- Seq accounting (docs/protocol.md, seq and gap detection): seq is contiguous per room and
  starts at 1, and a member joins before the first message, so every seq it
  does not see is counted once in ``Tally.gaps`` (between frames, within a
  frame, and at the end by ``tail_gap``); a seq seen twice or out of order
  counts in ``Tally.disorder``.
- Latency is the receive time minus the sender's timestamp, read only on
  members created with ``sample=True``; at most ``Tally.lat_cap`` samples.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, cast

from livecast.bench.dialects import JOIN_ID, LOGIN_ID, Livecast
from livecast.bench.wire import client_frame, close_code, read_frame, seq_span, stamps
from livecast.core.wsframe import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT


class Tally:
    """What a set of members received (one per client process)."""

    __slots__ = ("closes", "deliveries", "disorder", "frames", "gaps", "kicked", "lat_cap",
                 "latencies")

    def __init__(self, lat_cap: int = 500_000) -> None:
        self.deliveries = 0
        self.frames = 0
        self.gaps = 0
        self.disorder = 0
        self.kicked = 0
        self.closes: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.lat_cap = lat_cap

    def snapshot(self) -> dict[str, int]:
        return {"deliveries": self.deliveries, "frames": self.frames, "gaps": self.gaps}


class Member(asyncio.Protocol):
    __slots__ = ("buf", "dialect", "handshaking", "hello", "last_seq", "prefix", "ready", "room",
                 "sample", "setup", "tally", "transport")

    def __init__(self, tally: Tally, dialect: Livecast, hello: bytes, setup: bytes, room: int,
                 sample: bool, ready: asyncio.Future[int]) -> None:
        self.tally = tally
        self.dialect = dialect
        self.prefix = dialect.msgs_prefix
        self.hello = hello
        self.setup = setup
        self.room = room
        self.sample = sample
        self.ready = ready
        self.buf = b""
        self.handshaking = True
        self.last_seq = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.hello)

    def connection_lost(self, exc: Exception | None) -> None:
        self._resolve(-1)
        self.transport = None

    def _resolve(self, code: int) -> None:
        if not self.ready.done():
            self.ready.set_result(code)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if self.handshaking:
            data = self._handshake(data)
        pos, n = 0, len(data)
        while pos < n:
            f = read_frame(data, pos)
            if f is None:
                break
            op, start, pos, _mask = f
            if op == OP_TEXT:
                if data.startswith(self.prefix, start):
                    self._msgs(data, start, pos)
                else:
                    self.dialect.on_text(self, data[start:pos])
            elif op == OP_PING:
                self.write(client_frame(data[start:pos], OP_PONG))
            elif op == OP_CLOSE:
                self._closed(close_code(data[start:pos]))
                return
        if pos < n:
            self.buf = data[pos:]

    def _handshake(self, data: bytes) -> bytes:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf = data
            return b""
        self.handshaking = False
        if not data.startswith(b"HTTP/1.1 101"):
            self._resolve(-int(data[9:12] or b"1"))
            self.abort()
            return b""
        self.dialect.opened(self)
        return data[end + 4:]

    def _msgs(self, data: bytes, start: int, end: int) -> None:
        count, first, last = seq_span(data, start, end)
        t = self.tally
        t.deliveries += count
        t.frames += 1
        expect = self.last_seq + 1
        if first > expect:
            t.gaps += first - expect
        elif first < expect:
            t.disorder += 1
        missing = last - first + 1 - count
        if missing > 0:
            t.gaps += missing
        elif missing < 0:
            t.disorder += 1
        self.last_seq = max(last, self.last_seq)
        if self.sample and len(t.latencies) < t.lat_cap:
            now = time.time()
            t.latencies.extend([(now - s) * 1000.0 for s in stamps(data, start, end)])

    def on_other(self, obj: Any) -> None:
        """A frame that is not ``msgs``: setup replies, kicked; tips are ignored."""
        op = obj.get("op")
        if op == "reply":
            code = int(obj.get("code", -1))
            if obj.get("id") == JOIN_ID or (obj.get("id") == LOGIN_ID and code):
                self._resolve(code)
        elif op == "kicked":
            self.tally.kicked += 1

    def _closed(self, code: int) -> None:
        self.tally.closes[code] += 1
        self._resolve(-code)
        self.abort()

    def tail_gap(self, room_max_seq: int) -> int:
        """Messages of the room delivered after this member's last seen seq."""
        return max(0, room_max_seq - self.last_seq)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
