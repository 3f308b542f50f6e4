"""The cluster broker: how the processes of one livecast cluster reach each other
(docs/design.md, "The cluster broker").

A ``Broker`` carries, between processes:
- a room's tick batch: published once per room per tick by the room's owner,
  delivered as the same bytes to every process subscribed to the room
  (``EventHandler.on_batch``), the publisher's own included when it is
  subscribed;
- control messages (``Control``): one small typed value per kind, addressed to
  one process by its node id or to ``ALL`` (the sender included), encoded with
  orjson and handed to the matching ``EventHandler.on_*`` method;
- room ownership: a lease per room with a fencing token, and the room's last
  seq, recorded by ``publish`` under the token's check;
- liveness: each process's heartbeat and what it reports.

``memory_broker.MemoryBroker`` (one process, or several sharing one
``MemoryHub``) and ``redis_broker.RedisBroker`` implement it; the contract
tests (tests/backplane/test_broker_contract.py) hold for both.

Invariants:
1. Subscriptions are reference-counted per room: the backend subscription is
   made on the first ``subscribe`` of a room and dropped on the last
   ``unsubscribe``; a batch reaches the handler only while the room's count is
   above zero (``RoomRefs``).  Calls for one room are applied one at a time.
2. Fencing tokens only grow per room; ``publish`` applies only with the room's
   latest token and never moves the room's seq backwards: a deposed owner
   cannot emit, and a new owner continues from ``last_seq`` (no reuse, no skip).
3. Batches of one room are published in call order.
4. A malformed control message or a handler's exception is logged and skipped:
   it never stops the delivery of the next message (of a bundle's next one too).
5. ``control_many`` sends each target's messages as ONE message on the wire
   (a bundle, ``encode_controls``), in order, all targets in one round trip
   per backend server; the receiver hands them on one by one, in order, as if
   sent one at a time.
6. A batch may carry the Delivered fates of the tick's forwarded sends
   (``encode_fates``): they cross with the batch, in the same message, and
   reach every subscribed process (``EventHandler.on_batch_fates``, after
   ``on_batch``) exactly when the batch does; a batch that was not published
   carried none.  The members' bytes (``full``, ``lite``) are unchanged.
7. A broker whose ``streams`` is true keeps the rooms' history streams
   itself: a ``publish`` given a ``StreamAppend`` appends it to the room's
   stream in the same atomic step, so a batch is in the stream exactly when
   it was published (a refused publish appends nothing, and no reader ever
   sees a batch written but not yet published).  Others never get one: the
   owner writes its history store before publishing (node/history.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

import orjson

from livecast.core.fate import Address, Delivered, Dropped, Failed, Fate

__all__ = ["ALL", "Broadcast", "Broker", "BrokerError", "Control", "Destroy", "EventHandler",
           "FateNotice", "ForwardedSend", "Kick", "MemberTips", "ProfileChanged", "RoomRefs",
           "StreamAppend", "Tips",
           "decode_control", "decode_controls", "decode_fates", "deliver", "encode_control",
           "encode_controls", "encode_fates", "hand_batch", "pack_batch", "unpack_batch"]

log = logging.getLogger(__name__)

ALL: Final = "*"  # the target of a control message for every process


class BrokerError(Exception):
    """The broker's backend cannot be reached (or refused a command).

    ``failed``: of a ``control_many``, the targets whose messages did not go
    out (None: any of them may not have).  ``maybe_sent``: the command went
    out and no answer came (a timeout, a connection lost on the way), so the
    backend may have run it; false when it certainly did not (no connection,
    an error reply)."""

    def __init__(self, message: str, failed: frozenset[str] | None = None,
                 maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.failed = failed
        self.maybe_sent = maybe_sent


# ----------------------------------------------------------------- control values
@dataclass(frozen=True, slots=True)
class ForwardedSend:
    """A send admitted on one process, for the room's owner; its fate goes to
    ``reply_to``.  ``rides``: the sender's process is subscribed to the room and
    stays so until the fate comes, so a Delivered fate may ride on the tick's
    batch (invariant 6) instead of a ``FateNotice``."""

    group_id: str
    reply_to: Address
    message: dict[str, Any]
    rides: bool = False


@dataclass(frozen=True, slots=True)
class FateNotice:
    """A message's fate, for the process that holds its sender (``address.node``)."""

    address: Address
    fate: Fate


@dataclass(frozen=True, slots=True)
class Kick:
    """Close ``user``'s sessions ("" group: every session) with ``reason``;
    a ban's (``operator``, ``client_ip``: the REST call's) is reported by
    each process that removed the user (``Group.CallbackAfterMemberExit``),
    and its end (``until``) applies there at once; a multi-login's names the
    new session (``session``: its connection id on the sending process)."""

    user: str
    reason: str
    group_id: str = ""
    operator: str = ""
    client_ip: str = ""
    until: float = 0.0
    session: int = 0


@dataclass(frozen=True, slots=True)
class Tips:
    """Join and quit tips of a room, for the members on every process."""

    group_id: str
    tips: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberTips:
    """One process's aggregated memberJoin/memberQuit tips of one tip interval
    for a room (``{"type", "members", "total"}`` each, None when there were
    none), for the members on the other processes."""

    group_id: str
    joins: dict[str, Any] | None = None
    quits: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Destroy:
    group_id: str


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    """``user``'s nick and avatar as stored now, for its sessions and the
    profile caches on every process."""

    user: str
    nick: str
    avatar: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MembersAsk:
    """A listing of a room's members (REST): every process with members of
    the room answers ``ask`` to the asker with its own (``MembersAnswer``)."""

    group_id: str
    ask: int


@dataclass(frozen=True, slots=True)
class MembersAnswer:
    """One process's logged-in members of a room, for a ``MembersAsk``:
    ``[connection id, user, nick, avatar]`` each, the newest join first."""

    ask: int
    members: list[list[Any]] = field(default_factory=list)


Control = (ForwardedSend | FateNotice | Kick | Tips | Destroy | Broadcast | MemberTips
           | ProfileChanged | MembersAsk | MembersAnswer)


class StreamAppend(NamedTuple):
    """A tick's batch for its room's history stream, appended by the publish
    itself (invariant 7): the ``msgs`` frame's JSON, the stream's length cap,
    its expiry after the last append, and its epoch if it has none yet."""

    payload: bytes
    maxlen: int
    ttl_ms: int
    epoch: int


class EventHandler(Protocol):
    """What a process implements to hear from the broker (called on its event loop)."""

    def on_batch(self, group_id: str, full: bytes, lite: bytes | None) -> None: ...
    def on_batch_fates(self, group_id: str, fates: bytes) -> None: ...
    def on_forwarded_send(self, origin: str, message: ForwardedSend) -> None: ...
    def on_fate(self, origin: str, message: FateNotice) -> None: ...
    def on_kick(self, origin: str, message: Kick) -> None: ...
    def on_tips(self, origin: str, message: Tips) -> None: ...
    def on_destroy(self, origin: str, message: Destroy) -> None: ...
    def on_broadcast(self, origin: str, message: Broadcast) -> None: ...
    def on_member_tips(self, origin: str, message: MemberTips) -> None: ...
    def on_profile(self, origin: str, message: ProfileChanged) -> None: ...
    def on_members_ask(self, origin: str, message: MembersAsk) -> None: ...
    def on_members_answer(self, origin: str, message: MembersAnswer) -> None: ...


class Broker(Protocol):
    node_id: str
    streams: bool  # publish can append to the room's history stream (invariant 7)

    async def start(self, handler: EventHandler) -> None:
        """Connect and start delivering to ``handler`` (this process's control channels)."""

    async def publish(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                      token: int, prev: int = -1, fates: bytes = b"",
                      stream: StreamAppend | None = None) -> bool:
        """One tick's batch of a room, ``seq_end`` its last seq (the room's last seq
        if it carries no message): False, and nothing sent or recorded, unless
        ``token`` is the room's latest fencing token and ``seq_end`` is not below
        the recorded seq (invariant 2), and, when ``prev`` is given (not -1), the
        recorded seq is ``prev``: the batch follows the last one published, so a
        batch that never crossed leaves no gap behind it (the owner resumes from
        ``last_seq``).  ``fates`` (``encode_fates``) ride with it (invariant 6);
        ``stream``, only to a broker that keeps ``streams``, goes to the room's
        history stream in the same step (invariant 7)."""

    def publish_now(self, group_id: str, full: bytes, lite: bytes | None, seq_end: int,
                    token: int, prev: int = -1) -> bool | None:
        """``publish`` done synchronously when the backend allows it (the
        in-memory broker: this process's own handler gets the batch before
        this returns, so one process fans a tick out within the tick with no
        task, future or await); None when it must be awaited (``publish``)."""

    async def subscribe(self, group_id: str) -> None:
        """One more local reference to the room (invariant 1)."""

    async def unsubscribe(self, group_id: str) -> None:
        """One reference fewer; the last one drops the subscription."""

    async def control(self, target: str, message: Control) -> None:
        """Send ``message`` to the process ``target`` (a node id) or to ``ALL``."""

    async def control_many(self, batches: Mapping[str, Sequence[Control]]) -> None:
        """Per target (a node id or ``ALL``) its messages, in order: one bundle
        on the wire per target, every target in one round trip per backend
        server (invariant 5)."""

    async def acquire_lease(self, group_id: str, node_id: str, ttl: float) -> int | None:
        """The room's lease for ``ttl`` seconds and its fencing token (the
        holder's own token again if ``node_id`` holds it); None while another holds it."""

    async def renew_lease(self, group_id: str, node_id: str, token: int, ttl: float) -> bool:
        """Extend a held lease; False if it was taken over (an expired one nobody
        took since is taken again: see ``renew_leases``)."""

    async def renew_leases(self, node_id: str, held: Mapping[str, int],
                           ttl: float) -> set[str]:
        """``renew_lease`` for many rooms in one round trip per backend server:
        the rooms renewed.  A lease that expired but was taken by nobody since
        (the room's fence is still ``token``) is taken again with the same token:
        a late renewal does not flap, and fencing stays exact (invariant 2)."""

    async def acquire_leases(self, node_id: str, group_ids: Sequence[str],
                             ttl: float) -> dict[str, int | str | None]:
        """``acquire_lease`` for many rooms in one round trip per backend server:
        per room its fencing token (held here now), the node holding it, or None
        (the holder could not be read)."""

    async def release_lease(self, group_id: str, node_id: str, token: int) -> bool:
        """Give a held lease up (the token stays spent)."""

    async def owner_of(self, group_id: str) -> str | None:
        """The node holding the room's lease, if any."""

    async def last_seq(self, group_id: str) -> int:
        """The last seq published for the room (0 if none)."""

    async def heartbeat(self, node_id: str, info: Mapping[str, Any],
                        ttl: float) -> dict[str, dict[str, Any]]:
        """``node_id`` is alive for ``ttl`` seconds more, reporting ``info``;
        returns what ``nodes`` would (this beat included), in the same round trip."""

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """Every live node and its last ``info`` (expired ones left out)."""

    async def ready(self) -> bool:
        """True while the backend is reachable and every subscription is in place."""

    def connected(self) -> bool:
        """Without a round trip: False while a subscription connection is known to
        be down (a send can be refused at once instead of waiting on a timeout)."""

    def reconnects(self) -> int:
        """How many times a subscription connection came back after it was lost:
        what was published to it meanwhile was missed."""

    async def close(self) -> None:
        """Stop delivering and release connections."""


# ----------------------------------------------------------------- encoding
_KINDS: dict[type, str] = {ForwardedSend: "send", FateNotice: "fate", Kick: "kick", Tips: "tips",
                           Destroy: "destroy", Broadcast: "broadcast", MemberTips: "members",
                           ProfileChanged: "profile", MembersAsk: "ask",
                           MembersAnswer: "answer"}
_HANDLERS: dict[str, str] = {"send": "on_forwarded_send", "fate": "on_fate", "kick": "on_kick",
                             "tips": "on_tips", "destroy": "on_destroy",
                             "broadcast": "on_broadcast", "members": "on_member_tips",
                             "profile": "on_profile", "ask": "on_members_ask",
                             "answer": "on_members_answer"}


def _address(a: Address) -> list[Any]:
    return [a.conn, a.request, a.rest, a.node]


def _fate(f: Fate) -> list[Any]:
    if isinstance(f, Delivered):
        return ["d", f.seq, f.time_ms]
    if isinstance(f, Dropped):
        return ["x", f.time_ms, f.reason]
    return ["f", f.code, f.reason]


_FATES: dict[str, Callable[[list[Any]], Fate]] = {
    "d": lambda v: Delivered(int(v[1]), int(v[2])),
    "x": lambda v: Dropped(int(v[1]), str(v[2])),
    "f": lambda v: Failed(int(v[1]), str(v[2]) if len(v) > 2 else ""),
}

_FIELDS: dict[type, Callable[[Any], dict[str, Any]]] = {
    ForwardedSend: lambda m: {"g": m.group_id, "a": _address(m.reply_to), "m": m.message,
                              "w": m.rides},
    FateNotice: lambda m: {"a": _address(m.address), "f": _fate(m.fate)},
    Kick: lambda m: {"u": m.user, "r": m.reason, "g": m.group_id,
                     **({"p": m.operator, "i": m.client_ip} if m.operator else {}),
                     **({"t": m.until} if m.until else {}),
                     **({"s": m.session} if m.session else {})},
    Tips: lambda m: {"g": m.group_id, "t": m.tips},
    Destroy: lambda m: {"g": m.group_id},
    Broadcast: lambda m: {"m": m.message},
    MemberTips: lambda m: {"g": m.group_id, "j": m.joins, "q": m.quits},
    ProfileChanged: lambda m: {"u": m.user, "n": m.nick, "a": m.avatar},
    MembersAsk: lambda m: {"g": m.group_id, "i": m.ask},
    MembersAnswer: lambda m: {"i": m.ask, "m": m.members},
}

_VALUES: dict[str, Callable[[dict[str, Any]], Control]] = {
    "send": lambda d: ForwardedSend(str(d["g"]), Address(*d["a"]), dict(d["m"]),
                                    bool(d.get("w", False))),
    "fate": lambda d: FateNotice(Address(*d["a"]), _FATES[d["f"][0]](d["f"])),
    "kick": lambda d: Kick(str(d["u"]), str(d["r"]), str(d["g"]), str(d.get("p", "")),
                           str(d.get("i", "")), float(d.get("t", 0.0)), int(d.get("s", 0))),
    "tips": lambda d: Tips(str(d["g"]), list(d["t"])),
    "destroy": lambda d: Destroy(str(d["g"])),
    "broadcast": lambda d: Broadcast(dict(d["m"])),
    "members": lambda d: MemberTips(str(d["g"]), _tip(d["j"]), _tip(d["q"])),
    "profile": lambda d: ProfileChanged(str(d["u"]), str(d["n"]), str(d["a"])),
    "ask": lambda d: MembersAsk(str(d["g"]), int(d["i"])),
    "answer": lambda d: MembersAnswer(int(d["i"]), [[int(m[0]), str(m[1]), str(m[2]), str(m[3])]
                                                    for m in d["m"]]),
}


def _tip(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"type": str(value["type"]), "members": [str(u) for u in value["members"]],
            "total": int(value["total"])}


def _doc(message: Control) -> dict[str, Any]:
    kind = type(message)
    return {"k": _KINDS[kind], **_FIELDS[kind](message)}


def encode_control(origin: str, message: Control) -> bytes:
    """``message`` from ``origin`` as one orjson document."""
    return orjson.dumps({"o": origin, **_doc(message)})


def encode_controls(origin: str, messages: Sequence[Control]) -> bytes:
    """Several messages from ``origin`` as one bundle: ``{"o", "b": [doc, ...]}``
    (one message alone is encoded as by ``encode_control``)."""
    if len(messages) == 1:
        return encode_control(origin, messages[0])
    return orjson.dumps({"o": origin, "b": [_doc(m) for m in messages]})


_MALFORMED = (ValueError, KeyError, TypeError, IndexError)


def decode_control(data: bytes) -> tuple[str, Control]:
    """``(origin, message)``; ValueError (or a KeyError/TypeError) for anything malformed."""
    doc = orjson.loads(data)
    return str(doc["o"]), _VALUES[doc["k"]](doc)


def decode_controls(data: bytes) -> tuple[str, list[Control | None]]:
    """``(origin, messages)`` of a bundle or of one message, None in place of
    each malformed message of a bundle; ValueError (or a KeyError/TypeError)
    when the whole is malformed."""
    doc = orjson.loads(data)
    origin = str(doc["o"])
    if "b" not in doc:
        return origin, [_VALUES[doc["k"]](doc)]
    out: list[Control | None] = []
    for one in list(doc["b"]):
        try:
            out.append(_VALUES[one["k"]](one))
        except _MALFORMED as exc:
            log.warning("skipped a malformed control message in a bundle (%s): %.200r",
                        exc, one)
            out.append(None)
    return origin, out


def deliver(handler: EventHandler, data: bytes) -> None:
    """Decode a control message or a bundle and hand each message to its
    ``on_*`` method, in order (invariants 4 and 5)."""
    try:
        origin, messages = decode_controls(data)
    except _MALFORMED as exc:
        log.warning("skipped a malformed control message (%s): %.200r", exc, data)
        return
    for message in messages:
        if message is not None:
            _hand(handler, origin, message)


def _hand(handler: EventHandler, origin: str, message: Control) -> None:
    try:
        getattr(handler, _HANDLERS[_KINDS[type(message)]])(origin, message)
    except Exception:
        log.exception("the handler failed on a %s control message", type(message).__name__)


def hand_batch(handler: EventHandler, group_id: str, full: bytes, lite: bytes | None,
               fates: bytes = b"") -> None:
    try:
        handler.on_batch(group_id, full, lite)
    except Exception:
        log.exception("the handler failed on a batch of %s", group_id)
    if fates:
        try:
            handler.on_batch_fates(group_id, fates)
        except Exception:
            log.exception("the handler failed on the fates of a batch of %s", group_id)


# ----------------------------------------------------------------- fates on a batch
def encode_fates(fates: Mapping[str, Sequence[tuple[Address, Delivered]]]) -> bytes:
    """Delivered fates per node, to ride on a batch (invariant 6):
    ``{node: [[conn, request, rest, seq, time_ms], ...]}``; b"" for none."""
    if not fates:
        return b""
    return orjson.dumps({node: [[a.conn, a.request, a.rest, f.seq, f.time_ms]
                                for a, f in pairs] for node, pairs in fates.items()})


def decode_fates(data: bytes, node: str) -> list[tuple[Address, Delivered]]:
    """The fates of ``data`` addressed to ``node`` (none without decoding
    when the node is not named); ValueError (or a KeyError/TypeError/IndexError)
    when malformed."""
    if orjson.dumps(node) not in data:
        return []
    mine = orjson.loads(data).get(node) or []
    return [(Address(int(v[0]), v[1], int(v[2]), node), Delivered(int(v[3]), int(v[4])))
            for v in mine]


# A batch on the wire: b"F" + full, or b"L" + len(full) (4 bytes, big-endian) + full + lite;
# with fates, b"R" + len(fates) (4 bytes, big-endian) + fates before either.
_LEN = struct.Struct(">I")


def pack_batch(full: bytes, lite: bytes | None, fates: bytes = b"") -> bytes:
    riders = b"R" + _LEN.pack(len(fates)) + fates if fates else b""
    if lite is None:
        return riders + b"F" + full
    return riders + b"L" + _LEN.pack(len(full)) + full + lite


def unpack_batch(data: bytes) -> tuple[bytes, bytes | None, bytes]:
    """The inverse of ``pack_batch``: ``(full, lite, fates)``; ValueError for anything else."""
    fates = b""
    if data[:1] == b"R" and len(data) >= 5:
        (n,) = _LEN.unpack_from(data, 1)
        fates, data = data[5:5 + n], data[5 + n:]
    kind = data[:1]
    if kind == b"F":
        return data[1:], None, fates
    if kind == b"L" and len(data) >= 5:
        (n,) = _LEN.unpack_from(data, 1)
        if 5 + n <= len(data):
            return data[5:5 + n], data[5 + n:], fates
    raise ValueError("not a packed batch")


# ----------------------------------------------------------------- reference counts
class KeyedLocks:
    """One lock per key, kept only while it is held or waited for: work on one
    key runs one at a time, in call order; an idle key costs nothing."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, users)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class RoomRefs:
    """Per-room reference counts whose first and last references run the
    backend's subscribe and unsubscribe, one call per room at a time."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._locks = KeyedLocks()

    def __contains__(self, group_id: str) -> bool:
        return group_id in self.counts

    async def _locked(self, group_id: str, work: Callable[[], Awaitable[None]]) -> None:
        async with self._locks.hold(group_id):
            await work()

    async def add(self, group_id: str, first: Callable[[str], Awaitable[None]]) -> None:
        async def work() -> None:
            n = self.counts.get(group_id, 0)
            self.counts[group_id] = n + 1
            if n == 0:
                try:
                    await first(group_id)
                except BaseException:
                    del self.counts[group_id]
                    raise
        await self._locked(group_id, work)

    async def remove(self, group_id: str, last: Callable[[str], Awaitable[None]]) -> None:
        async def work() -> None:
            n = self.counts.get(group_id, 0)
            if n > 1:
                self.counts[group_id] = n - 1
            elif n == 1:
                del self.counts[group_id]  # no batch is handed on from now (invariant 1)
                await last(group_id)
        await self._locked(group_id, work)
