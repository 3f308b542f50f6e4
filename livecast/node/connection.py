"""One client connection as the node sees it: a transport to write bytes to.

All server-to-client frames are written here synchronously with
``transport.write`` (no per-member coroutine, docs/design.md, Bounded outbox); the
transport's write buffer is the bounded outbox whose size decides whether a
member is served in full, degraded (no Low/Lowest) or shed.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson

from livecast.core.wsframe import frame

_ids = itertools.count(1)


class Connection:
    __slots__ = (
        "__weakref__",
        "avatar",
        "close_code",
        "closing",
        "guest",
        "id",
        "logged_in",
        "nick",
        "peer",
        "rooms",
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

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user!r} peer={self.peer}>"

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def write(self, data: bytes) -> None:
        if not self.closing and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, obj: dict[str, Any]) -> None:
        self.write(frame(orjson.dumps(obj)))
