"""The connection, sans I/O: one client's WebSocket session as a pure object
(docs/design.md, "The connection, sans I/O"), built the way python-websockets'
``Protocol`` and h11's ``Connection`` are: bytes in, actions out, no I/O.

Inputs, all from the shell (``gateway/ws.py``):
- ``receive_data(data)``: the bytes the socket read, as they came;
- ``next_actions(now, outbox, closing)``: what to do about the next message
  received, given the time, the connection's outbox (a function returning the
  bytes written and not yet taken by the peer, asked only when a rule needs
  it) and whether the connection is closing (a close frame sent, by this
  object's decision or the node's);
- ``carried_out(op)``: a request the shell dispatched was carried out
  (its handler answered); a login or a guest's join moves the phase;
- ``refusal(needs)``: asked when a request is carried out, what its op needs
  of the phase;
- ``opened(now)`` / ``login_expired()``: the object reports the login
  deadline, the shell arms a timer for it and says when it has come.

Outputs (actions, in the order they are to be carried out): a ``Request`` to
dispatch to the node, a ``Reply`` to send, a ``Write`` of a frame (a pong),
a ``CloseWith`` (send the close frame, leave every room), ``SHED`` (the
outbox is past the hard limit: close 4008 as fan-out does), ``HANG_UP``
(close the TCP connection now), ``VIOLATION`` (count one in the metrics).

Invariants:
1. It never raises on input: broken framing, bad JSON, unknown ops, floods
   and any byte stream become replies and close codes (STYLE.md habit 1).
2. Every frame costs a token of the request bucket (``LIVECAST_REQ_RATE`` /
   ``LIVECAST_REQ_BURST``), control frames included, except the peer's close
   and frames refused as violations (they count toward 4009 instead): pings
   and unsolicited pongs are a flood like any request (issue 14 points 2, 6),
   and a message in N frames costs N tokens: the reader marks each frame of
   a fragmented message but the last (``wsframe.FRAGMENT``), and each mark
   takes its token where its frame came, the message its last frame's.
3. A frame with no token is refused (10023 when it has an id) and adds to the
   decaying flood score (core/flood.py); past its limit: close 4029.  A
   fragment has no id of its own: its message is refused whole when it ends
   (10023 when it has an id), even if its last frame finds a token.
4. ``violation_limit`` violations close with 4009; each is counted.
5. While the outbox is past ``outbox_hard_bytes`` a text frame or a ping is
   not answered: the connection is shed; past ``outbox_soft_bytes`` pings go
   unanswered (RFC 6455 section 5.5.3 asks only for the latest).
6. Once closing, nothing the peer sends is acted on but its close frame,
   which ends the session (the close is echoed, the socket hung up).  Input
   is looked through for it up to ``CLOSE_WAIT_BYTES`` read after closing
   was decided (here or by the node); past that the peer is not answering
   (a flood goes on): ``HANG_UP``, and nothing more is read.
7. Broken framing (RFC 6455 section 7.1.7): the whole messages before it are
   still acted on, then the connection closes with the reader's code (1002,
   1007, 1008, 1009) and the rest is only walked for the peer's close
   (``wsframe.Drain``).
8. The phase only moves forward: OPEN (upgraded) -> GUEST (joined a room
   without a login) -> USER (logged in), OPEN -> USER, and any phase ->
   CLOSING once this object decides to close (CLOSING is the last).  Rooms
   are the node's (``Connection.rooms``).  Still OPEN at the login deadline
   (``opened``): close 4002; so is a guest that has left every room it
   joined and neither logs in nor joins again by a new deadline.
9. Idle, a session holds its reader, its bucket and nothing it does not need
   yet: the flood score is made at the first refusal (docs/benchmarks.md,
   "Memory").

Pure: no clock reads, no I/O; ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from livecast.core.bucket import TokenBucket
from livecast.core.flood import FloodScore, flood_limit
from livecast.core.protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    HasSpec,
    Needs,
    Request,
    parse_frame,
    reply,
)
from livecast.core.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Drain,
    Reader,
    WsError,
    close_code,
    frame,
)
from livecast.errors import Close, Code


class Limits(Protocol):
    """The settings a session reads (``livecast.settings.Settings`` has them)."""

    @property
    def req_rate(self) -> float: ...
    @property
    def req_burst(self) -> int: ...
    @property
    def violation_limit(self) -> int: ...
    @property
    def outbox_soft_bytes(self) -> int: ...
    @property
    def outbox_hard_bytes(self) -> int: ...
    @property
    def login_timeout(self) -> float: ...
    @property
    def allow_guests(self) -> bool: ...


class Phase(Enum):
    OPEN = "open"  # upgraded (the 101 is written), not logged in, in no room
    GUEST = "guest"  # joined a room without a login
    USER = "user"  # logged in
    CLOSING = "closing"  # this object decided to close (the node may close it too)


# the phase after a request carried out (invariant 8), as h11 draws its
# transitions: op -> {phase: next phase}; any other op or phase leaves it as
# it is (keyed by op first: most requests move nothing, and cost one lookup)
TRANSITIONS: Mapping[str, Mapping[Phase, Phase]] = {
    "login": {Phase.OPEN: Phase.USER, Phase.GUEST: Phase.USER},
    "join": {Phase.OPEN: Phase.GUEST},
}


# ------------------------------------------------------------------ actions
@dataclass(frozen=True, slots=True)
class Reply:
    """Send this reply (a dict the shell encodes)."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Write:
    """Write this frame as it is (a pong)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseWith:
    """Close the connection: the close frame with ``code`` and ``reason``."""

    code: int
    reason: str = ""


class Signal(Enum):
    SHED = "shed"  # the outbox is past the hard limit: shed (4008)
    HANG_UP = "hang up"  # close the TCP connection now
    VIOLATION = "violation"  # count a protocol violation


SHED, HANG_UP, VIOLATION = Signal.SHED, Signal.HANG_UP, Signal.VIOLATION
_ANY, _CLOSING = Needs.ANY, Phase.CLOSING  # a member read off its class costs 0.2 us
Action = Request | Reply | Write | CloseWith | Signal
_SLOW_DOWN = "too many requests: slow down"
# input read once closing, looked through for the peer's close (invariant 6):
# two frames of the largest size; a peer that answers its close frame has no
# reason to send more, one that floods on is hung up on instead of read
CLOSE_WAIT_BYTES = 2 * MAX_FRAME_BYTES
_NO_ANSWER: tuple[int, bytes] = (-1, b"")  # the inbox's last item past it: hang up
Outbox = Callable[[], int]


def _echo(code: int) -> int:
    """The code to answer a peer's close with: its own when it is one a
    server may send back, else 1000."""
    return code if code in (1000, 1001) or 3000 <= code < 5000 else Close.NORMAL


# a join's recent or recovered messages cost one request token more per whole
# this many bytes (beside the join's own token), so that a join repeated with
# ``sinceSeq`` pulls a room's history no faster than the request budget allows
HISTORY_BYTES_PER_TOKEN = 4096


class Session:
    """One connection's protocol state, budgets and rules (module docstring)."""

    __slots__ = ("cut", "failure", "flood", "inbox", "limiter", "limits", "ops", "phase",
                 "reader", "violations", "waited")

    def __init__(self, limits: Limits, ops: Mapping[str, HasSpec], now: float) -> None:
        self.limits = limits
        self.ops = ops
        self.reader = Reader(MAX_FRAME_BYTES, marks=True)  # a FRAGMENT per fragment: a token each
        self.limiter = TokenBucket(limits.req_rate, limits.req_burst, now)
        self.flood: FloodScore | None = None  # made at the first refusal: none while idle
        self.violations = 0
        self.phase = Phase.OPEN
        self.inbox: list[tuple[int, bytes]] | None = None  # received, newest first
        self.failure: WsError | None = None  # broken framing, acted on after the inbox
        self.cut = False  # a frame of the fragmented message under way found no token
        self.waited: int | None = None  # bytes read since closing was decided (invariant 6)

    def charge_history(self, now: float, size: int) -> None:
        """A join answered with ``size`` bytes of messages: the tokens past its
        own, taken even into debt (the requests after it wait for them)."""
        extra = size // HISTORY_BYTES_PER_TOKEN
        if extra:
            self.limiter.charge(now, extra)

    # ---------------------------------------------------------------- input
    def receive_data(self, data: bytes) -> None:
        """Take bytes as the socket read them; the messages they complete are
        acted on by ``next_actions``."""
        waited = self.waited
        if waited is not None:  # closing: only the peer's close is looked for
            if waited > CLOSE_WAIT_BYTES:
                return  # hung up on: nothing more is read
            self.waited = waited = waited + len(data)
            if waited > CLOSE_WAIT_BYTES:
                self.inbox, self.failure = [_NO_ANSWER], None
                return
        try:
            messages = self.reader.feed(data)
        except WsError as err:  # the messages before the violation still count
            messages, self.failure = err.messages, err
        if messages:
            messages.reverse()
            self.inbox = messages + self.inbox if self.inbox else messages

    def next_actions(self, now: float, outbox: Outbox, closing: bool) -> list[Action] | None:
        """The actions for the next message received; None when there is none."""
        inbox = self.inbox
        if inbox:
            opcode, payload = inbox.pop()
            if opcode == OP_CLOSE:
                return self._peer_closed(payload)
            if closing or self.phase is _CLOSING:
                return self._ignored(opcode)
            return self.on_frame(opcode, payload, now, outbox)
        self.inbox = None  # an idle session keeps no empty list
        if self.failure is not None:
            return self._fail(self.failure)
        return None

    def carried_out(self, op: str) -> None:
        """A request was carried out: the phase it leads to (invariant 8)."""
        moves = TRANSITIONS.get(op)
        if moves is not None:
            self.phase = moves.get(self.phase, self.phase)

    def refusal(self, needs: Needs) -> tuple[int, str] | None:
        """Why a request that ``needs`` this of the phase is refused now, as
        (code, info); None when it may be carried out."""
        phase = self.phase
        if needs is _ANY:
            return None
        if needs is Needs.NO_LOGIN and phase is Phase.USER:
            return Code.BAD_PARAMETER, "already logged in"
        if needs is Needs.LOGIN and phase is not Phase.USER:
            return Code.NO_PERMISSION, "login first"
        if needs is Needs.READER and phase is not Phase.USER and not self.limits.allow_guests:
            return Code.NO_PERMISSION, "guests are not allowed: login first"
        return None

    def opened(self, now: float) -> float:
        """The login deadline of a connection upgraded at ``now``: the time by
        which it must have logged in or joined as a guest.  The shell arms a
        timer for it, and calls ``login_expired`` when it fires."""
        return now + self.limits.login_timeout

    def login_expired(self, roomless: bool = False) -> list[Action]:
        """The login deadline has come: close 4002 when neither logged in nor
        a guest, or a guest in no room (``roomless``: it left every room it
        had joined, and a new deadline was armed then)."""
        if self.phase is Phase.OPEN or (roomless and self.phase is Phase.GUEST):
            self._closing()
            return [CloseWith(Close.LOGIN_TIMEOUT, "no login in time")]
        return []

    # ---------------------------------------------------------------- frames
    def on_frame(self, opcode: int, payload: bytes, now: float, outbox: Outbox) -> list[Action]:
        """One whole message, or a ping or pong, from the peer (not a close)."""
        if opcode == OP_TEXT:
            return self._on_text(payload, now, outbox)
        if opcode == OP_PING:
            return self._on_ping(payload, now, outbox)
        if opcode == OP_PONG:  # proves the peer alive (the shell's ``seen``); costs a token
            return [] if self.limiter.try_take(now) else self._flood(now, None)
        if opcode == OP_CONT:  # a frame of a fragmented message but its last
            return self._on_fragment(now)
        if opcode == OP_BINARY:  # answered when its id can be read (websocket.md)
            self.cut = False
            return self._violation(parse_frame(payload, self.ops).id, Code.BAD_PARAMETER,
                                   "binary frames are refused")
        return []

    def _on_text(self, payload: bytes, now: float, outbox: Outbox) -> list[Action]:
        if outbox() > self.limits.outbox_hard_bytes:
            return self._shed()
        parsed = parse_frame(payload, self.ops)
        if self.cut:
            return self._cut_short(parsed, now)
        if isinstance(parsed, Request):
            return [parsed] if self.limiter.try_take(now) else self._flood(now, parsed.id)
        if parsed.violation:
            return self._violation(parsed.id, parsed.code, parsed.info)
        if not self.limiter.try_take(now):  # refused values cost a token too
            return self._flood(now, parsed.id)
        return [] if parsed.id is None else [Reply(reply(parsed.id, parsed.code, parsed.info))]

    def _on_fragment(self, now: float) -> list[Action]:
        """A fragment costs a token like any frame (invariant 2); without one,
        it is refused like one, and so will its message be (invariant 3)."""
        if self.limiter.try_take(now):
            return []
        self.cut = True
        return self._flood(now, None)

    def _cut_short(self, parsed: Request | FrameError, now: float) -> list[Action]:
        """The end of a message one of whose fragments found no token: its
        last frame costs a token too, and the message is refused whole, as a
        message with no token is (a broken one is still a violation)."""
        self.cut = False
        if isinstance(parsed, FrameError) and parsed.violation:
            return self._violation(parsed.id, parsed.code, parsed.info)
        if not self.limiter.try_take(now):
            return self._flood(now, parsed.id)
        return [] if parsed.id is None else [Reply(reply(parsed.id, Code.FREQ_LIMIT, _SLOW_DOWN))]

    def _on_ping(self, payload: bytes, now: float, outbox: Outbox) -> list[Action]:
        """A ping costs a token like any request; its pong shares the outbox."""
        size = outbox()
        if size > self.limits.outbox_hard_bytes:
            return self._shed()
        if not self.limiter.try_take(now):
            return self._flood(now, None)
        return [Write(frame(payload, OP_PONG))] if size <= self.limits.outbox_soft_bytes else []

    def _violation(self, rid: int | str | None, code: int, info: str) -> list[Action]:
        self.violations += 1
        actions: list[Action] = [VIOLATION]
        if rid is not None:
            actions.append(Reply(reply(rid, code, info)))
        if self.violations >= self.limits.violation_limit:
            self._closing()
            actions.append(CloseWith(Close.VIOLATIONS, "too many protocol violations"))
        return actions

    def _flood(self, now: float, rid: int | str | None) -> list[Action]:
        flood = self.flood
        if flood is None:
            flood = self.flood = FloodScore(flood_limit(self.limits.req_burst))
        over = flood.refused(now)
        actions: list[Action] = []
        if rid is not None:
            actions.append(Reply(reply(rid, Code.FREQ_LIMIT, _SLOW_DOWN)))
        if over:
            self._closing()
            actions.append(CloseWith(Close.FLOOD, "flood"))
        return actions

    # ---------------------------------------------------------------- endings
    def _closing(self) -> None:
        """This object decides to close (invariant 8); from now on input is
        only looked through for the peer's close (invariant 6)."""
        self.phase = Phase.CLOSING
        if self.waited is None:
            self.waited = 0

    def _ignored(self, opcode: int) -> list[Action]:
        """A frame received while closing (invariant 6): nothing is done about
        it, but the peer is hung up on once it has sent too much."""
        if opcode == _NO_ANSWER[0]:
            self.inbox = None
            return [HANG_UP]
        if self.waited is None:  # the node closed it: count from now on
            self.waited = 0
        return []

    def _shed(self) -> list[Action]:
        """Answers share the bounded outbox: a client past the hard limit (one
        that sends but never reads) is shed, as fan-out does."""
        self._closing()
        return [SHED]

    def _peer_closed(self, payload: bytes) -> list[Action]:
        """RFC 6455 section 7.1.1: the close is echoed and, the server closing
        first, the TCP connection closed; nothing after it is read."""
        self.inbox, self.failure, self.phase = None, None, Phase.CLOSING
        try:
            code = close_code(payload)
        except WsError:  # checked by the reader already; a Drain gives b""
            code = None
        return [CloseWith(Close.NORMAL if code is None else _echo(code)), HANG_UP]

    def _fail(self, err: WsError) -> list[Action]:
        """RFC 6455 section 7.1.7: send the close frame, process nothing more,
        and hang up as soon as the peer's close arrives (at once when the
        offending frame was that close, a bad code say) (a ``Drain`` still
        finds it in the broken stream), at once when the framing is lost.
        Input is read until then (up to ``CLOSE_WAIT_BYTES``), not left
        unread: closing a socket with unread input resets it, and the reset
        could discard the close frame."""
        if err.peer_closed:  # its close came, malformed: the handshake is over
            self.inbox, self.failure, self.phase = None, None, Phase.CLOSING
            return [CloseWith(err.code, err.reason), HANG_UP]
        self.failure, self.phase = None, Phase.CLOSING
        self.reader = Drain()
        self.receive_data(err.rest)  # read with the violation: not counted (invariant 6)
        self._closing()
        return [CloseWith(err.code, err.reason)]
