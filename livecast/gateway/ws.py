"""The WebSocket endpoint ``/v1/ws`` (docs/protocol.md): each upgraded socket
is served by a ``WsConnection``, an asyncio protocol that is also the node's
``Connection``.  Frames are read in ``data_received`` (livecast.core.wsframe),
ops are dispatched through a table, and every reply is written through the
transport (no await on the write path).  An idle member costs one object and
its transport: no task, no queue, no timer (docs/design.md, "Connections").

Remote misbehaviour becomes a reply code or a close code:
- binary frames, non-JSON, unknown ops, wrong types: error reply (when the id
  can be told) and a violation; ``violation_limit`` of them close with 4009;
- requests beyond the per-connection rate: reply 10023, and a connection that
  keeps flooding past a second budget is closed with 4029;
- more than ``MAX_WAITING`` requests waiting for earlier ones (webhooks on,
  see "Order of requests" below): reply 10006;
- frames over 64 KiB: close 1009; broken framing: 1002; text that is not
  UTF-8: 1007 (RFC 6455, checked by the frame reader); the socket is closed
  as soon as the peer answers the close (a ``Drain`` finds it), at once when
  the framing is lost;
- a request from a connection whose outbox is past ``outbox_hard_bytes`` is not
  answered: the connection is shed (4008), as fan-out does;
- an outbox that does not drain at all for ``stall_timeout``: shed (4008) by
  the heartbeat sweep;
- a connect or login past the per-IP or node-wide rate (admission control,
  gateway/admission.py): close 4013 "... retry after N s" (a login is
  answered 70399 first);
- no login (or guest join) within ``login_timeout``: close 4002;
- nothing heard for ``HEARTBEAT`` seconds: the server pings; nothing heard for
  twice that: the socket is aborted (a dead peer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from aiohttp import web

from livecast.core.bucket import TokenBucket
from livecast.core.fate import Address
from livecast.core.flood import FloodScore, flood_limit
from livecast.core.group_attrs import GroupAttrs
from livecast.core.handshake import MAX_HEAD_BYTES, joined, switching_protocols, upgrade_error
from livecast.core.protocol import MAX_FRAME_BYTES, FrameError, Request, parse_frame, reply
from livecast.core.scheduler import parse_priority
from livecast.core.usersig import verify
from livecast.core.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Drain,
    Reader,
    WsError,
    close_code,
    frame,
)
from livecast.errors import Close, Code, LivecastError
from livecast.gateway.admission import refused, try_later
from livecast.gateway.keys import CONNECTION, NODE
from livecast.node.connection import Connection, bound_sndbuf
from livecast.node.node import Node
from livecast.node.room import Outgoing

log = logging.getLogger("livecast.gateway")

WS_PATH = "/v1/ws"
HEARTBEAT = 30.0  # seconds of silence before a ping; twice that and the peer is dead
Result = dict[str, Any] | None
Handler = Callable[[Node, Connection, Request], Result]
HookedHandler = Callable[[Node, Connection, Request, "Turn"], Awaitable[Result]]


class Session:
    """Per-connection request accounting (flood and violation budgets), and the
    requests carried out off the reader (``order``, made on first use)."""

    __slots__ = ("flood", "limiter", "order", "violations")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.limiter = TokenBucket(rate, burst, now)
        self.violations = 0
        self.flood = FloodScore(flood_limit(burst))
        self.order: Order | None = None


# Order of requests (docs/protocol.md, "Order of requests").  With webhooks on,
# a join or a send may wait for the business backend's before-* callback (up to
# LIVECAST_CALLBACK_TIMEOUT): it then runs off the reader, which goes on reading
# (pings, the flood budget) and never waits, so a slow backend never stalls
# this connection's reader nor any other connection.  Every request of the
# connection still takes effect in the order it was sent; by ``Kind``:
# 1. CHANGE (login, join, quit, setMyProfile, and any op not listed in
#    ``KINDS``) waits for every earlier request still waiting; every later
#    request but a FREE one waits for it;
# 2. SEND waits for the CHANGE before it; consecutive sends are checked
#    (member, ban, mute) one after the other, ask the before-send callback
#    concurrently, and reach the room in order (each waits in ``Node.send``
#    for the send before it);
# 3. READ waits for the CHANGE before it and the READ before it (replies in
#    order), not for sends: a send changes nothing a READ answers;
# 4. FREE (ping) is answered at once.
# A request with nothing to wait for (and no callback to ask) runs at once, on
# the reader.  A request refused before it is carried out (malformed, 10023
# flood, 10006 too many waiting) is answered at once.
class Kind(Enum):
    FREE = "free"
    READ = "read"
    SEND = "send"
    CHANGE = "change"


KINDS: dict[str, Kind] = {
    "ping": Kind.FREE,
    "getGroupInfo": Kind.READ,
    "getOnlineMemberNum": Kind.READ,
    "getMyProfile": Kind.READ,
    "getGroupAttributes": Kind.READ,
    "send": Kind.SEND,
}
MAX_WAITING = 32  # requests off the reader per connection; past it: 10006
_background: set[asyncio.Task[None]] = set()


class Turn:
    """A request's place among its connection's sends: a send reaches the room
    after ``prev`` (the send before it, still on its way) and, once it has
    passed its checks, ``release``s the next send to start its own."""

    __slots__ = ("checked", "prev")

    def __init__(self, prev: asyncio.Future[None] | None,
                 checked: asyncio.Future[None] | None) -> None:
        self.prev = prev
        self.checked = checked

    def release(self) -> None:
        if self.checked is not None and not self.checked.done():
            self.checked.set_result(None)


class Order:
    """The requests of one connection waiting off the reader, and the last of
    each kind that a new request may have to wait for (rule above ``Kind``)."""

    __slots__ = ("checked", "gate", "read", "send", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[asyncio.Task[None], None] = {}  # in arrival order
        self.gate: asyncio.Task[None] | None = None  # the last CHANGE
        self.read: asyncio.Task[None] | None = None  # the last READ
        self.send: asyncio.Task[None] | None = None  # the last SEND after ``gate``
        self.checked: asyncio.Future[None] | None = None  # ``send`` passed its checks

    def waits_for(self, kind: Kind) -> tuple[list[asyncio.Future[None]], Turn]:
        """What a new request of ``kind`` waits for before it runs, and its turn."""
        if kind is Kind.CHANGE:
            return [t for t in self.waiting if not t.done()], Turn(None, None)
        if kind is Kind.READ:
            return _pending(self.gate, self.read), Turn(None, None)
        if kind is Kind.SEND and self.send is not None and not self.send.done():
            return _pending(self.checked), Turn(self.send, None)
        if kind is Kind.SEND:
            return _pending(self.gate), Turn(None, None)
        return [], Turn(None, None)

    def add(self, task: asyncio.Task[None], kind: Kind, turn: Turn) -> None:
        self.waiting[task] = None
        task.add_done_callback(self._done)
        if kind is Kind.CHANGE:
            self.gate, self.send, self.checked = task, None, None
        elif kind is Kind.READ:
            self.read = task
        else:
            self.send, self.checked = task, turn.checked

    def _done(self, task: asyncio.Task[None]) -> None:
        self.waiting.pop(task, None)


def _pending(*futures: asyncio.Future[None] | None) -> list[asyncio.Future[None]]:
    return [f for f in futures if f is not None and not f.done()]


# ------------------------------------------------------------------ ops
def op_login(node: Node, conn: Connection, req: Request) -> Result:
    a = req.args
    s = node.settings
    if conn.logged_in:
        raise LivecastError(Code.BAD_PARAMETER, "already logged in")
    wait = refused(node, conn.peer, "login")
    if wait is not None:  # admission control: the client retries after ``wait``
        conn.send(reply(req.id, Code.LOGIN_RATE_LIMIT, try_later("login", wait)))
        node.close(conn, Close.TRY_LATER, try_later("login", wait))
        return None
    if a["sdkAppId"] != s.sdkappid:
        code: int = Code.SIG_SDKAPPID_MISMATCH
    else:
        code = verify(a["userSig"], s.sdkappid, s.secret_key.value, a["userId"], node.clock(),
                      node.kicks.kicked_at(a["userId"]))
    if code:
        conn.send(reply(req.id, int(code), "login failed: UserSig refused"))
        node.close(conn, Close.LOGIN_FAILED, "login failed")
        return None
    node.login(conn, a["userId"])
    return {"serverTime": int(node.clock() * 1000)}


def op_join(node: Node, conn: Connection, req: Request) -> Result:
    return node.join(conn, req.args["groupId"], req.args)


async def op_join_hooked(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    return await node.enter(conn, req.args["groupId"], req.args)


def op_quit(node: Node, conn: Connection, req: Request) -> Result:
    node.room(req.args["groupId"])
    node.quit(conn, req.args["groupId"])
    return {}


def _outgoing(node: Node, conn: Connection, req: Request) -> Outgoing:
    """The message of a ``send``, checked against the room (member, ban, mute);
    its fate is answered to this connection, under the request's id."""
    a = req.args
    priority = parse_priority(a["priority"])
    assert priority is not None  # validated by the protocol table
    reply_to = None if req.id is None else Address(conn=conn.id, request=req.id,
                                                   node=node.node_id)
    msg = Outgoing(conn.user, conn.nick, conn.avatar, priority, a["random"], a["msgBody"],
                   a["cloudCustomData"], reply_to, operator=conn.user, client_ip=conn.peer)
    node.check_send(conn, a["groupId"], msg)
    return msg


def op_send(node: Node, conn: Connection, req: Request) -> Result:
    node.submit(req.args["groupId"], _outgoing(node, conn, req))
    return None


async def op_send_hooked(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    try:
        msg = _outgoing(node, conn, req)
    finally:  # checked, or refused: the next send may start its own checks
        turn.release()
    await node.send(req.args["groupId"], msg, turn.prev, conn)
    return None


def _guest_read(node: Node, conn: Connection) -> None:
    """Room reads need a login when guests are not allowed (LIVECAST_ALLOW_GUESTS=0)."""
    if not conn.logged_in and not node.settings.allow_guests:
        raise LivecastError(Code.NO_PERMISSION, "guests are not allowed: login first")


def op_group_info(node: Node, conn: Connection, req: Request) -> Result:
    _guest_read(node, conn)
    group = node.room(req.args["groupId"]).group
    return {"group": group.profile(), "counters": group.counter_list(), "epoch": node.epoch}


def op_online(node: Node, conn: Connection, req: Request) -> Result:
    _guest_read(node, conn)
    node.room(req.args["groupId"])
    return {"onlineMemberNum": node.online(req.args["groupId"])}


def _need_login(conn: Connection) -> None:
    if not conn.logged_in:
        raise LivecastError(Code.NO_PERMISSION, "login first")


def op_set_profile(node: Node, conn: Connection, req: Request) -> Result:
    _need_login(conn)
    node.set_profile(conn.user, req.args.get("nick"), req.args.get("avatar"))
    return {}


def op_get_profile(node: Node, conn: Connection, req: Request) -> Result:
    _need_login(conn)
    return {"nick": conn.nick, "avatar": conn.avatar}


def _attrs(attrs: GroupAttrs, keys: list[str] | None = None) -> Result:
    return {"groupAttributes": attrs.get(keys), "attrSeq": attrs.seq}


def op_get_attrs(node: Node, conn: Connection, req: Request) -> Result:
    room = node.room(req.args["groupId"])
    if not node.hub.is_member(conn, req.args["groupId"]):
        raise LivecastError(Code.NO_PERMISSION, "not a member of this group")
    return _attrs(room.group.attrs, req.args.get("keyList") or None)


async def op_set_attrs(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    pairs = req.args["groupAttributes"]
    return _attrs(await node.member_write_attrs(conn, req.args["groupId"], req.args["attrSeq"],
                                                lambda attrs: attrs.modify(pairs)))


async def op_init_attrs(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    pairs = req.args["groupAttributes"]
    return _attrs(await node.member_write_attrs(conn, req.args["groupId"], req.args["attrSeq"],
                                                lambda attrs: attrs.replace(pairs)))


async def op_delete_attrs(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    keys = req.args.get("keyList") or None  # absent or empty: every key
    return _attrs(await node.member_write_attrs(conn, req.args["groupId"], req.args["attrSeq"],
                                                lambda attrs: attrs.delete(keys)))


def op_ping(node: Node, conn: Connection, req: Request) -> Result:
    return {}


OPS: dict[str, Handler] = {
    "login": op_login,
    "join": op_join,
    "quit": op_quit,
    "send": op_send,
    "getGroupInfo": op_group_info,
    "getOnlineMemberNum": op_online,
    "setMyProfile": op_set_profile,
    "getMyProfile": op_get_profile,
    "getGroupAttributes": op_get_attrs,
    "ping": op_ping,
}
# these write to the store, always off the reader (``_chain``), in their turn
STORED_OPS: dict[str, HookedHandler] = {
    "setGroupAttributes": op_set_attrs,
    "initGroupAttributes": op_init_attrs,
    "deleteGroupAttributes": op_delete_attrs,
}
# with webhooks on, these ask the backend first, off the reader (``_chain``),
# where any other op is run by its ``OPS`` handler
HOOKED_OPS: dict[str, HookedHandler] = {
    "send": op_send_hooked,
    "join": op_join_hooked,
}


# ------------------------------------------------------------------ the connection
class WsConnection(Connection, asyncio.Protocol):
    """An upgraded socket: the transport's protocol and a member of the node.

    The 101 is already written when it takes over (``gateway.front``).  The
    reader stays on until the peer closes: once the server has sent its close
    frame (``closing``) input is drained unread, because closing a socket that
    still has unread input resets it, and the reset would discard the frame."""

    __slots__ = ("deadline", "node", "reader", "seen", "session")

    def __init__(self, node: Node, transport: asyncio.Transport, peer: str) -> None:
        super().__init__(transport, peer)
        self.deadline: asyncio.TimerHandle | None = None  # the login deadline's timer
        self.node = node
        self.reader = Reader(MAX_FRAME_BYTES)
        self.seen = time.monotonic()
        s = node.settings
        self.session = Session(s.req_rate, s.req_burst, asyncio.get_running_loop().time())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.node.attach(self)
        self.deadline = asyncio.get_running_loop().call_later(
            self.node.settings.login_timeout, _login_deadline, self.node, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.deadline is not None:  # a pending timer would hold the connection for
            self.deadline.cancel()     # LIVECAST_LOGIN_TIMEOUT (docs/benchmarks.md, churn)
            self.deadline = None
        self.node.lost(self)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        try:
            messages, failed = self.reader.feed(data), None
        except WsError as err:  # the messages before the violation still count
            messages, failed = err.messages, err
        for opcode, payload in messages:
            if opcode == OP_CLOSE:
                code = close_code(payload)
                self.node.close(self, Close.NORMAL if code is None else _echo(code))
                self.transport.close()  # RFC 6455 section 7.1.1: the server closes first
                return
            if not self.closing:
                self.on_message(opcode, payload)
        if failed is not None:
            self._fail(failed)

    def on_message(self, opcode: int, payload: bytes) -> None:
        """One whole message, or a ping or pong, from the peer (a close is
        handled by ``data_received``)."""
        handler = _ON_FRAME.get(opcode)
        if handler is not None:
            handler(self.node, self, self.session, payload)

    def _fail(self, err: WsError) -> None:
        """RFC 6455 section 7.1.7: send the close frame, process nothing more,
        and close the TCP connection as soon as the peer's Close arrives (a
        ``Drain`` still finds it in the broken stream), at once when the
        framing is lost; the abort after ``shutdown_grace`` is the backstop.
        Input is read until then, not left unread: closing a socket with
        unread input resets it, and the reset could discard the close frame."""
        self.reader = Drain()
        self.node.close(self, err.code, err.reason)
        if err.rest:
            self.data_received(err.rest)


def _on_binary(node: Node, conn: Connection, session: Session, payload: bytes) -> None:
    _violation(node, conn, session, None, Code.BAD_PARAMETER, "binary frames are refused")


def _on_pong(node: Node, conn: Connection, session: Session, payload: bytes) -> None:
    """A pong proves the peer alive (``seen``) and, like every frame, costs a
    request token: unsolicited pongs are a flood like any other (4029)."""
    _admit(node, conn, session, None)


def _pong(node: Node, conn: Connection, session: Session, payload: bytes) -> None:
    """A ping costs a request token like any request (a ping flood ends in
    4029), and its pong shares the bounded outbox: past the soft limit pings
    go unanswered (RFC 6455 section 5.5.3 asks only for the latest), past
    the hard limit the connection is shed."""
    if _outbox_full(node, conn) or not _admit(node, conn, session, None):
        return
    if conn.buffered() <= node.settings.outbox_soft_bytes:
        conn.write(frame(payload, OP_PONG))


def _outbox_full(node: Node, conn: Connection) -> bool:
    """Answers share the bounded outbox: a client past the hard limit (one
    that sends but never reads) is shed, as fan-out does."""
    if conn.buffered() > node.settings.outbox_hard_bytes:
        node.shed(conn)
        return True
    return False


def _admit(node: Node, conn: Connection, session: Session, rid: Any) -> bool:
    """Take a request token; without one, the frame counts toward the flood."""
    if session.limiter.try_take(asyncio.get_running_loop().time()):
        return True
    _flood(node, conn, session, rid)
    return False


def _login_deadline(node: Node, conn: Connection) -> None:
    if not conn.logged_in and not conn.guest:
        node.close(conn, Close.LOGIN_TIMEOUT, "no login in time")


def _echo(code: int) -> int:
    return code if code in (1000, 1001) or 3000 <= code < 5000 else 1000


def sweep_interval(stall_timeout: float) -> float:
    """Seconds between two ``heartbeat`` sweeps: often enough for the stall check."""
    return min(HEARTBEAT / 2, max(0.05, stall_timeout / 2))


def heartbeat(node: Node, now: float, ping: bytes = frame(b"", OP_PING)) -> None:
    """Ping the members not heard from for ``HEARTBEAT`` seconds, abort those
    silent for twice that, and shed (4008) those whose outbox has not drained
    at all for ``stall_timeout`` seconds (``Connection.stalled``).  Run every
    ``sweep_interval`` seconds (app.py)."""
    pinged = dropped = 0
    timeout = node.settings.stall_timeout
    for conn in list(node.connections):
        if isinstance(conn, WsConnection):
            if not conn.closing and conn.stalled(now, timeout):
                node.metrics.stalled.inc()
                node.shed(conn)
                continue
            silent = now - conn.seen
            if silent >= 2 * HEARTBEAT:
                conn.transport.abort()
                dropped += 1
            elif silent >= HEARTBEAT:
                conn.write(ping)
                pinged += 1
    node.metrics.pings.inc(pinged)
    node.metrics.dead.inc(dropped)
    if dropped:
        log.info("heartbeat: %d silent connections dropped", dropped)


def _on_text(node: Node, conn: Connection, session: Session, data: bytes) -> None:
    if _outbox_full(node, conn):
        return
    parsed = parse_frame(data)
    if isinstance(parsed, FrameError) and parsed.violation:
        _violation(node, conn, session, parsed.id, parsed.code, parsed.info)
        return
    if not _admit(node, conn, session, parsed.id):  # refused values cost a token too
        return
    if isinstance(parsed, FrameError):
        if parsed.id is not None:
            conn.send(reply(parsed.id, parsed.code, parsed.info))
        return
    kind = KINDS.get(parsed.op, Kind.CHANGE)
    order = session.order
    after, turn = order.waits_for(kind) if order is not None else ([], Turn(None, None))
    if (after or parsed.op in STORED_OPS or (parsed.op in HOOKED_OPS and node.hooks.enabled)
            or _unknown_room(node, parsed)
            or (parsed.op == "join" and node.join_waits(parsed.args))):  # a cluster's history read
        _chain(node, conn, session, parsed, kind, after, turn)
        return
    try:
        result = OPS[parsed.op](node, conn, parsed)
    except Exception as exc:
        _failed(node, conn, parsed, exc)
        return
    _answer(conn, parsed, result)


def _unknown_room(node: Node, req: Request) -> bool:
    """A join to a room not known on this process: it may have just been
    created on another, so it is looked up first (``Node.enter``), off the reader."""
    return req.op == "join" and req.args["groupId"] not in node.rooms


def _chain(node: Node, conn: Connection, session: Session, req: Request, kind: Kind,
           after: list[asyncio.Future[None]], turn: Turn) -> None:
    """Run ``req`` off the reader once ``after`` is done (rule above ``Kind``)."""
    order = session.order
    if order is None:
        order = session.order = Order()
    if len(order.waiting) >= MAX_WAITING:
        if req.id is not None:
            conn.send(reply(req.id, Code.TOO_MANY_WAITING,
                            f"too many requests waiting on this connection (at most "
                            f"{MAX_WAITING}): wait for their replies"))
        return
    if kind is Kind.SEND:
        turn.checked = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_after(after, turn, node, conn, req))
    order.add(task, kind, turn)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _after(after: list[asyncio.Future[None]], turn: Turn, node: Node, conn: Connection,
                 req: Request) -> None:
    """Wait for ``after``, then carry ``req`` out and answer it; nothing is
    carried out once the connection is closing."""
    try:
        if after:
            await asyncio.wait(after)
        if conn.closing:
            return
        try:
            hooked = STORED_OPS.get(req.op) or (
                HOOKED_OPS.get(req.op) if node.hooks.enabled or req.op == "join" else None)
            if hooked is not None:
                result = await hooked(node, conn, req, turn)
            else:
                result = OPS[req.op](node, conn, req)
        except Exception as exc:
            _failed(node, conn, req, exc)
            return
        _answer(conn, req, result)
    finally:
        turn.release()


def _answer(conn: Connection, req: Request, result: Result) -> None:
    if result is not None and req.id is not None:
        conn.send(reply(req.id, 0, "", **result))


def _failed(node: Node, conn: Connection, req: Request, exc: Exception) -> None:
    """A refused request is answered with its code; a bug answers one request
    with 90000 and the connection goes on."""
    if isinstance(exc, LivecastError):
        if req.op == "send":
            node.metrics.rejected.labels(str(exc.code)).inc()
        code, info = int(exc.code), exc.info
    else:
        log.error("op %s failed", req.op, exc_info=exc)
        code, info = Code.INTERNAL, "internal error"
    if req.id is not None:
        conn.send(reply(req.id, code, info))


def _violation(node: Node, conn: Connection, session: Session, rid: Any, code: int,
               info: str) -> None:
    node.metrics.violations.inc()
    session.violations += 1
    if rid is not None:
        conn.send(reply(rid, code, info))
    if session.violations >= node.settings.violation_limit:
        node.close(conn, Close.VIOLATIONS, "too many protocol violations")


def _flood(node: Node, conn: Connection, session: Session, rid: Any) -> None:
    over = session.flood.refused(asyncio.get_running_loop().time())
    if rid is not None:
        conn.send(reply(rid, Code.FREQ_LIMIT, "too many requests: slow down"))
    if over:  # the decaying score of refusals (core/flood.py)
        node.close(conn, Close.FLOOD, "flood")


# frames a connection acts on, by opcode (a close ends it: ``data_received``)
_ON_FRAME: dict[int, Callable[[Node, Connection, Session, bytes], None]] = {
    OP_TEXT: _on_text,
    OP_BINARY: _on_binary,
    OP_PING: _pong,
    OP_PONG: _on_pong,
}


# ------------------------------------------------------------------ the HTTP side
def accept(node: Node, transport: asyncio.Transport, key: str, rest: bytes,
           cls: type[WsConnection] = WsConnection) -> WsConnection:
    """Answer a valid upgrade (101) and make a ``cls`` the transport's
    protocol; ``rest``: the bytes that followed the request head."""
    peer = transport.get_extra_info("peername")
    conn = cls(node, transport, peer[0] if peer else "")
    wait = refused(node, conn.peer, "connect")
    s = node.settings
    conn.fd = bound_sndbuf(transport, s.sndbuf_bytes or s.outbox_soft_bytes // 2)
    transport.write(switching_protocols(key))
    transport.set_protocol(conn)
    conn.connection_made(transport)
    if wait is not None:  # upgraded first, so that browsers see the code and reason
        node.close(conn, Close.TRY_LATER, try_later("connect", wait))
    elif rest:
        conn.data_received(rest)
    return conn


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """``/v1/ws`` as aiohttp sees it: an upgrade that is not its connection's
    first request (a pooled keep-alive connection, as aiohttp's and other
    clients reuse) is taken over from aiohttp and ends on the same lean path
    as the front's; anything else gets the reason as a plain-text error."""
    node: Node = request.app[NODE]
    if node.draining:
        raise web.HTTPServiceUnavailable(text="draining")
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    headers = joined(request.headers.items())
    refused = upgrade_error(request.method, version, headers)
    if refused is None:
        taken = _take_over(request, node, headers["sec-websocket-key"])
        if taken is not None:
            return taken
        refused = 400, (f"not upgraded: a WebSocket upgrade needs a head under "
                        f"{MAX_HEAD_BYTES // 1024} KiB")
    status, reason = refused
    headers_out = {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"} if status == 426 else {}
    return web.Response(status=status, text=reason, headers=headers_out)


class _TakenOver(web.StreamResponse):
    """What aiohttp gets back for a connection taken over: nothing to write
    (the status is for access logs)."""

    def __init__(self) -> None:
        super().__init__(status=101, reason="Switching Protocols")

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _take_over(request: web.Request, node: Node, key: str) -> web.StreamResponse | None:
    """Take the socket from aiohttp's ``RequestHandler`` after a valid upgrade.

    aiohttp's parser stops at an upgrade request and keeps what follows its
    head, unparsed, in ``_message_tail`` (where a ``WebSocketResponse`` would
    find it); that goes to the ``WsConnection``.  The handler is told its
    connection is lost with no transport left to close, so it writes nothing
    more, leaves its server's connection list and ends its task: no aiohttp
    object stays with the member.  None (and the 400) when a head too long
    for the front reached here, or aiohttp's internals are not as expected."""
    protocol, transport = request.protocol, request.transport
    tail = getattr(protocol, "_message_tail", None)
    if (transport is None or transport.is_closing() or not isinstance(tail, bytes | bytearray)
            or getattr(protocol, "_upgraded", None) is not True
            or _head_size(request) > MAX_HEAD_BYTES):
        return None
    protocol._message_tail = b""
    protocol.transport = None  # aiohttp lets go without closing the socket
    protocol.connection_lost(None)
    transport.resume_reading()  # aiohttp may have paused it while holding the tail
    accept(node, transport, key, bytes(tail),
           request.app.get(CONNECTION, WsConnection))
    return _TakenOver()


def _head_size(request: web.Request) -> int:
    """The head's size as sent in the usual form ("Name: value" lines)."""
    line = len(request.method) + len(request.raw_path) + len(" HTTP/1.1\r\n") + 1
    return line + sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2
