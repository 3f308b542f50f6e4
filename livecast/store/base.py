"""The Store protocol: everything a room has that is not a message in flight.

Two real engines implement it: ``sqlite.SqliteStore`` (the embedded default,
one file in the data directory) and ``redis.RedisStore`` (a redis-server or a
Redis Cluster, shared by the nodes of a cluster). docs/design.md, "Durable
state: the store", lists what each table and key holds.

Contract (tests/store/test_contract.py runs it against every engine):
1. Acknowledged means stored: a write returns only once its change is
   committed (SQLite: the transaction committed; Redis: the server answered
   EXEC or the script). Each write is one transaction: readers see all of it
   or none.
2. Failures are values at this edge: an engine error becomes ``StoreError``
   (never a driver exception), is reported to the observer and turns
   ``healthy`` false until an operation succeeds again. ``ping`` never raises.
   A stored room or profile that cannot be decoded (written by a newer
   livecast, or damaged) is a ``StoreError`` naming it, from every read.
3. Times are unix seconds chosen by the caller (the store reads no clock),
   except that Redis expires ``seen`` keys by its own clock; pass wall time.
4. A mute or ban ending at ``FOREVER`` never expires; any other ends at
   ``until`` (``until <= now`` is over).
5. Only a create makes a room: ``put_group(create=True)`` stores a room whose
   id no room stored has (so an id is unique across the processes sharing the
   store); ``put_group`` replaces the whole room (mutes and bans included) and
   ``put_settings`` all but its mutes and bans, and only while it is stored.
   A refused write writes nothing and answers False: a late write cannot bring
   a deleted room back.
6. A key recorded by ``seen`` lives the ``window`` it was recorded with,
   whatever windows later calls pass for other keys.
"""

from __future__ import annotations

import reprlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Protocol, TypeVar, cast, get_args, get_origin, get_type_hints

import orjson
from prometheus_client import Counter, Histogram

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord

__all__ = [
    "DEDUP_WINDOW",
    "GroupRecord",
    "Instrument",
    "LocalLocks",
    "Observer",
    "Profile",
    "Snapshot",
    "Store",
    "StoreError",
    "decode_profile",
    "decode_record",
    "expired",
    "loads",
    "prometheus_observer",
    "unreadable",
]

DEDUP_WINDOW = 300.0  # seconds: send_group_msg's Random is unique "within 5 minutes"

#: ``observe(operation, seconds, ok)``: called once per store operation.
Observer = Callable[[str, float, bool], None]

T = TypeVar("T")
Profile = Mapping[str, str | int]  # tag -> value

_FIELDS = get_type_hints(GroupRecord)  # field -> type: what a decoded room is checked against
_SETTINGS = frozenset(_FIELDS) - {"group_id", "mutes", "bans"}  # what a stored room holds


class StoreError(Exception):
    """The store could not do what was asked; nothing may be acknowledged."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``load_all`` finds: every room, the kick times, the like totals."""

    groups: tuple[GroupRecord, ...] = ()
    kicks: Mapping[str, float] = field(default_factory=dict)  # user -> time of last kick
    likes: Mapping[str, int] = field(default_factory=dict)  # group id -> total


class LocalLocks:
    """``Store.lock`` for a store one process owns (memory, SQLite)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}  # name -> (token, expires, monotonic)

    def lock(self, name: str, ttl: float) -> str | None:
        now = time.monotonic()
        held = self._held.get(name)
        if held is not None and held[1] > now:
            return None
        token = uuid.uuid4().hex
        self._held[name] = (token, now + ttl)
        return token

    def unlock(self, name: str, token: str) -> None:
        held = self._held.get(name)
        if held is not None and held[0] == token:
            del self._held[name]


def expired(until: float, now: float) -> bool:
    """True if a mute or ban ending at ``until`` is over at ``now`` (invariant 4)."""
    return until <= now and until < FOREVER


def unreadable(what: str, detail: object) -> StoreError:
    """The error of a stored ``what`` this livecast cannot decode (invariant 2)."""
    return StoreError(f"{what}: the stored record is unreadable (written by a newer "
                      f"livecast, or damaged): {detail}")


def loads(what: str, text: object) -> Any:
    """JSON stored for ``what``, decoded; StoreError if it is not JSON."""
    try:
        return orjson.loads(text)  # type: ignore[arg-type]  # a column may hold anything
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise unreadable(what, exc) from exc


def decode_record(group_id: str, stored: object, mutes: object, bans: object) -> GroupRecord:
    """The room ``group_id`` from its stored settings (decoded JSON or columns,
    by field name), mutes and bans; StoreError unless each is of its type."""
    what = f"room {group_id!r}"
    if not isinstance(stored, dict):
        raise unreadable(what, f"{type(stored).__name__}, not an object")
    unknown = set(stored) - _SETTINGS
    if unknown:
        raise unreadable(what, f"unknown fields {sorted(unknown)}")
    values = {**stored, "mutes": mutes, "bans": bans}
    for name, value in values.items():
        if not _fits(value, _FIELDS[name]):
            raise unreadable(what, f"{name} = {reprlib.repr(value)}")
    try:
        return GroupRecord(group_id=group_id, **values)
    except TypeError as exc:  # a field without default missing
        raise unreadable(what, exc) from exc


def decode_profile(user: str, text: object) -> dict[str, str | int]:
    """``user``'s stored profile (JSON); StoreError unless it maps tags to values."""
    what = f"the profile of {user!r}"
    found = loads(what, text)
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in found.items()):
        raise unreadable(what, reprlib.repr(found))
    return cast(dict[str, str | int], found)


def _fits(value: object, kind: Any) -> bool:
    """Whether decoded ``value`` is of type ``kind`` (a ``GroupRecord`` field's):
    a JSON number fits a float, a bool fits only a bool."""
    if isinstance(kind, UnionType):
        return any(_fits(value, k) for k in get_args(kind))
    if get_origin(kind) is Mapping:
        _, of = get_args(kind)
        return isinstance(value, dict) and all(
            isinstance(k, str) and _fits(v, of) for k, v in value.items())
    if isinstance(value, bool) or kind is bool:
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


class Store(Protocol):
    @property
    def healthy(self) -> bool:
        """False after a failed operation, until one succeeds again."""

    async def ping(self) -> bool:
        """Check the engine answers; sets ``healthy``; never raises."""

    async def load_all(self, now: float | None = None) -> Snapshot:
        """Every stored room with its mutes and bans, kick times, like totals.

        With ``now``, mutes and bans over at ``now`` are left out and deleted.
        """

    async def load_group(self, group_id: str) -> GroupRecord | None:
        """One room, or None if it is not stored."""

    async def put_group(self, record: GroupRecord, create: bool = False) -> bool:
        """Replace the whole stored room (mutes and bans too); False, and nothing
        written, if it is not stored. With ``create``: store a new room; False,
        and nothing written, if a room with its id is stored (invariant 5)."""

    async def put_settings(self, record: GroupRecord) -> bool:
        """Replace the stored room but its mutes and bans, which stay as stored;
        False, and nothing written, if it is not stored (invariant 5)."""

    async def delete_group(self, group_id: str) -> bool:
        """Remove every row or key of the room (likes and history too); True if
        it was stored."""

    async def set_mute(self, group_id: str, user: str, until: float) -> None:
        """``user`` may not send in the room until ``until`` (FOREVER: never)."""

    async def clear_mute(self, group_id: str, user: str) -> None: ...

    async def set_ban(self, group_id: str, user: str, until: float) -> None:
        """``user`` may not join the room until ``until`` (FOREVER: never)."""

    async def clear_ban(self, group_id: str, user: str) -> None: ...

    async def set_kick(self, user: str, at: float) -> None:
        """Record a kick of ``user`` at ``at``; a later time wins over an earlier one."""

    async def kick_time(self, user: str) -> float | None:
        """The time of ``user``'s last kick (UserSigs minted before it are revoked)."""

    async def kick_times(self) -> dict[str, float]:
        """Every user's last kick time (what ``load_all`` finds in ``kicks``)."""

    async def marker(self) -> str:
        """The store's identity: made by the first call, kept with the data, so
        that a store that lost its data (a Redis restarted without AOF) answers
        another one."""

    async def seen(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        """True if ``key`` is recorded and has not expired at ``now``; else record
        it, to expire ``window`` seconds after ``now``, and answer False. Atomic:
        of two concurrent calls with one key, exactly one answers False."""

    async def recent(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        """True if ``key`` is recorded (by ``seen``) and has not expired at
        ``now`` (``window`` is unused: a key keeps the one it was seen with);
        records nothing."""

    async def unsee(self, key: str) -> None:
        """Forget ``key`` (recorded by ``seen``): the next ``seen`` answers False."""

    async def add_likes(self, group_id: str, n: int) -> int:
        """Add ``n`` likes to the room's total; return the new total."""

    async def likes(self, group_id: str) -> int:
        """The room's like total (0 if none)."""

    async def put_profile(self, user: str, profile: Profile) -> None:
        """Store ``user``'s whole profile (tag -> value: ``Tag_Profile_IM_Nick``,
        ``Tag_Profile_IM_Image``, other ``Tag_Profile_*``), replacing the stored one."""

    async def load_profiles(self, users: Sequence[str]) -> dict[str, dict[str, str | int]]:
        """The stored profiles of ``users``; a user with none is left out."""

    async def all_profiles(self, limit: int) -> dict[str, dict[str, str | int]] | None:
        """Every stored profile if there are at most ``limit`` of them, else None
        (a process then reads them user by user)."""

    async def lock(self, name: str, ttl: float) -> str | None:
        """Take the lock ``name`` for at most ``ttl`` seconds, unless it is
        held: a token to ``unlock`` it with, or None.  Shared by every process
        on the store (Redis: ``SET NX PX``), so that a read-change-write of
        one thing made on two processes runs one at a time."""

    async def unlock(self, name: str, token: str) -> None:
        """Release ``name`` if ``token`` still holds it (not once it expired
        and another took it)."""

    async def close(self) -> None:
        """Release the engine; later operations raise StoreError."""


def prometheus_observer(latency: Histogram, errors: Counter) -> Observer:
    """An observer over the caller's metrics, both labelled by ``op``."""

    def observe(op: str, seconds: float, ok: bool) -> None:
        latency.labels(op).observe(seconds)
        if not ok:
            errors.labels(op).inc()

    return observe


class Instrument:
    """Times every operation, maps engine errors to StoreError, tracks health."""

    __slots__ = ("_errors", "_observe", "closed", "healthy")

    def __init__(self, observe: Observer | None, errors: tuple[type[Exception], ...]) -> None:
        self._observe = observe
        self._errors = errors
        self.healthy = True
        self.closed = False

    async def run(self, op: str, work: Callable[[], Awaitable[T]]) -> T:
        if self.closed:
            raise StoreError("the store is closed")
        start = time.perf_counter()
        try:
            result = await work()
        except self._errors as exc:
            self._done(op, start, False)
            raise StoreError(f"{op}: {type(exc).__name__}: {exc}") from exc
        except StoreError:
            self._done(op, start, False)
            raise
        self._done(op, start, True)
        return result

    def _done(self, op: str, start: float, ok: bool) -> None:
        self.healthy = ok
        if self._observe is not None:
            self._observe(op, time.perf_counter() - start, ok)
