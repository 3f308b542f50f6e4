"""The WebSocket endpoint ``/v1/ws`` (docs/protocol.md): each upgraded socket
is served by a ``WsConnection``, an asyncio protocol that is also the node's
``Connection``, and a thin adapter around the connection's sans-I/O
``core.session.Session``, which holds the rules (docs/design.md, "The
connection, sans I/O"): bytes read go in with the loop's time, the actions
that come out are carried out here, and the requests among them are
dispatched through the op table ``OPS`` (one row per op).  Every reply is
written through the transport (no await on the write path).  An idle member
costs one object, its session and its transport: no task, no queue, no
timer (docs/design.md, "Connections").

Remote misbehaviour becomes a reply code or a close code (the session
decides all of them but 10006, the stall, admission control and the
heartbeat, which are the shell's):
- binary frames, non-JSON, unknown ops, wrong types: error reply (when the id
  can be told) and a violation; ``violation_limit`` of them close with 4009;
- frames beyond the per-connection rate, pings and pongs included: reply
  10023, and a connection whose decaying flood score passes its limit
  (core/flood.py) is closed with 4029;
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from livecast.core import protocol as spec
from livecast.core.fate import Address
from livecast.core.group_attrs import GroupAttrs
from livecast.core.handshake import MAX_HEAD_BYTES, joined, switching_protocols, upgrade_error
from livecast.core.protocol import Kind, Needs, OpSpec, Request, reply
from livecast.core.scheduler import parse_priority
from livecast.core.session import CloseWith, Reply, Session, Signal, Write
from livecast.core.usersig import verify
from livecast.core.wsframe import OP_PING, frame
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


# Order of requests (docs/protocol.md, "Order of requests").  With webhooks on,
# a join or a send may wait for the business backend's before-* callback (up to
# LIVECAST_CALLBACK_TIMEOUT): it then runs off the reader, which goes on reading
# (pings, the flood budget) and never waits, so a slow backend never stalls
# this connection's reader nor any other connection.  Every request of the
# connection still takes effect in the order it was sent; by its op's
# ``Kind`` (a column of ``OPS``):
# 1. CHANGE (login, join, quit, setMyProfile, the group attribute writes)
#    waits for every earlier request still waiting; every later
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
    if _login_refused(node, conn, req):
        return None
    return _logged_in(node, conn, req)


async def op_login_hooked(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    """A login off the reader (its user's profile not known here, or earlier
    requests waited for): checked first, so a refused login costs no read of
    the profile, then the profile is read (``Node.load_profile``)."""
    if _login_refused(node, conn, req):
        return None
    await node.load_profile(req.args["userId"])
    if conn.closing:
        return None
    return _logged_in(node, conn, req)


def _logged_in(node: Node, conn: Connection, req: Request) -> Result:
    node.login(conn, req.args["userId"])
    return {"serverTime": int(node.clock() * 1000)}


def _login_refused(node: Node, conn: Connection, req: Request) -> bool:
    """Admission control and the UserSig; a refusal is answered and closes."""
    a = req.args
    s = node.settings
    wait = refused(node, conn.peer, "login")
    if wait is not None:  # admission control: the client retries after ``wait``
        conn.send(reply(req.id, Code.LOGIN_RATE_LIMIT, try_later("login", wait)))
        node.close(conn, Close.TRY_LATER, try_later("login", wait))
        return True
    if a["sdkAppId"] != s.sdkappid:
        code: int = Code.SIG_SDKAPPID_MISMATCH
    else:
        code = verify(a["userSig"], s.sdkappid, s.secret_key.value, a["userId"], node.clock(),
                      node.kicks.kicked_at(a["userId"]))
    if code:
        conn.send(reply(req.id, int(code), "login failed: UserSig refused"))
        node.close(conn, Close.LOGIN_FAILED, "login failed")
        return True
    return False


def op_join(node: Node, conn: Connection, req: Request) -> Result:
    return node.join(conn, req.args["groupId"], req.args)


async def op_join_hooked(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    return await node.enter(conn, req.args["groupId"], req.args)


def op_quit(node: Node, conn: Connection, req: Request) -> Result:
    gid = req.args["groupId"]
    node.room(gid)
    was_in = gid in conn.rooms
    node.quit(conn, gid)
    if was_in:  # a quit of a room it is not in changes nothing, its deadline included
        _roomless_guest(conn)
    return {}


def _outgoing(node: Node, conn: Connection, req: Request) -> Outgoing:
    """The message of a ``send``; its fate is answered to this connection,
    under the request's id.  Built by position: the fields' order is
    ``Outgoing``'s (address: conn, request, rest, node)."""
    a = req.args
    priority = parse_priority(a["priority"])
    assert priority is not None  # validated by the protocol table
    reply_to = None if req.id is None else Address(conn.id, req.id, 0, node.node_id)
    return Outgoing(conn.user, conn.nick, conn.avatar, priority, a["random"], a["msgBody"],
                    a["cloudCustomData"], reply_to, conn.user, conn.peer)


def op_send(node: Node, conn: Connection, req: Request) -> Result:
    """Checked against the room (member, ban, mute), then offered to it: the
    room looked up once for both."""
    msg = _outgoing(node, conn, req)
    gid = req.args["groupId"]
    node.submit(gid, msg, node.check_send(conn, gid, msg))
    return None


async def op_send_hooked(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    try:
        msg = _outgoing(node, conn, req)
        node.check_send(conn, req.args["groupId"], msg)
    finally:  # checked, or refused: the next send may start its own checks
        turn.release()
    await node.send(req.args["groupId"], msg, turn.prev, conn)
    return None


def op_group_info(node: Node, conn: Connection, req: Request) -> Result:
    group = node.room(req.args["groupId"]).group
    return {"group": group.profile(), "counters": group.counter_list(), "epoch": node.epoch}


def op_online(node: Node, conn: Connection, req: Request) -> Result:
    node.room(req.args["groupId"])
    return {"onlineMemberNum": node.online(req.args["groupId"])}


async def op_set_profile(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
    await node.change_profile(conn.user, req.args.get("nick"), req.args.get("avatar"))
    return {}


def op_get_profile(node: Node, conn: Connection, req: Request) -> Result:
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


def _looked_up(handler: Handler) -> HookedHandler:
    """``handler``, once the room it names is known here: in a cluster another
    process may have just created it, so it is read from the store first (as
    a join does, cluster.py invariant 10) rather than answered 10010."""
    async def run(node: Node, conn: Connection, req: Request, turn: Turn) -> Result:
        await node.link.find(req.args["groupId"])
        return handler(node, conn, req)
    return run


@dataclass(frozen=True, slots=True)
class Op:
    """One row of the op table: all there is to know about an op."""

    spec: OpSpec  # its fields (core/protocol.py)
    kind: Kind  # its place in the order of requests (above ``Order``)
    handler: Handler | None = None  # carried out on the reader; None: always ``hooked``
    hooked: HookedHandler | None = None  # off the reader: with webhooks on, or always
    needs: Needs = Needs.ANY  # of the connection's phase (``Session.refusal``)
    hooks: bool = True  # with webhooks on, always ``hooked`` (the backend is asked)


# Every op of the protocol (docs/protocol.md), one row each.  An op with a
# ``hooked`` handler and a ``handler`` (send, join) asks the business backend
# first when webhooks are on; one with only a ``hooked`` handler writes to the
# store, always off the reader; either way in its turn (``_chain``).
OPS: Mapping[str, Op] = MappingProxyType({
    "login": Op(spec.LOGIN, Kind.CHANGE, op_login, op_login_hooked, needs=Needs.NO_LOGIN,
                hooks=False),
    "join": Op(spec.JOIN, Kind.CHANGE, op_join, op_join_hooked),
    "quit": Op(spec.GROUP, Kind.CHANGE, op_quit),
    "send": Op(spec.SEND, Kind.SEND, op_send, op_send_hooked),
    "getGroupInfo": Op(spec.GROUP, Kind.READ, op_group_info, _looked_up(op_group_info),
                       needs=Needs.READER, hooks=False),
    "getOnlineMemberNum": Op(spec.GROUP, Kind.READ, op_online, _looked_up(op_online),
                             needs=Needs.READER, hooks=False),
    "setMyProfile": Op(spec.SET_PROFILE, Kind.CHANGE, hooked=op_set_profile, needs=Needs.LOGIN),
    "getMyProfile": Op(spec.NO_FIELDS, Kind.READ, op_get_profile, needs=Needs.LOGIN),
    "getGroupAttributes": Op(spec.GET_ATTRS, Kind.READ, op_get_attrs, _looked_up(op_get_attrs),
                             hooks=False),
    "setGroupAttributes": Op(spec.ATTR_WRITE, Kind.CHANGE, hooked=op_set_attrs),
    "initGroupAttributes": Op(spec.ATTR_WRITE, Kind.CHANGE, hooked=op_init_attrs),
    "deleteGroupAttributes": Op(spec.ATTR_DELETE, Kind.CHANGE, hooked=op_delete_attrs),
    "ping": Op(spec.NO_FIELDS, Kind.FREE, op_ping),
})


# ------------------------------------------------------------------ the connection
class WsConnection(Connection, asyncio.Protocol):
    """An upgraded socket: the transport's protocol and a member of the node,
    a thin adapter around its sans-I/O ``Session`` (core/session.py): bytes
    read go in with the loop's time, the actions that come out are carried
    out here (``_APPLY``), and requests are dispatched to the node through
    ``OPS``.

    The 101 is already written when it takes over (``gateway.front``).  The
    reader stays on until the peer closes: once the server has sent its close
    frame (``closing``) input is drained unread, because closing a socket that
    still has unread input resets it, and the reset would discard the frame."""

    __slots__ = ("deadline", "loop", "node", "order", "seen", "session")
    session_type: type[Session] = Session

    def __init__(self, node: Node, transport: asyncio.Transport, peer: str) -> None:
        super().__init__(transport, peer)
        self.deadline: asyncio.TimerHandle | None = None  # the login deadline's timer
        self.node = node
        self.seen = time.monotonic()
        self.loop = asyncio.get_running_loop()  # looked up once: each lookup is a getpid call
        self.session = self.session_type(node.settings, OPS, self.loop.time())
        self.order: Order | None = None  # requests off the reader, made on first use

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.node.attach(self)
        loop = self.loop
        self.deadline = loop.call_at(self.session.opened(loop.time()), _login_deadline, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.deadline is not None:  # a pending timer would hold the connection for
            self.deadline.cancel()     # LIVECAST_LOGIN_TIMEOUT (docs/benchmarks.md, churn)
            self.deadline = None
        self.node.lost(self)

    def charge(self, size: int) -> None:
        self.session.charge_history(self.loop.time(), size)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        session = self.session
        session.receive_data(data)
        now, outbox = self.loop.time(), self.buffered
        while (actions := session.next_actions(now, outbox, self.closing)) is not None:
            for action in actions:
                _APPLY[type(action)](self, action)


def _login_deadline(conn: WsConnection) -> None:
    conn.deadline = None
    order = conn.order
    if order is not None and order.gate is not None and not order.gate.done():
        # a login or join sent in time is still being carried out (a profile
        # read, a before-join callback): judged once it (and what came
        # before it) is done, whatever came after
        order.gate.add_done_callback(lambda _task: _login_judged(conn))
        return
    _login_judged(conn)


def _login_judged(conn: WsConnection) -> None:
    if conn.deadline is not None:  # a guest's quit of its last room armed a new one
        return
    for action in conn.session.login_expired(roomless=not conn.rooms and not conn.logged_in):
        _APPLY[type(action)](conn, action)


def _roomless_guest(conn: Connection) -> None:
    """A guest that has quit its last room: it must log in or join again
    within the login timeout, like a connection just opened."""
    if isinstance(conn, WsConnection) and not conn.logged_in and not conn.rooms:
        if conn.deadline is not None:
            conn.deadline.cancel()
        loop = conn.loop
        conn.deadline = loop.call_at(conn.session.opened(loop.time()), _login_deadline, conn)


def _reply(conn: WsConnection, action: Reply) -> None:
    conn.send(action.body)


def _write(conn: WsConnection, action: Write) -> None:
    conn.write(action.data)


def _close(conn: WsConnection, action: CloseWith) -> None:
    conn.node.close(conn, action.code, action.reason)


def _signal(conn: WsConnection, action: Signal) -> None:
    if action is Signal.SHED:  # answers share the bounded outbox, as fan-out does
        conn.node.shed(conn)
    elif action is Signal.HANG_UP:
        conn.transport.close()
    else:
        conn.node.metrics.violations.inc()


def _dispatch(conn: WsConnection, req: Request) -> None:
    """Carry a request out: at once on the reader when nothing comes before
    it, else in its turn off the reader (rule above ``Order``)."""
    node, row = conn.node, OPS[req.op]
    order = conn.order
    after, turn = order.waits_for(row.kind) if order is not None else (_NONE, None)
    if (after or row.handler is None or (row.hooks and row.hooked is not None
                                         and node.hooks.enabled)
            or (req.op in _OFF_READER and _off_reader(node, req))):  # no call for a send
        _chain(node, conn, req, row, after or [], turn or Turn(None, None))
        return
    try:
        if row.needs is not _ANY:
            _allowed(conn, row)
        result = row.handler(node, conn, req)
    except Exception as exc:
        _failed(node, conn, req, exc)
        return
    _answer(conn, req, result)


_ANY = Needs.ANY
_NONE: list[asyncio.Future[None]] = []  # nothing to wait for (never handed on: see _chain's call)


def _off_reader(node: Node, req: Request) -> bool:
    """A join or login that must look something up first runs off the
    reader, through its hooked handler: a join (``Node.enter``) of a room not
    known on this process (it may have just been created on another) or, in
    a cluster, whose history is not read yet on this process; a login of a
    user whose profile is not known here (``Node.load_profile``)."""
    if req.op == "join":
        return req.args["groupId"] not in node.rooms or node.join_waits(req.args)
    if req.op == "login":
        return not node.profile_known(req.args["userId"])
    # a read of a room not known here: a cluster's other process may have just made it
    return node.cluster is not None and req.args["groupId"] not in node.rooms


# carried out by their hooked handler off the reader
_OFF_READER = frozenset({"join", "login", "getGroupInfo", "getOnlineMemberNum",
                         "getGroupAttributes"})


def _allowed(conn: WsConnection, row: Op) -> None:
    """Raise the refusal when the session's phase does not allow the op now
    (``Op.needs``): checked when the request is carried out, not received."""
    refused = conn.session.refusal(row.needs)
    if refused is not None:
        raise LivecastError(*refused)


# actions of the session (core/session.py), by type
_APPLY: dict[type, Callable[[WsConnection, Any], None]] = {
    Request: _dispatch,
    Reply: _reply,
    Write: _write,
    CloseWith: _close,
    Signal: _signal,
}


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


def _chain(node: Node, conn: WsConnection, req: Request, row: Op,
           after: list[asyncio.Future[None]], turn: Turn) -> None:
    """Run ``req`` off the reader once ``after`` is done (rule above ``Order``)."""
    order = conn.order
    if order is None:
        order = conn.order = Order()
    if len(order.waiting) >= MAX_WAITING:
        if req.id is not None:
            conn.send(reply(req.id, Code.TOO_MANY_WAITING,
                            f"too many requests waiting on this connection (at most "
                            f"{MAX_WAITING}): wait for their replies"))
        return
    if row.kind is Kind.SEND:
        turn.checked = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_after(after, turn, node, conn, req, row))
    order.add(task, row.kind, turn)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _after(after: list[asyncio.Future[None]], turn: Turn, node: Node, conn: WsConnection,
                 req: Request, row: Op) -> None:
    """Wait for ``after``, then carry ``req`` out and answer it; nothing is
    carried out once the connection is closing."""
    try:
        if after:
            await asyncio.wait(after)
        if conn.closing:
            return
        try:
            _allowed(conn, row)
            hooked = row.hooked if (row.handler is None or (row.hooks and node.hooks.enabled)
                                    or req.op in _OFF_READER) else None  # join: Node.enter
            if hooked is not None:
                result = await hooked(node, conn, req, turn)
            else:
                assert row.handler is not None  # a row has one handler at least
                result = row.handler(node, conn, req)
        except Exception as exc:
            _failed(node, conn, req, exc)
            return
        _answer(conn, req, result)
    finally:
        turn.release()


def _answer(conn: WsConnection, req: Request, result: Result) -> None:
    """A request carried out: the session learns of it (its phase may move
    on), and the request is answered when it has an id and a result."""
    if result is not None:
        conn.session.carried_out(req.op)
        if req.id is not None:
            conn.send(reply(req.id, 0, "", **result))


def _failed(node: Node, conn: Connection, req: Request, exc: Exception) -> None:
    """A refused request is answered with its code; a bug answers one request
    with 10002 and the connection goes on."""
    if isinstance(exc, LivecastError):
        if req.op == "send":
            node.metrics.rejected.labels(str(exc.code)).inc()
        code, info = int(exc.code), exc.info
    else:
        log.error("op %s failed", req.op, exc_info=exc)
        code, info = Code.INTERNAL, "internal error"
    if req.id is not None:
        conn.send(reply(req.id, code, info))


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
