"""Likes: which before-send callbacks are likes, and per-room totals to write back.

Implements the like counting of docs/counter.md ("What counts as a like")
for the ``livecast counter`` service (docs/counter.md).

The rule (``LikeRule``, every part configurable): a ``Group.CallbackBeforeSendMsg``
body (3.4) is a like when
- its ``MsgPriority`` (livecast's extra field; Tencent sends none) is one of
  ``priorities`` -- when the field is absent the message passes unless
  ``require_priority``; an empty ``priorities`` accepts any priority;
- its one ``TIMCustomElem`` has a ``Data`` string holding a JSON object whose
  ``type_field`` equals ``type_value``;
- that object's ``count_field`` is absent (1 like) or a JSON integer >= 1,
  capped at ``max_count``.  Any other value (0, negative, float, string,
  bool, an integer beyond 64 bits, which the JSON parser reads as a float)
  makes the message not a like.

``LikeTally`` invariants (pure: ``now`` and the random source are injected):
1. Exact: a room's ``total`` is ``base + counted``, where ``counted`` is the sum
   of every ``add`` and ``base`` the value the room had when first read.  A
   write is of that total, never of a delta, so repeating a write is harmless.
2. Schedule: a room is scheduled when it becomes dirty while idle -- its first
   like after a completed write (or ever), or the end of a write (success or
   failure) that leaves likes unwritten -- at that moment plus
   ``min_s + (max_s - min_s) * rand()``, so within [min_s, max_s] of it.
3. Clean rooms (every like written) are never scheduled or taken.
4. A taken room is in flight until ``written`` or ``failed``; it is not taken
   again meanwhile, so one room has at most one write in flight.

Idempotency (docs/counter.md, "Never lost, never counted twice"): a before-send
body's ``like_key`` -- livecast's ``MsgKey``, else its ``GroupId``,
``From_Account``, ``Random`` and ``EventTime`` -- is the same when livecast
sends the same callback again (a retry or a replay after an outage), so a
counter counts each key once: ``RecentKeys`` in memory (the last ``capacity``
keys), ``SET NX`` in Redis.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from livecast.core.group_ids import is_valid_group_id

DEFAULT_PRIORITIES: frozenset[str] = frozenset({"Low", "Lowest"})


@dataclass(frozen=True, slots=True)
class LikeRule:
    """What makes a before-send message a like (module docstring)."""

    type_field: str = "type"
    type_value: str = "like"
    count_field: str = "count"
    max_count: int = 1000
    priorities: frozenset[str] = DEFAULT_PRIORITIES
    require_priority: bool = False

    def __post_init__(self) -> None:
        if self.max_count < 1:
            raise ValueError("max_count must be >= 1")


@dataclass(frozen=True, slots=True)
class Like:
    group_id: str
    count: int


def _priority_ok(body: Mapping[str, Any], rule: LikeRule) -> bool:
    if "MsgPriority" not in body:
        return not rule.require_priority
    return _priority_in(body["MsgPriority"], rule)


def _priority_in(priority: object, rule: LikeRule) -> bool:
    return isinstance(priority, str) and (not rule.priorities or priority in rule.priorities)


def _custom_data(msg_body: object) -> str | None:
    """The ``Data`` of the message's only TIMCustomElem, or None."""
    if not isinstance(msg_body, list):
        return None
    customs = [e for e in msg_body if isinstance(e, dict) and e.get("MsgType") == "TIMCustomElem"]
    if len(customs) != 1:
        return None
    content = customs[0].get("MsgContent")
    data = content.get("Data") if isinstance(content, dict) else None
    return data if isinstance(data, str) else None


def _count(payload: Mapping[str, Any], rule: LikeRule) -> int:
    """Likes in a like payload: 1 by default, capped; 0 for an invalid count."""
    if rule.count_field not in payload:
        return 1
    count = payload[rule.count_field]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return 0
    return min(count, rule.max_count)


def recognise(body: object, rule: LikeRule) -> Like | None:
    """The like a before-send callback body carries, or None (not a like)."""
    if not isinstance(body, dict) or not _priority_ok(body, rule):
        return None
    return _like(body.get("GroupId"), body.get("MsgBody"), rule)


def recognise_message(group_id: str, priority: str, msg_body: object,
                      rule: LikeRule) -> Like | None:
    """The like a message carries, or None: what ``recognise`` decides for the
    before-send body of this message (livecast always sends ``MsgPriority``).
    The in-process counter of ``livecast serve`` decides with this, the
    ``livecast counter`` service with ``recognise``: the same rule.  A message
    at another priority costs one set lookup."""
    if not _priority_in(priority, rule):
        return None
    return _like(group_id, msg_body, rule)


def _like(group_id: object, msg_body: object, rule: LikeRule) -> Like | None:
    data = _custom_data(msg_body)
    if data is None or not is_valid_group_id(group_id):
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or payload.get(rule.type_field) != rule.type_value:
        return None
    count = _count(payload, rule)
    return Like(str(group_id), count) if count else None


def like_key(body: Mapping[str, Any]) -> str:
    """The callback's idempotency key: equal for a resent copy of one message's
    callback, different for two messages.  livecast's ``MsgKey`` (unique per
    message) when present; else ``GroupId``, ``From_Account``, ``Random`` and
    ``EventTime`` (ms), which a sender tells apart by its ``Random``."""
    key = body.get("MsgKey")
    if isinstance(key, str) and key:
        return key
    parts = (body.get("GroupId"), body.get("From_Account"), body.get("Random"),
             body.get("EventTime"))
    return orjson.dumps(parts, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass(slots=True)
class RecentKeys:
    """The last ``capacity`` idempotency keys seen (oldest forgotten first)."""

    capacity: int = 100_000
    _keys: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def first(self, key: str) -> bool:
        """True the first time ``key`` is offered (while remembered), False after."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True


@dataclass(slots=True)
class _Room:
    counted: int = 0
    base: int | None = None
    written: int | None = None  # last total confirmed written
    due: float | None = None  # scheduled write; None when clean or in flight
    inflight: bool = False
    last_change: float = 0.0

    def dirty(self) -> bool:
        return self.base is None or self.written != self.base + self.counted


@dataclass(slots=True)
class LikeTally:
    """Per-room like totals and their jittered write-back schedule (invariants above)."""

    rand: Callable[[], float]  # uniform in [0, 1)
    min_s: float = 3.0
    max_s: float = 5.0
    _rooms: dict[str, _Room] = field(default_factory=dict)
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if not 0 <= self.min_s <= self.max_s:
            raise ValueError("need 0 <= min_s <= max_s")

    def __len__(self) -> int:
        return len(self._rooms)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._rooms

    def _schedule(self, group_id: str, room: _Room, now: float) -> None:
        room.due = now + self.min_s + (self.max_s - self.min_s) * self.rand()
        heapq.heappush(self._heap, (room.due, next(self._seq), group_id))

    def add(self, group_id: str, likes: int, now: float) -> None:
        """Count ``likes`` (>= 1) for ``group_id``; schedule it if it was clean."""
        if likes < 1:
            raise ValueError("likes must be >= 1")
        room = self._rooms.setdefault(group_id, _Room())
        room.counted += likes
        room.last_change = now
        if room.due is None and not room.inflight:
            self._schedule(group_id, room, now)

    def entry(self, group_id: str) -> object | None:
        """The room's record itself, to tell after an await whether the room
        was forgotten (or forgotten and counted anew) meanwhile."""
        return self._rooms.get(group_id)

    def due(self, group_id: str) -> float | None:
        room = self._rooms.get(group_id)
        return None if room is None else room.due

    def counted(self, group_id: str) -> int:
        room = self._rooms.get(group_id)
        return 0 if room is None else room.counted

    def _take(self, group_id: str, room: _Room) -> str:
        room.due = None
        room.inflight = True
        return group_id

    def take_due(self, now: float) -> list[str]:
        """Rooms whose write is due at ``now``, earliest first; they go in flight."""
        taken: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due, _, group_id = heapq.heappop(self._heap)
            room = self._rooms.get(group_id)
            if room is not None and room.due == due and not room.inflight:
                taken.append(self._take(group_id, room))
        return taken

    def next_due(self) -> float | None:
        """The earliest scheduled write (possibly of a room since taken or forgotten)."""
        return self._heap[0][0] if self._heap else None

    def take_all(self) -> list[str]:
        """Every scheduled room, whatever its due time (shutdown, tests); in flight."""
        return [self._take(gid, r) for gid, r in self._rooms.items() if r.due is not None]

    def needs_base(self, group_id: str) -> bool:
        return self._rooms[group_id].base is None

    def set_base(self, group_id: str, value: int) -> None:
        """The room's value as read from the server, before this process's likes."""
        room = self._rooms[group_id]
        if room.base is None:
            room.base = value

    def total(self, group_id: str) -> int:
        """The value to write: base + every like counted (the base must be set)."""
        room = self._rooms[group_id]
        if room.base is None:
            raise ValueError(f"base of {group_id!r} is not known yet")
        return room.base + room.counted

    def written(self, group_id: str, total: int, now: float) -> None:
        """The write of ``total`` succeeded at ``now``."""
        room = self._rooms.get(group_id)
        if room is None:
            return
        room.inflight = False
        room.written = total
        if room.dirty():
            self._schedule(group_id, room, now)

    def failed(self, group_id: str, now: float) -> None:
        """The write failed at ``now``: retried at the next scheduled flush."""
        room = self._rooms.get(group_id)
        if room is not None:
            room.inflight = False
            self._schedule(group_id, room, now)

    def forget(self, group_id: str) -> None:
        """Drop a room (e.g. the group no longer exists); its heap entry goes stale."""
        self._rooms.pop(group_id, None)

    def forget_idle(self, now: float, idle_s: float) -> list[str]:
        """Drop clean rooms without likes for ``idle_s``; seen again, they are re-read."""
        idle = [gid for gid, r in self._rooms.items()
                if not r.inflight and not r.dirty() and now - r.last_change >= idle_s]
        for gid in idle:
            del self._rooms[gid]
        return idle

    def counts(self) -> dict[str, int]:
        """Every room's ``counted``."""
        return {gid: r.counted for gid, r in self._rooms.items()}

    def restore(self, group_id: str, counted: int, base: int | None, now: float) -> None:
        """A room read back from durable storage: ``counted`` likes over ``base``
        (None: not read yet); dirty, so written again on schedule."""
        if counted >= 1:
            self.add(group_id, counted, now)
        if base is not None and group_id in self._rooms:
            self.set_base(group_id, base)

    def pending(self) -> list[str]:
        """Rooms with likes not yet written (scheduled or in flight)."""
        return [gid for gid, r in self._rooms.items() if r.dirty()]
