"""The Store protocol: everything a room has that is not a message in flight.

Two real engines implement it: ``sqlite.SqliteStore`` (the embedded default,
one file in the data directory) and ``redis.RedisStore`` (a redis-server or a
Redis Cluster, shared by the nodes of a cluster). docs/design.md, "Durable
state: the store", lists what each table and key holds.

Contract (tests/store/test_contract.py runs it against every engine):
1. Acknowledged means stored: a write returns only once its change is
   committed (SQLite: the transaction committed; Redis: the server answered
   EXEC). Each write is one transaction: readers see all of it or none.
2. Failures are values at this edge: an engine error becomes ``StoreError``
   (never a driver exception), is reported to the observer and turns
   ``healthy`` false until an operation succeeds again. ``ping`` never raises.
3. Times are unix seconds chosen by the caller (the store reads no clock),
   except that Redis expires ``seen`` keys by its own clock; pass wall time.
4. A mute or ban ending at ``FOREVER`` never expires; any other ends at
   ``until`` (``until <= now`` is over).
5. ``put_group`` replaces the whole room (mutes and bans included);
   ``put_settings`` replaces all but the mutes and bans.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from prometheus_client import Counter, Histogram

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord

__all__ = [
    "DEDUP_WINDOW",
    "GroupRecord",
    "Instrument",
    "Observer",
    "Snapshot",
    "Store",
    "StoreError",
    "expired",
    "prometheus_observer",
]

DEDUP_WINDOW = 300.0  # seconds: send_group_msg's Random is unique "within 5 minutes"

#: ``observe(operation, seconds, ok)``: called once per store operation.
Observer = Callable[[str, float, bool], None]

T = TypeVar("T")


class StoreError(Exception):
    """The store could not do what was asked; nothing may be acknowledged."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``load_all`` finds: every room, the kick times, the like totals."""

    groups: tuple[GroupRecord, ...] = ()
    kicks: Mapping[str, float] = field(default_factory=dict)  # user -> time of last kick
    likes: Mapping[str, int] = field(default_factory=dict)  # group id -> total


def expired(until: float, now: float) -> bool:
    """True if a mute or ban ending at ``until`` is over at ``now`` (invariant 4)."""
    return until <= now and until < FOREVER


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

    async def put_group(self, record: GroupRecord) -> None:
        """Store the whole room, replacing what was stored (mutes and bans too)."""

    async def put_settings(self, record: GroupRecord) -> None:
        """Store the room but its mutes and bans, which stay as stored."""

    async def delete_group(self, group_id: str) -> bool:
        """Remove every row or key of the room (likes too); True if it was stored."""

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
        """True if ``key`` was recorded within ``window`` seconds before ``now``;
        else record it at ``now`` and answer False. Atomic: of two concurrent
        calls with one key, exactly one answers False."""

    async def recent(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        """True if ``key`` was recorded (by ``seen``) within ``window`` seconds
        before ``now``; records nothing."""

    async def unsee(self, key: str) -> None:
        """Forget ``key`` (recorded by ``seen``): the next ``seen`` answers False."""

    async def add_likes(self, group_id: str, n: int) -> int:
        """Add ``n`` likes to the room's total; return the new total."""

    async def likes(self, group_id: str) -> int:
        """The room's like total (0 if none)."""

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
