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

``--steps`` adds, to each ``send``, the steps livecast's contract asks of a
message and nothing between them: the send's validation (``parse_frame``),
the connection's request rate, the ban and mute rule, the room's scheduler
(an offer, then the tick delivering it), each message encoded alone and kept
in the room's history, the fan-out's outbox checks (``fanout``), and the
sender's echo and reply in one write.  The same functions livecast calls,
called straight one after the other: the least a Python implementation of
the contract does per message (docs/benchmarks.md, "The contract's floor in
the running server").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson

from livecast.core.bucket import TokenBucket
from livecast.core.fate import send_refusal
from livecast.core.group import Group
from livecast.core.handshake import HEAD_END, accept_key, parse_head, switching_protocols
from livecast.core.history import HistoryRing
from livecast.core.protocol import MAX_FRAME_BYTES, FrameError, Request, parse_frame
from livecast.core.scheduler import RoomScheduler, parse_priority
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
from livecast.errors import Code
from livecast.gateway.ws import OPS as LIVECAST_OPS
from livecast.node.connection import Connection
from livecast.node.fanout import fanout
from livecast.runner import raise_fd_limit
from livecast.settings import Settings


def wire(user: str, seq: int, time_ms: int, req: dict[str, Any]) -> dict[str, Any]:
    """A message as the ``msgs`` frame carries it (livecast's fields)."""
    return {"seq": seq, "time": time_ms, "from": user, "nick": "", "avatar": "",
            "priority": req.get("priority", "Normal"), "random": req.get("random", 0),
            "msgBody": req.get("msgBody"), "cloudCustomData": req.get("cloudCustomData", "")}


class Room:
    __slots__ = ("conns", "gid", "group", "handle", "history", "last", "members", "pending",
                 "sched", "seq")

    def __init__(self, gid: str, steps: Settings | None) -> None:
        self.gid = gid
        self.members: dict[asyncio.Transport, None] = {}
        self.pending: list[tuple[Conn, Any, dict[str, Any]]] = []
        self.seq = 0
        self.handle: asyncio.Handle | None = None
        self.last = -1e9
        # --steps only: the room's rule, scheduler, history and members
        self.conns: dict[Connection, None] = {}
        if steps is not None:
            self.group = Group.create(gid, "admin", time.time(),
                                      {"Type": "AVChatRoom", "Name": gid})
            self.sched = RoomScheduler(steps.room_rate, steps.room_burst, time.monotonic())
            self.history = HistoryRing(steps.history_size, steps.history_bytes,
                                       int(steps.history_ttl * 1000))


class Hub:
    """Rooms and the per-tick dispatch."""

    def __init__(self, tick: float, steps: Settings | None = None) -> None:
        self.tick = tick
        self.steps = steps  # --steps: livecast's limits for them (None: the raw writer)
        self.rooms: dict[str, Room] = {}

    def room(self, gid: str) -> Room:
        room = self.rooms.get(gid)
        if room is None:
            room = self.rooms[gid] = Room(gid, self.steps)
        return room

    def submit(self, conn: Conn, rid: Any, req: dict[str, Any]) -> None:
        room = self.room(str(req.get("groupId")))
        room.pending.append((conn, rid, req))
        self._schedule(room)

    def _schedule(self, room: Room) -> None:
        if room.handle is None:
            loop = asyncio.get_running_loop()
            due = room.last + self.tick
            if due <= loop.time():
                room.handle = loop.call_soon(self.dispatch, room)
            else:
                room.handle = loop.call_at(due, self.dispatch, room)

    def offer(self, conn: Conn, request: Request) -> None:
        """--steps: the send rule, then the room's scheduler."""
        args = request.args
        room = self.room(args["groupId"])
        refusal = send_refusal(room.group, conn.user, time.time(),
                               member=conn.member in room.conns)
        if refusal is not None:
            conn.reply(request.id, code=refusal[0], info=refusal[1])
            return
        priority = parse_priority(args["priority"])
        assert priority is not None  # validated by the protocol table
        for _dropped in room.sched.offer((conn, request.id, args), priority, time.monotonic()):
            conn.reply(request.id, code=Code.FREQ_LIMIT, info="MsgFreqCtrl")
        self._schedule(room)

    def dispatch(self, room: Room) -> None:
        room.handle = None
        room.last = asyncio.get_running_loop().time()
        if self.steps is not None:
            self._deliver(room, self.steps)
            return
        batch, room.pending = room.pending, []
        now_ms = int(time.time() * 1000)
        wires = []
        for conn, _rid, req in batch:
            room.seq += 1
            wires.append(wire(conn.user, room.seq, now_ms, req))
        data = frame(orjson.dumps({"op": "msgs", "groupId": room.gid, "msgs": wires}))
        for transport in room.members:
            transport.write(data)
        first = room.seq - len(batch)
        for k, (conn, rid, _req) in enumerate(batch):
            conn.reply(rid, msgSeq=first + k + 1, msgTime=now_ms, dropReason="")

    def _deliver(self, room: Room, limits: Settings) -> None:
        """--steps: the scheduler's tick, each message encoded alone and kept
        in the history, one frame through the fan-out's checks, the replies
        (a lone sender's echo and reply in one write)."""
        result = room.sched.tick(room.last)
        for pending in result.dropped:
            conn, rid, _args = pending.payload
            conn.reply(rid, code=Code.FREQ_LIMIT, info="MsgFreqCtrl")
        if not result.delivered:
            return
        now_ms = int(time.time() * 1000)
        seqs, parts = [], []
        for seq, pending in result.delivered:
            conn, _rid, args = pending.payload
            seqs.append(seq)
            parts.append(orjson.dumps(wire(conn.user, seq, now_ms, args)))
        room.history.extend(seqs, now_ms, parts)
        data = frame(b'{"op":"msgs","groupId":' + orjson.dumps(room.gid) + b',"msgs":['
                     + b",".join(parts) + b"]}")
        hold = result.delivered[0][1].payload[0].member if len(seqs) == 1 else None
        fanout(room.conns, data, None, limits.outbox_soft_bytes, limits.outbox_hard_bytes, hold)
        for seq, pending in result.delivered:
            conn, rid, _args = pending.payload
            conn.reply(rid, msgSeq=seq, msgTime=now_ms, dropReason="")


class Conn(asyncio.Protocol):
    __slots__ = ("buf", "hub", "joined", "limiter", "member", "open", "reader", "transport",
                 "user")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buf = b""  # the handshake's head, until it is whole
        self.open = False
        self.reader = Reader(MAX_FRAME_BYTES)
        self.user = ""
        self.joined: list[Room] = []
        self.transport: asyncio.Transport | None = None
        # --steps only: the member the fan-out writes to, and its request rate
        self.member: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.hub.steps is not None:
            self.member = Connection(transport)
            self.limiter = TokenBucket(self.hub.steps.req_rate, self.hub.steps.req_burst,
                                       time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        for room in self.joined:
            room.members.pop(self.transport, None)  # type: ignore[arg-type]
            if self.member is not None:
                room.conns.pop(self.member, None)
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
            if self.hub.steps is not None and self._steps(payload):
                return
            req = orjson.loads(payload)
            OPS.get(req.get("op"), op_unknown)(self, req)
        elif op == OP_PING:
            self.transport.write(frame(payload, OP_PONG))
        elif op == OP_CLOSE:
            self.transport.write(close_frame(1000))
            self.transport.close()

    def _steps(self, payload: bytes) -> bool:
        """--steps: a frame validated (a bad one answered with its code), a
        ``send`` counted against the request rate and offered; False for the
        other valid frames (the raw path takes them)."""
        parsed = parse_frame(payload, LIVECAST_OPS)
        if isinstance(parsed, FrameError):
            self.reply(parsed.id, code=parsed.code, info=parsed.info)
            return True
        if parsed.op != "send":
            return False
        if self.limiter.try_take(time.monotonic()):
            self.hub.offer(self, parsed)
        else:
            self.reply(parsed.id, code=Code.FREQ_LIMIT, info="too many requests")
        return True

    def reply(self, rid: Any, code: int = 0, info: str = "", **fields: Any) -> None:
        if rid is not None and self.transport is not None and not self.transport.is_closing():
            data = frame(orjson.dumps({"op": "reply", "id": rid, "code": code, "info": info,
                                       **fields}))
            if self.member is not None:
                self.member.write(data)  # after the echo the fan-out held for it
            else:
                self.transport.write(data)


def op_login(conn: Conn, req: dict[str, Any]) -> None:
    conn.user = str(req.get("userId", ""))
    conn.reply(req.get("id"), serverTime=int(time.time() * 1000))


def op_join(conn: Conn, req: dict[str, Any]) -> None:
    room = conn.hub.room(str(req.get("groupId")))
    assert conn.transport is not None
    room.members[conn.transport] = None
    if conn.member is not None:
        room.conns[conn.member] = None
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


async def serve(host: str, port: int, tick: float, steps: Settings | None = None) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(tick, steps)
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
    ap.add_argument("--steps", action="store_true",
                    help="add the steps livecast's contract asks of each send (module docstring)")
    args = ap.parse_args(argv)
    raise_fd_limit()
    import uvloop

    uvloop.install()
    steps = Settings() if args.steps else None  # livecast's default limits
    asyncio.run(serve(args.host, args.port, args.tick_ms / 1000.0, steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
