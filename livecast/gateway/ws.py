"""The WebSocket endpoint ``/v1/ws`` (spec/websocket.md): one reader task per
connection, ops dispatched through a table, every reply written through the
connection's transport (no await on the write path).

Remote misbehaviour becomes a reply code or a close code:
- binary frames, non-JSON, unknown ops, wrong types: error reply (when the id
  can be told) and a violation; ``violation_limit`` of them close with 4009;
- requests beyond the per-connection rate: reply 10023, and a connection that
  keeps flooding past a second budget is closed with 4029;
- frames over 64 KiB: close 1009 (aiohttp's reader enforces ``max_msg_size``);
- a request from a connection whose outbox is past ``outbox_hard_bytes`` is not
  answered: the connection is shed (4008), as fan-out does;
- no login (or guest join) within ``login_timeout``: close 4002.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from livecast.core.bucket import TokenBucket
from livecast.core.protocol import MAX_FRAME_BYTES, FrameError, Request, parse_frame, reply
from livecast.core.scheduler import parse_priority
from livecast.core.usersig import verify
from livecast.errors import Close, Code, LivecastError
from livecast.node.connection import Connection
from livecast.node.hub import Node
from livecast.node.room import FATE_INFO, Outgoing

log = logging.getLogger("livecast.gateway")

Result = dict[str, Any] | None
Handler = Callable[[Node, Connection, Request], Awaitable[Result]]


class Session:
    """Per-connection request accounting (flood and violation budgets), and the
    chain of requests waiting for the app backend's callbacks."""

    __slots__ = ("chain", "chain_op", "flood", "limiter", "violations", "waiting")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.limiter = TokenBucket(rate, burst, now)
        self.violations = 0
        self.flood = 0
        self.chain: asyncio.Task[None] | None = None
        self.chain_op = ""  # the op of ``chain``
        self.waiting = 0


# Ops that may wait for a before-* callback (up to LIVECAST_CALLBACK_TIMEOUT):
# with webhooks on they run off the reader, in order among themselves, so a
# slow backend never holds up the connection's other requests (ping, info...).
# Consecutive sends ask the backend concurrently and still reach the room in
# order (each waits for its predecessor's turn before ``submit``).
TURN: contextvars.ContextVar[asyncio.Task[None] | None] = contextvars.ContextVar(
    "turn", default=None)
CALLBACK_OPS = frozenset({"send", "join"})
MAX_WAITING = 32  # per connection; past it a request is refused with 10023
_background: set[asyncio.Task[None]] = set()


# ------------------------------------------------------------------ ops
async def op_login(node: Node, conn: Connection, req: Request) -> Result:
    a = req.args
    s = node.settings
    if conn.logged_in:
        raise LivecastError(Code.BAD_PARAMETER, "already logged in")
    if a["sdkAppId"] != s.sdkappid:
        code: int = Code.SIG_SDKAPPID_MISMATCH
    else:
        code = verify(a["userSig"], s.sdkappid, s.secret_key.value, a["userId"], node.clock())
    if code:
        conn.send(reply(req.id, int(code), "login failed: UserSig refused"))
        node.close(conn, Close.LOGIN_FAILED, "login failed")
        return None
    node.login(conn, a["userId"])
    return {"serverTime": int(node.clock() * 1000)}


async def op_join(node: Node, conn: Connection, req: Request) -> Result:
    return await node.enter(conn, req.args["groupId"])


async def op_quit(node: Node, conn: Connection, req: Request) -> Result:
    node.room(req.args["groupId"])
    node.quit(conn, req.args["groupId"])
    return {}


async def op_send(node: Node, conn: Connection, req: Request) -> Result:
    a = req.args
    priority = parse_priority(a["priority"])
    assert priority is not None  # validated by the protocol table
    rid = req.id

    def fate(seq: int, time_ms: int, drop_reason: str, code: int = 0) -> None:
        if rid is None:
            return
        if code:
            conn.send(reply(rid, code, FATE_INFO.get(code, "")))
        else:
            conn.send(reply(rid, 0, "", msgSeq=seq, msgTime=time_ms, dropReason=drop_reason))

    msg = Outgoing(conn.user, conn.nick, conn.avatar, priority, a["random"], a["msgBody"],
                   a["cloudCustomData"], fate, operator=conn.user, client_ip=conn.peer)
    node.check_send(conn, a["groupId"], msg)
    await node.send(a["groupId"], msg, TURN.get())
    return None


async def op_group_info(node: Node, conn: Connection, req: Request) -> Result:
    group = node.room(req.args["groupId"]).group
    return {"group": group.profile(), "counters": group.counter_list()}


async def op_online(node: Node, conn: Connection, req: Request) -> Result:
    return {"onlineMemberNum": node.room(req.args["groupId"]).online()}


def _need_login(conn: Connection) -> None:
    if not conn.logged_in:
        raise LivecastError(Code.NO_PERMISSION, "login first")


async def op_set_profile(node: Node, conn: Connection, req: Request) -> Result:
    _need_login(conn)
    node.set_profile(conn.user, req.args.get("nick"), req.args.get("avatar"))
    return {}


async def op_get_profile(node: Node, conn: Connection, req: Request) -> Result:
    _need_login(conn)
    return {"nick": conn.nick, "avatar": conn.avatar}


async def op_ping(node: Node, conn: Connection, req: Request) -> Result:
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
    "ping": op_ping,
}


# ------------------------------------------------------------------ the reader
async def handle_ws(request: web.Request) -> web.StreamResponse:
    node: Node = request.app[NODE]
    if node.draining:
        raise web.HTTPServiceUnavailable(text="draining")
    # aiohttp refuses a message of max_msg_size bytes or more: +1 lets 64 KiB through
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES + 1, compress=False,
                               autoclose=False, heartbeat=30.0)
    await ws.prepare(request)
    conn = Connection(request.transport, ws, request.remote or "")
    node.attach(conn)
    loop = asyncio.get_running_loop()
    deadline = loop.call_later(node.settings.login_timeout, _login_deadline, node, conn)
    session = Session(node.settings.req_rate, node.settings.req_burst, loop.time())
    try:
        await _read_loop(node, conn, ws, session)
    finally:
        deadline.cancel()
        node.detach(conn)
        conn.closing = True
        if request.transport is not None:
            request.transport.close()
    return ws


def _login_deadline(node: Node, conn: Connection) -> None:
    if not conn.logged_in and not conn.guest:
        node.close(conn, Close.LOGIN_TIMEOUT, "no login in time")


async def _read_loop(node: Node, conn: Connection, ws: web.WebSocketResponse,
                     session: Session) -> None:
    """Read until the peer closes.  Once the server has sent its close frame
    (``conn.closing``) input is drained unread: closing a socket that still has
    unread input resets it, and the reset would discard the close frame."""
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            if not conn.closing:
                await _on_text(node, conn, session, msg.data)
        elif msg.type is WSMsgType.BINARY:
            if not conn.closing:
                _violation(node, conn, session, None, Code.BAD_PARAMETER,
                           "binary frames are refused")
        elif msg.type is WSMsgType.CLOSE:
            node.close(conn, Close.NORMAL if msg.data is None else _echo(msg.data))
            return
        elif msg.type is WSMsgType.ERROR:
            exc = ws.exception()
            code = getattr(exc, "code", Close.VIOLATIONS)
            node.close(conn, int(code), "frame too large" if code == 1009 else "protocol error")
            return
        else:  # CLOSING / CLOSED
            return


def _echo(code: int) -> int:
    return code if code in (1000, 1001) or 3000 <= code < 5000 else 1000


async def _on_text(node: Node, conn: Connection, session: Session, data: str) -> None:
    if conn.buffered() > node.settings.outbox_hard_bytes:
        node.shed(conn)  # replies share the bounded outbox: a client that never reads
        return
    now = asyncio.get_running_loop().time()
    parsed = parse_frame(data)
    if isinstance(parsed, FrameError) and parsed.violation:
        _violation(node, conn, session, parsed.id, parsed.code, parsed.info)
        return
    # every answered frame costs a token, refused values included
    if not session.limiter.try_take(now):
        _flood(node, conn, session, parsed.id)
        return
    session.flood = 0
    if isinstance(parsed, FrameError):
        if parsed.id is not None:
            conn.send(reply(parsed.id, parsed.code, parsed.info))
        return
    if parsed.op in CALLBACK_OPS and node.hooks.enabled:
        _chain(node, conn, session, parsed)
        return
    await _dispatch(node, conn, parsed)


def _chain(node: Node, conn: Connection, session: Session, req: Request) -> None:
    """Run ``req`` after the connection's earlier callback ops, off the reader."""
    if session.waiting >= MAX_WAITING:
        if req.id is not None:
            conn.send(reply(req.id, Code.FREQ_LIMIT, "too many requests waiting for the "
                                                      "app backend's callbacks"))
        return
    session.waiting += 1
    pipelined = req.op == "send" and session.chain_op == "send"
    task = asyncio.create_task(_after(session.chain, pipelined, node, conn, session, req))
    session.chain, session.chain_op = task, req.op
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _after(prev: asyncio.Task[None] | None, pipelined: bool, node: Node,
                 conn: Connection, session: Session, req: Request) -> None:
    """A send after a send starts at once and waits for its turn inside
    ``Node.send``; anything else waits for the previous op to end first."""
    try:
        if prev is not None and not prev.done():
            if pipelined:
                TURN.set(prev)
            else:
                await asyncio.wait([prev])
        await _dispatch(node, conn, req)
    finally:
        session.waiting -= 1


async def _dispatch(node: Node, conn: Connection, req: Request) -> None:
    try:
        result = await OPS[req.op](node, conn, req)
    except LivecastError as err:
        if req.op == "send":
            node.metrics.rejected.labels(str(err.code)).inc()
        if req.id is not None:
            conn.send(reply(req.id, err.code, err.info))
        return
    except Exception:  # a bug answers one request; the connection goes on
        log.exception("op %s failed", req.op)
        if req.id is not None:
            conn.send(reply(req.id, Code.INTERNAL, "internal error"))
        return
    if result is not None and req.id is not None:
        conn.send(reply(req.id, 0, "", **result))


def _violation(node: Node, conn: Connection, session: Session, rid: Any, code: int,
               info: str) -> None:
    node.metrics.violations.inc()
    session.violations += 1
    if rid is not None:
        conn.send(reply(rid, code, info))
    if session.violations >= node.settings.violation_limit:
        node.close(conn, Close.VIOLATIONS, "too many protocol violations")


def _flood(node: Node, conn: Connection, session: Session, rid: Any) -> None:
    session.flood += 1
    if rid is not None:
        conn.send(reply(rid, Code.FREQ_LIMIT, "too many requests: slow down"))
    if session.flood > node.settings.req_burst:
        node.close(conn, Close.FLOOD, "flood")


NODE: web.AppKey[Node] = web.AppKey("node", Node)
