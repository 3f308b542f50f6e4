"""The room scheduler: one token bucket and four FIFO priority queues per room.

Implements docs/design.md, "The room scheduler".  Invariants kept here:

1. Rate: a room delivers at most ``burst + rate * T`` messages over any
   interval T: each delivery takes one whole token of the room's
   ``TokenBucket`` (bucket.py), which starts full and refills at ``rate``.
2. Priority: a tick delivers highest priority first and FIFO within a
   priority, so nothing is delivered while an older message of higher
   priority is still pending after that tick.
3. Drop order: a message waits at most ``max_wait[priority]`` and is dropped
   by the first tick after that.  A full room makes room for an offer by
   evicting the newest message of the lowest-priority queue strictly below
   the offer; if there is none, the offer itself is dropped.  So drops go
   Lowest, Low, Normal first; High only when High alone fills the room.
4. Accounting: every offered message ends exactly once, as a ``(seq,
   message)`` in a tick's ``delivered`` (seqs contiguous from ``next_seq``) or
   in exactly one drop list: an ``offer``'s return value, a tick's
   ``dropped`` or ``drain()``.  ``delivered_total`` and ``dropped_by_priority`` count them.
5. Bounded memory: ``pending <= capacity = max(burst, ceil(rate *
   max(max_wait)))`` at all times, whatever the offered load.

Pure: no clock reads.  ``now`` only moves forward: an earlier ``now`` is
treated as the latest one seen.  ``tick`` costs O(delivered + expired).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from livecast.core.bucket import TokenBucket

__all__ = [
    "DEFAULT_MAX_WAIT",
    "PRIORITY_NAMES",
    "Pending",
    "Priority",
    "RoomScheduler",
    "TickResult",
    "parse_priority",
]


class Priority(IntEnum):
    """Message priority; a lower value is delivered first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2
    LOWEST = 3


#: Wire names (``MsgPriority`` / ``priority``), index = ``Priority`` value.
PRIORITY_NAMES: tuple[str, ...] = ("High", "Normal", "Low", "Lowest")
_BY_NAME: dict[str, Priority] = {name: Priority(i) for i, name in enumerate(PRIORITY_NAMES)}
_PRIORITIES: tuple[Priority, ...] = tuple(Priority)  # iterating the enum itself is slower
_INDEXES = range(len(_PRIORITIES))

#: Longest wait in seconds per priority (High, Normal, Low, Lowest), docs/design.md invariant 3.
DEFAULT_MAX_WAIT: tuple[float, float, float, float] = (5.0, 2.0, 1.0, 1.0)


def parse_priority(name: object) -> Priority | None:
    """The priority of an exact, case-sensitive wire name; None for anything else."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


@dataclass(slots=True)
class Pending:
    """One admitted message waiting in a room queue."""

    priority: Priority
    enqueued: float  # `now` when offered
    payload: Any  # opaque to the scheduler


@dataclass(slots=True)
class TickResult:
    """What one tick decided."""

    delivered: list[tuple[int, Pending]]  # (seq, message), seq contiguous and ascending
    dropped: list[Pending]  # expired in this tick, or trimmed by an earlier configure()


def _check_room(rate: int, burst: int) -> None:
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst!r}")


def _check_max_wait(max_wait: Sequence[float]) -> tuple[float, ...]:
    waits = tuple(float(w) for w in max_wait)
    if len(waits) != len(Priority):
        raise ValueError(f"max_wait needs {len(Priority)} values, got {len(waits)}")
    if not all(math.isfinite(w) and w >= 0 for w in waits):
        raise ValueError(f"max_wait values must be finite and >= 0, got {waits!r}")
    return waits


def _capacity(rate: int, burst: int, max_wait: tuple[float, ...]) -> int:
    return max(burst, math.ceil(rate * max(max_wait)))


class RoomScheduler:
    """Decides, for one room, which admitted messages are delivered or dropped, and when."""

    __slots__ = (
        "_bucket",
        "_burst",
        "_capacity",
        "_clock",
        "_delivered",
        "_delivered_total",
        "_dropped",
        "_max_wait",
        "_next_seq",
        "_pending",
        "_queues",
        "_rate",
        "_trimmed",
    )

    def __init__(
        self,
        rate: int,
        burst: int,
        now: float,
        max_wait: Sequence[float] = DEFAULT_MAX_WAIT,
        next_seq: int = 1,
        tokens: float | None = None,
    ) -> None:
        """``tokens``: what the bucket starts with (default: full), so a room
        taken over keeps the rate for the room as a whole, across owners."""
        _check_room(rate, burst)
        if next_seq < 0:
            raise ValueError(f"next_seq must be >= 0, got {next_seq!r}")
        self._max_wait = _check_max_wait(max_wait)
        self._bucket = TokenBucket(rate, burst, now, tokens)
        self._rate, self._burst = rate, burst
        self._capacity = _capacity(rate, burst, self._max_wait)
        self._queues: tuple[deque[Pending], ...] = tuple(deque() for _ in Priority)
        self._pending = 0
        self._clock = now
        self._next_seq = next_seq
        self._trimmed: list[Pending] = []
        self._delivered_total = 0
        self._delivered = [0] * len(PRIORITY_NAMES)
        self._dropped = [0] * len(Priority)

    # -- read-only state ---------------------------------------------------

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def max_wait(self) -> tuple[float, ...]:
        return self._max_wait

    @property
    def capacity(self) -> int:
        """Most messages the room holds pending (docs/design.md invariant 5)."""
        return self._capacity

    @property
    def pending(self) -> int:
        return self._pending

    def pending_of(self, p: Priority) -> int:
        return len(self._queues[p])

    @property
    def next_seq(self) -> int:
        """The seq the next delivered message gets."""
        return self._next_seq

    @property
    def tokens(self) -> float:
        """Tokens in the room's bucket as of the last tick or configure."""
        return self._bucket.tokens

    def tokens_at(self, now: float) -> float:
        """The bucket's tokens at ``now`` (refilled up to it)."""
        self._bucket.refill(now)
        return self._bucket.tokens

    @property
    def delivered_total(self) -> int:
        return self._delivered_total

    @property
    def delivered_by_priority(self) -> tuple[int, ...]:
        """Deliveries so far per priority, index = Priority."""
        return tuple(self._delivered)

    @property
    def dropped_by_priority(self) -> tuple[int, ...]:
        """Drops so far per priority (offer, expiry and trim alike), index = Priority."""
        return tuple(self._dropped)

    # -- decisions ---------------------------------------------------------

    def configure(self, rate: int, burst: int, now: float) -> None:
        """Change the room's rate and burst at runtime, keeping queues, seq and tokens.

        If the new capacity is below ``pending``, the excess is evicted lowest
        priority first, newest first, and reported in the next tick's ``dropped``.
        """
        _check_room(rate, burst)
        self._bucket.configure(rate, burst, self._advance(now))
        self._rate, self._burst = rate, burst
        self._capacity = _capacity(rate, burst, self._max_wait)
        while self._pending > self._capacity:
            victim = self._evict_tail(below=-1)
            if victim is None:  # unreachable: pending > capacity >= 1
                break
            self._trimmed.append(victim)

    def offer(self, payload: Any, priority: Priority, now: float) -> list[Pending]:
        """Admit a message; return what this offer dropped (maybe the message itself)."""
        if type(priority) is not Priority:
            priority = Priority(priority)
        msg = Pending(priority, self._advance(now), payload)
        if self._pending >= self._capacity:
            victim = self._evict_tail(below=msg.priority)
            if victim is None:
                self._dropped[msg.priority] += 1
                return [msg]
            self._push(msg)
            return [victim]
        self._push(msg)
        return []

    def tick(self, now: float) -> TickResult:
        """Expire messages past their max wait, then deliver one per whole token."""
        now = self._advance(now)
        dropped, self._trimmed = self._trimmed, []
        queues, waits = self._queues, self._max_wait
        for p in _INDEXES:  # plain ints: indexing with the enum, or zip, costs more
            queue = queues[p]
            if queue and now - queue[0].enqueued > waits[p]:  # the oldest is past its wait
                self._expire(_PRIORITIES[p], now, dropped)
        if self._rate == 0:  # a paused room delivers nothing
            return TickResult([], dropped)
        count = self._bucket.take_whole(now, self._pending)
        return TickResult(self._deliver(count), dropped)

    def drain(self) -> list[Pending]:
        """Drop and return every waiting message, e.g. when the room is destroyed.

        Includes messages trimmed by ``configure`` and not yet reported; the
        room stays usable (seq and tokens are kept).
        """
        dropped, self._trimmed = self._trimmed, []
        for p in Priority:
            queue = self._queues[p]
            self._dropped[p] += len(queue)
            dropped.extend(queue)
            queue.clear()
        self._pending = 0
        return dropped

    # -- helpers -----------------------------------------------------------

    def _advance(self, now: float) -> float:
        if now > self._clock:
            self._clock = now
        return self._clock

    def _push(self, msg: Pending) -> None:
        self._queues[msg.priority].append(msg)
        self._pending += 1

    def _evict_tail(self, below: int) -> Pending | None:
        """Evict the newest message of the lowest non-empty queue with priority > ``below``."""
        for p in range(len(Priority) - 1, below, -1):
            queue = self._queues[p]
            if queue:
                self._pending -= 1
                self._dropped[p] += 1
                return queue.pop()
        return None

    def _expire(self, p: Priority, now: float, out: list[Pending]) -> None:
        queue, limit = self._queues[p], self._max_wait[p]
        while queue and now - queue[0].enqueued > limit:
            out.append(queue.popleft())
            self._pending -= 1
            self._dropped[p] += 1

    def _deliver(self, count: int) -> list[tuple[int, Pending]]:
        out: list[tuple[int, Pending]] = []
        seq = self._next_seq
        delivered = self._delivered
        for p, queue in enumerate(self._queues):
            while count and queue:
                out.append((seq, queue.popleft()))
                seq += 1
                count -= 1
                delivered[p] += 1
        self._next_seq = seq
        self._pending -= len(out)
        self._delivered_total += len(out)
        return out
