"""The raw writer: the least a server can do for the bench's workload.

``python -m livecast.bench.baseline --port P --tick-ms T`` accepts the same
WebSocket handshake and just enough of protocol v1 for the bench's clients
(``login``, ``join``, ``send``, ``ping``; no UserSig check, no rate limit, no
validation), and fans out exactly as livecast is meant to at its limit
(docs/design.md, "The path of one message"): per room and tick, the messages that arrived are
given seqs, encoded once into one ``msgs`` frame, and that frame is written
with one ``transport.write`` per member.  Nothing else: no buffer checks, no
metrics, no per-member work beyond the write.  Dispatch timing is livecast's
(a quiet room sends at once, a busy one once per tick), so the two servers
write the same number of frames; livecast's server CPU per delivery divided
by this one's is livecast's overhead over the physical limit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson

from livecast.core.handshake import HEAD_END, accept_key, parse_head, switching_protocols
from livecast.core.protocol import MAX_FRAME_BYTES
from livecast.core.wsframe import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Reader,
    WsError,
    close_frame,
    frame,
)
from livecast.runner import raise_fd_limit


class Room:
    __slots__ = ("gid", "handle", "last", "members", "pending", "seq")

    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.members: dict[asyncio.Transport, None] = {}
        self.pending: list[tuple[Conn, Any, dict[str, Any]]] = []
        self.seq = 0
        self.handle: asyncio.Handle | None = None
        self.last = -1e9


class Hub:
    """Rooms and the per-tick dispatch."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.rooms: dict[str, Room] = {}

    def room(self, gid: str) -> Room:
        room = self.rooms.get(gid)
        if room is None:
            room = self.rooms[gid] = Room(gid)
        return room

    def submit(self, conn: Conn, rid: Any, req: dict[str, Any]) -> None:
        room = self.room(str(req.get("groupId")))
        room.pending.append((conn, rid, req))
        if room.handle is None:
            loop = asyncio.get_running_loop()
            due = room.last + self.tick
            if due <= loop.time():
                room.handle = loop.call_soon(self.dispatch, room)
            else:
                room.handle = loop.call_at(due, self.dispatch, room)

    def dispatch(self, room: Room) -> None:
        room.handle = None
        room.last = asyncio.get_running_loop().time()
        batch, room.pending = room.pending, []
        now_ms = int(time.time() * 1000)
        wires = []
        for conn, _rid, req in batch:
            room.seq += 1
            wires.append({"seq": room.seq, "time": now_ms, "from": conn.user, "nick": "",
                          "avatar": "", "priority": req.get("priority", "Normal"),
                          "random": req.get("random", 0), "msgBody": req.get("msgBody"),
                          "cloudCustomData": req.get("cloudCustomData", "")})
        data = frame(orjson.dumps({"op": "msgs", "groupId": room.gid, "msgs": wires}))
        for transport in room.members:
            transport.write(data)
        first = room.seq - len(batch)
        for k, (conn, rid, _req) in enumerate(batch):
            conn.reply(rid, msgSeq=first + k + 1, msgTime=now_ms, dropReason="")


class Conn(asyncio.Protocol):
    __slots__ = ("buf", "hub", "joined", "open", "reader", "transport", "user")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buf = b""  # the handshake's head, until it is whole
        self.open = False
        self.reader = Reader(MAX_FRAME_BYTES)
        self.user = ""
        self.joined: list[Room] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        for room in self.joined:
            room.members.pop(self.transport, None)  # type: ignore[arg-type]
        self.joined = []

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.open:
            data = self._handshake(self.buf + data)
        try:
            messages = self.reader.feed(data)
        except WsError:
            self.transport.close()
            return
        for op, payload in messages:
            self._frame(op, payload)

    def _handshake(self, data: bytes) -> bytes:
        end = data.find(HEAD_END)
        if end < 0:
            self.buf = data
            return b""
        self.buf = b""
        end += len(HEAD_END)
        head = parse_head(data[:end])
        assert self.transport is not None
        if head is None or accept_key(head.headers.get("sec-websocket-key", "")) is None:
            self.transport.close()
            return b""
        self.transport.write(switching_protocols(head.headers["sec-websocket-key"]))
        self.open = True
        return data[end:]

    def _frame(self, op: int, payload: bytes) -> None:
        assert self.transport is not None
        if op == OP_TEXT:
            req = orjson.loads(payload)
            OPS.get(req.get("op"), op_unknown)(self, req)
        elif op == OP_PING:
            self.transport.write(frame(payload, OP_PONG))
        elif op == OP_CLOSE:
            self.transport.write(close_frame(1000))
            self.transport.close()

    def reply(self, rid: Any, **fields: Any) -> None:
        if rid is not None and self.transport is not None and not self.transport.is_closing():
            body = {"op": "reply", "id": rid, "code": 0, "info": "", **fields}
            self.transport.write(frame(orjson.dumps(body)))


def op_login(conn: Conn, req: dict[str, Any]) -> None:
    conn.user = str(req.get("userId", ""))
    conn.reply(req.get("id"), serverTime=int(time.time() * 1000))


def op_join(conn: Conn, req: dict[str, Any]) -> None:
    room = conn.hub.room(str(req.get("groupId")))
    assert conn.transport is not None
    room.members[conn.transport] = None
    conn.joined.append(room)
    conn.reply(req.get("id"), group={}, counters=[], onlineMemberNum=len(room.members))


def op_send(conn: Conn, req: dict[str, Any]) -> None:
    conn.hub.submit(conn, req.get("id"), req)


def op_ping(conn: Conn, req: dict[str, Any]) -> None:
    conn.reply(req.get("id"))


def op_unknown(conn: Conn, req: dict[str, Any]) -> None:
    conn.reply(req.get("id"))


OPS: dict[Any, Callable[[Conn, dict[str, Any]], None]] = {
    "login": op_login, "join": op_join, "send": op_send, "ping": op_ping}


async def serve(host: str, port: int, tick: float) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(tick)
    server = await loop.create_server(lambda: Conn(hub), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m livecast.bench.baseline",
                                 description="the bench's raw writer server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tick-ms", type=int, default=100)
    args = ap.parse_args(argv)
    raise_fd_limit()
    import uvloop

    uvloop.install()
    asyncio.run(serve(args.host, args.port, args.tick_ms / 1000.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
