"""A livecast WebSocket client for gevent greenlets (docs/protocol.md).

websocket-client does the framing; under locust's gevent monkey-patching its
socket calls yield to other greenlets, so a connection costs one reader
greenlet and no thread, and there is no asyncio anywhere.

Invariants:
- One reader greenlet per connection does every read of its socket (gevent
  refuses two greenlets waiting on one socket); writes may come from any
  greenlet (websocket-client serialises them with its lock).
- Every request carries an integer ``id`` and its reply is matched by id
  (replies are not in request order: protocol.md "Requests and replies").
  A request's callback runs exactly once, in the reader greenlet or the
  sweeper: with the server's reply, or with a local error reply
  (``code`` ``LOCAL_ERROR``) when the connection closed or no reply came
  within ``reply_timeout``. After ``close()`` (our own), pending callbacks are
  dropped: what we abandon is not the server's failure.
- Pushes (``msgs``, ``tips``, ``kicked``) reach ``on_push`` in arrival order;
  ``on_close(code)`` runs once when the server (or the network) ends the
  connection, never after our own ``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import gevent
import orjson
import websocket
from gevent.event import AsyncResult

Reply = dict[str, Any]
OnReply = Callable[[Reply, float], None]  # (reply, milliseconds since the request)
OnPush = Callable[[Reply, int], None]  # (push, frame size in bytes)
OnClose = Callable[[int], None]

LOCAL_ERROR = -1  # the ``code`` of a reply made up locally (closed, timed out)
ABNORMAL = 1006  # close code when the connection dropped without a close frame

_LIVE: set[WsClient] = set()
_sweeper: gevent.Greenlet | None = None


def _local(info: str) -> Reply:
    return {"op": "reply", "code": LOCAL_ERROR, "info": info}


def _sweep_forever() -> None:
    while True:
        gevent.sleep(1.0)
        now = time.perf_counter()
        for client in list(_LIVE):
            client.expire(now)


class WsClient:
    """One connection: ``connect``, ``request``/``call``, ``close``."""

    def __init__(self, url: str, on_push: OnPush, on_close: OnClose,
                 reply_timeout: float = 30.0) -> None:
        self.url = url
        self.on_push = on_push
        self.on_close = on_close
        self.reply_timeout = reply_timeout
        self.pending: dict[int, tuple[float, OnReply]] = {}
        self.close_code: int | None = None
        self.closing = False
        self._next_id = 0
        self._ws: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None

    @property
    def open(self) -> bool:
        return self._ws is not None and self.close_code is None and not self.closing

    def connect(self, timeout: float = 10.0) -> None:
        """The upgrade; raises (OSError, WebSocketException) when it fails."""
        global _sweeper
        self._ws = websocket.create_connection(
            self.url, timeout=timeout, skip_utf8_validation=True, enable_multithread=True,
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))
        self._ws.settimeout(None)
        _LIVE.add(self)
        self._reader = gevent.spawn(self._read_loop)
        if _sweeper is None:
            _sweeper = gevent.spawn(_sweep_forever)

    def request(self, op: str, on_reply: OnReply, **fields: Any) -> None:
        """Send ``op``; ``on_reply`` runs once with its reply (see the module doc)."""
        self._next_id += 1
        rid = self._next_id
        started = time.perf_counter()
        if not self.open or self._ws is None:
            on_reply(_local("connection closed"), 0.0)
            return
        self.pending[rid] = (started, on_reply)
        try:
            self._ws.send(orjson.dumps({"op": op, "id": rid, **fields}))
        except (websocket.WebSocketException, OSError):
            if self.pending.pop(rid, None) is not None:
                on_reply(_local("connection closed"), (time.perf_counter() - started) * 1000)

    def call(self, op: str, **fields: Any) -> tuple[Reply, float]:
        """Send ``op`` and wait (this greenlet only) for its reply and its time in ms."""
        done: AsyncResult = AsyncResult()
        self.request(op, lambda reply, ms: done.set((reply, ms)), **fields)
        result: tuple[Reply, float] = done.get()
        return result

    def expire(self, now: float) -> None:
        """Fail the requests that have waited longer than ``reply_timeout``."""
        limit = self.reply_timeout
        for rid, (started, on_reply) in list(self.pending.items()):
            if now - started > limit and self.pending.pop(rid, None) is not None:
                on_reply(_local(f"no reply within {limit:g} s"), (now - started) * 1000)

    def close(self) -> None:
        """Our own close: stop reading, send a close frame, drop what is pending."""
        self.closing = True
        self.pending.clear()
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2.0)
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.send_close(websocket.STATUS_NORMAL)
            ws.shutdown()
        _LIVE.discard(self)

    def _read_loop(self) -> None:
        code = ABNORMAL
        try:
            code = self._read_frames()
        except (websocket.WebSocketException, OSError, ValueError):
            code = ABNORMAL
        finally:
            self._finish(code)

    def _read_frames(self) -> int:
        """Read until a close frame; returns its code."""
        assert self._ws is not None
        while True:
            opcode, data = self._ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._dispatch(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return int(struct.unpack("!H", data[:2])[0]) if len(data) >= 2 else 1005

    def _dispatch(self, data: bytes) -> None:
        frame = orjson.loads(data)
        if not isinstance(frame, dict):
            return
        if frame.get("op") == "reply":
            entry = self.pending.pop(frame.get("id"), None)  # type: ignore[arg-type]
            if entry is not None:
                started, on_reply = entry
                on_reply(frame, (time.perf_counter() - started) * 1000)
            return
        self.on_push(frame, len(data))

    def _finish(self, code: int) -> None:
        _LIVE.discard(self)
        if self.close_code is not None:
            return
        self.close_code = code
        if self.closing:
            return
        if self._ws is not None:
            self._ws.shutdown()
        pending, self.pending = self.pending, {}
        for started, on_reply in pending.values():
            on_reply(_local(f"connection closed ({code})"),
                     (time.perf_counter() - started) * 1000)
        self.on_close(code)
