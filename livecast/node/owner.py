"""A room's owner: the one place its messages are scheduled, numbered and encoded.

Invariants (docs/design.md, "The room scheduler" and "Shape of a process"):

1. One owner per room: the room's group state, scheduler (rate, priority,
   drop order, seq) and dispatch timer live here and nowhere else.  On one
   process every room's owner is local; a cluster places each room's owner on
   exactly one process.
2. A dispatch ticks the scheduler once, encodes the delivered batch once (the
   full ``msgs`` frame, and a lite one without Low/Lowest when the batch has
   any) and hands the batch and the bytes to ``RoomEvents.deliver``.  The owner never
   writes to a socket and never sees a member.
3. Every offered message ends exactly once: delivered with its seq and time
   (in the batch handed to ``RoomEvents.deliver``), or as a fate value handed
   to ``RoomEvents.settle``: ``Dropped`` by frequency control, or ``Failed``
   with a code (room destroyed, shutdown).
4. A room with waiting messages is always scheduled: a quiet room dispatches
   its first message on the next loop iteration (messages offered in the same
   iteration share one frame), a busy one once per tick.

Time is injected: ``timers`` (monotonic: the ticks, and the scheduler's
time, its bucket and its messages' waits, so a step of the wall clock never
stalls a room nor expires its queue; the event loop in production) and
``clock`` (wall time, for the messages' times), so a test drives a room by
hand (tests/node/test_owner.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from livecast.core.fate import Dropped, Failed, Fate
from livecast.core.group import Group
from livecast.core.scheduler import Pending, Priority, RoomScheduler
from livecast.core.wsframe import frame
from livecast.node.room import Outgoing

_NORMAL = Priority.NORMAL


class Handle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """What the owner needs of an event loop (``asyncio`` loops fit as they are)."""

    def time(self) -> float: ...
    def call_soon(self, callback: Callable[[], object]) -> Handle: ...
    def call_at(self, when: float, callback: Callable[[], object]) -> Handle: ...


class RoomEvents(Protocol):
    """Where a room's decisions go: the node wires them to members and senders."""

    def deliver(self, owner: RoomOwner, batch: list[tuple[int, Pending]], encoded: list[bytes],
                full: bytes, lite: bytes | None, time_ms: int) -> None:
        """One tick's delivered messages (their seqs, each one's JSON as the
        frames carry it, at ``time_ms``) and the encoded frames: for every
        member of the room, then each message's fate (``Delivered``) for its
        sender, in seq order."""

    def settle(self, group_id: str, msg: Outgoing, priority: Priority, fate: Fate) -> None:
        """A message's one and only fate, for its sender (a message that is
        not delivered: dropped, or failed)."""

    def ticked(self, seconds: float) -> None:
        """How long one dispatch took."""


class RoomOwner:
    __slots__ = ("_clock", "_events", "_head", "_tick", "_timers", "closed", "group", "handle",
                 "last_dispatch", "sched")

    def __init__(self, group: Group, sched: RoomScheduler, events: RoomEvents, timers: Timers,
                 clock: Callable[[], float], tick: float) -> None:
        self.group = group
        self.sched = sched
        self.handle: Handle | None = None
        self.last_dispatch = -1e9
        self.closed = False
        self._events = events
        self._timers = timers
        self._clock = clock
        self._tick = tick
        self._head: bytes | None = None  # the msgs frame's JSON up to its list, made once

    @property
    def group_id(self) -> str:
        return self.group.group_id

    def encode(self, op: str, key: str, items: list[Any]) -> bytes:
        """``{"op":op,"groupId":..,key:items}`` as JSON bytes, encoded once."""
        return orjson.dumps({"op": op, "groupId": self.group.group_id, key: items})

    # ---------------------------------------------------------------- messages
    def offer(self, msg: Outgoing) -> None:
        """An admitted message joins the room's queues (it may evict another)."""
        mono = self._timers.time()
        evicted = self.sched.offer(msg, msg.priority, mono)
        if evicted:
            now = self._clock()
            for pending in evicted:
                self._drop(pending, now)
        self._schedule(mono)

    def dispatch(self) -> None:
        started = time.perf_counter()
        self.handle = None
        self.last_dispatch = mono = self._timers.time()
        now = self._clock()
        try:
            result = self.sched.tick(mono)
            for pending in result.dropped:
                self._drop(pending, now)
            if result.delivered:
                self._deliver(result.delivered, int(now * 1000))
        finally:  # a failure above must not leave a room with waiting messages unscheduled
            if self.sched.pending and not self.closed:
                self._schedule()
            self._events.ticked(time.perf_counter() - started)

    def _deliver(self, batch: list[tuple[int, Pending]], time_ms: int) -> None:
        # each message is encoded once: the frames join these bytes, and the
        # history keeps them (byte for byte what orjson makes of the whole batch)
        dumps = orjson.dumps
        encoded = [dumps(p.payload.wire(seq, time_ms)) for seq, p in batch]
        head = self._head
        if head is None:
            head = self._head = b'{"op":"msgs","groupId":%s,"msgs":[' % dumps(self.group_id)
        full = frame(head + b",".join(encoded) + b"]}")
        lite: bytes | None = None
        for _s, p in batch:  # a loop, not ``any`` over a generator: the batch is one message
            if p.priority > _NORMAL:  # a lite frame, without Low/Lowest
                keep = [w for (_s, q), w in zip(batch, encoded, strict=True)
                        if q.priority <= _NORMAL]
                lite = frame(head + b",".join(keep) + b"]}") if keep else b""
                break
        self._events.deliver(self, batch, encoded, full, lite, time_ms)
        self.group.last_msg_time = time_ms / 1000

    def _drop(self, pending: Pending, now: float) -> None:
        self._events.settle(self.group.group_id, pending.payload, pending.priority,
                            Dropped(int(now * 1000)))

    def _schedule(self, now: float | None = None) -> None:
        """``now``: the monotonic time, when the caller has just read it."""
        if self.handle is not None:
            return
        timers = self._timers
        due = self.last_dispatch + self._tick
        if due <= (timers.time() if now is None else now):
            self.handle = timers.call_soon(self.dispatch)
        else:
            self.handle = timers.call_at(due, self.dispatch)

    # ---------------------------------------------------------------- lifecycle
    def configure(self, rate: int, burst: int) -> None:
        self.group.rate, self.group.burst = rate, burst
        self.sched.configure(rate, burst, self._timers.time())

    def close(self, code: int) -> None:
        """The room ends (destroyed: 10010; shutdown: 10002): its waiting
        messages fail with ``code`` and nothing is dispatched any more."""
        self.closed = True
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.settle_pending(code)

    def settle_pending(self, code: int, reason: str = "") -> None:
        """Every waiting message fails with ``code`` (accounting, invariant 3)."""
        gid = self.group.group_id
        for pending in self.sched.drain():
            self._events.settle(gid, pending.payload, pending.priority, Failed(code, reason))
