"""Recent history of this process's rooms, and where a cluster keeps it
(docs/design.md, "History and recovery").

- ``HistoryBook``: one ``HistoryRing`` (core/history.py) per room, the cache
  joins and recoveries are answered from, synchronously.  On one process the
  room's owner appends each tick's batch (``record``); the book is the
  history.  In a cluster every process keeps the rings of the rooms it is
  subscribed to, fed by the batches it receives (``on_batch``) and seeded
  once from the ``HistoryStore`` (``ready``).
- ``HistoryStore``: where a cluster's history lives, ``RedisHistoryStore``
  (a stream per room) or ``MemoryHistoryStore`` (processes sharing one
  event loop, as the in-memory broker's).

Invariants:
1. Once per tick batch: the owner appends a batch once (``record``, or the
   store's stream), never per member; a process decodes a received batch
   once, whatever its number of members.
2. Single flight: concurrent ``ready`` calls for one room share one store
   read; a ring, once seeded, answers every later join without a read while
   this process stays subscribed to the room.
3. No gap, no duplicate: a ring exists only while the book holds its own
   subscription to the room (taken before the seed's read, released by
   ``forget``), and batches received while the read is on its way are
   merged after it.  A read never returns a batch not yet published, whose
   messages a join's ``lastSeq`` would then count before they came live: on
   Redis the publish appends the batch to the stream in the same script
   (``riding``; backplane/broker.py, invariant 7), so a batch is in the
   stream exactly when it was published; a batch appended apart
   (``append``, before its publish) is left out of a Redis read until the
   room's published seq, read in the same script, covers it; the memory
   store's append and the memory broker's publish run with no await between
   them.  A batch that does not continue the ring (a lost publication) drops
   the ring: the next join seeds it again.
4. Fenced: a stream append is refused unless the writer holds the room's
   latest fencing token (a deposed owner writes nothing); riding on the
   publish, it is refused with the publish (a batch that does not follow
   the last one published is not kept either).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from livecast.backplane.broker import StreamAppend
from livecast.core.history import Entry, HistoryRing, Recovery, frame_payload
from livecast.settings import Settings

log = logging.getLogger("livecast.history")

__all__ = ["HistoryBook", "HistoryStore", "MemoryHistoryStore", "RedisHistoryStore"]

# (the room's epoch, its batches' payloads oldest first, the room's newest published seq)
Stored = tuple[int, list[bytes], int]


class HistoryStore(Protocol):
    # its streams are the broker's keys: the publish appends to them in the
    # same step (backplane/broker.py, invariant 7), and ``append`` is not used
    in_broker: bool

    async def append(self, group_id: str, token: int, payload: bytes) -> bool:
        """One tick's batch (the ``msgs`` frame's JSON), under fencing token ``token``."""

    async def read(self, group_id: str, epoch: int) -> Stored:
        """The room's epoch (``epoch`` if it had none), its batches held, and
        its newest seq published (0: none), held or not."""

    async def close(self) -> None: ...


def decode_batch(payload: bytes) -> list[Entry]:
    """The messages of one ``msgs`` frame's JSON, each re-encoded alone."""
    try:
        msgs = orjson.loads(payload)["msgs"]
        return [Entry(int(m["seq"]), int(m["time"]), orjson.dumps(m)) for m in msgs]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("skipped a malformed history batch")
        return []


class HistoryBook:
    """The rings of this process's rooms (module docstring)."""

    def __init__(self, settings: Settings, clock: Callable[[], float], epoch: int,
                 store: HistoryStore | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.epoch = epoch
        self.store = store
        self.rings: dict[str, HistoryRing] = {}
        self.epochs: dict[str, int] = {}  # cluster: each room's stream epoch
        self.reads = 0  # store reads made (single flight: one per room and seed)
        # cluster: held around a seed so that nothing is missed (invariant 3)
        self.subscribe: Callable[[str], Awaitable[None]] | None = None
        self.unsubscribe: Callable[[str], Awaitable[None]] | None = None
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._arrived: dict[str, list[bytes]] = {}
        self._followed: set[str] = set()  # rooms the book holds a subscription of
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.history_size > 0

    def _ring(self, last_seq: int = 0) -> HistoryRing:
        s = self.settings
        return HistoryRing(s.history_size, s.history_bytes, int(s.history_ttl * 1000), last_seq)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---------------------------------------------------------------- writes
    def record(self, group_id: str, seqs: list[int], encoded: list[bytes], time_ms: int) -> None:
        """One process: a tick's delivered messages (their seqs, and each one's
        JSON as the batch's frame carries it), appended by the room's owner."""
        ring = self.rings.get(group_id)
        if ring is None:
            ring = self.rings[group_id] = self._ring()
        ring.extend(seqs, time_ms, encoded)

    def on_batch(self, group_id: str, full: bytes) -> None:
        """Cluster: a batch this process received, for the room's ring."""
        arrived = self._arrived.get(group_id)
        if arrived is not None:  # a seed is on its way: merged after it
            arrived.append(frame_payload(full))
            return
        ring = self.rings.get(group_id)
        if ring is None:
            return
        if not self.enabled:  # a ring of no message: the newest seq alone, no decode
            ring.advance(_last_seq(frame_payload(full)))
            return
        if not ring.append(decode_batch(frame_payload(full))):
            log.info("room %s: a batch was missed; its history is read again", group_id)
            self.forget(group_id)

    def riding(self, group_id: str, full: bytes) -> StreamAppend | None:
        """Cluster, the room's owner: the tick's batch for the room's stream when
        the store's streams are the broker's, to be appended by the publish
        itself (invariant 3); None: ``write`` it before publishing (another
        store), or nothing to write (no store, history off)."""
        store, s = self.store, self.settings
        if store is None or not store.in_broker or not self.enabled:
            return None
        return StreamAppend(frame_payload(full), s.history_size, _ttl_ms(s),
                            _epoch_candidate())

    async def write(self, group_id: str, token: int, full: bytes) -> None:
        """Cluster, the room's owner: a tick's batch to the store, before it is
        published (invariant 3).  A failed write is logged: the stream then
        has a hole, which a ring seeded from it detects (recovered false)."""
        if self.store is None or not self.enabled:
            return
        try:
            await self.store.append(group_id, token, frame_payload(full))
        except Exception as exc:
            log.warning("history of %s not written: %s", group_id, exc)

    def forget(self, group_id: str) -> None:
        """The room is no longer followed here (or is gone): its ring goes,
        and with it the book's subscription."""
        self.rings.pop(group_id, None)
        self.epochs.pop(group_id, None)
        if group_id in self._followed and self.unsubscribe is not None:
            self._followed.discard(group_id)
            task = asyncio.get_running_loop().create_task(self._release(group_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _release(self, group_id: str) -> None:
        assert self.unsubscribe is not None
        try:
            await self.unsubscribe(group_id)
        except Exception as exc:
            log.warning("unsubscribe %s: %s", group_id, exc)

    # ---------------------------------------------------------------- reads
    def epoch_of(self, group_id: str) -> int:
        return self.epochs.get(group_id, self.epoch)

    def needs_read(self, group_id: str) -> bool:
        """Cluster: whether a join must wait for ``ready`` to answer (its
        history, its ``lastSeq``)."""
        return self.store is not None and group_id not in self.rings

    def reset(self) -> None:
        """Cluster: batches may have been missed (a subscription gap): every
        ring is read again by the next join that needs it."""
        for group_id in list(self.rings):
            self.forget(group_id)

    async def ready(self, group_id: str) -> None:
        """Cluster: the room's ring, seeded from the store (single flight)."""
        if not self.needs_read(group_id):
            return
        flight = self._seeding.get(group_id)
        if flight is None:
            flight = asyncio.get_running_loop().create_future()
            self._seeding[group_id] = flight
            task = asyncio.create_task(self._seed(group_id, flight))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(flight)

    async def _seed(self, group_id: str, flight: asyncio.Future[None]) -> None:
        assert self.store is not None
        try:
            if self.subscribe is not None and group_id not in self._followed:
                await self.subscribe(group_id)
                self._followed.add(group_id)
            self._arrived[group_id] = []
            self.reads += 1
            epoch, batches, published = await self.store.read(group_id, self.epoch)
            ring = self._ring()
            for payload in batches:
                ring.append(decode_batch(payload))
            ring.advance(published)  # what was published but is not held (expired, trimmed)
            for payload in self._arrived.pop(group_id, []):
                ring.append(decode_batch(payload))
            self.rings[group_id] = ring
            self.epochs[group_id] = epoch
        except Exception as exc:  # the join is answered without history: recovered false
            log.warning("history of %s: %s", group_id, exc)
        finally:
            self._arrived.pop(group_id, None)
            del self._seeding[group_id]
            flight.set_result(None)

    def last_seq(self, group_id: str) -> int:
        ring = self.rings.get(group_id)
        return 0 if ring is None else ring.last_seq

    def last_time_ms(self, group_id: str) -> int:
        ring = self.rings.get(group_id)
        return 0 if ring is None else ring.last_time_ms

    def last(self, group_id: str, n: int) -> list[bytes]:
        ring = self.rings.get(group_id)
        return [] if ring is None else ring.last(n, self.now_ms())

    def since(self, group_id: str, seq: int, epoch: int | None, last_seq: int) -> Recovery:
        """A recovery after ``seq``; ``last_seq``: the room's newest seq."""
        ring = self.rings.get(group_id)
        if epoch is not None and epoch != self.epoch_of(group_id):
            return Recovery(False, [], last_seq)
        if ring is None:  # one process: nothing delivered yet, or history off; a
            # cluster: the ring could not be read.  Nothing held: recovered only
            # when nothing was missed
            return Recovery(self.store is None and seq == last_seq, [], last_seq)
        return ring.since(seq, self.now_ms())


# -------------------------------------------------------------------- stores
class MemoryHistoryStore:
    """The store of processes sharing one event loop (tests, the memory broker)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_broker = False
        self.rooms: dict[str, tuple[int, deque[bytes]]] = {}
        self.fences: dict[str, int] = {}
        self.published: dict[str, int] = {}  # each room's newest seq appended

    async def append(self, group_id: str, token: int, payload: bytes) -> bool:
        if token < self.fences.get(group_id, 0):
            return False
        self.fences[group_id] = token
        _epoch, batches = self.rooms.setdefault(group_id, (_epoch_candidate(),
                                                           deque(maxlen=self.size)))
        batches.append(payload)
        self.published[group_id] = max(self.published.get(group_id, 0), _last_seq(payload))
        return True

    async def read(self, group_id: str, epoch: int) -> Stored:
        held, batches = self.rooms.setdefault(group_id, (epoch, deque(maxlen=self.size)))
        return held, list(batches), self.published.get(group_id, 0)

    async def close(self) -> None:
        return None


# KEYS fence, stream, epoch; ARGV token, payload, maxlen, ttl ms, epoch if none yet
_APPEND = """
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[3], ARGV[5], 'NX')
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'p', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
# KEYS stream, epoch, the room's published seq (the broker's); ARGV epoch if none yet
_READ = """
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return {redis.call('GET', KEYS[2]), redis.call('XRANGE', KEYS[1], '-', '+'),
        redis.call('GET', KEYS[3])}
"""


class RedisHistoryStore:
    """A stream per room, ``lc:{g:<gid>}:history`` (one entry per tick batch,
    trimmed to ``history_size`` entries, expiring ``history_ttl`` after the
    last), and its epoch ``lc:{g:<gid>}:hepoch``, beside the room's fence."""

    def __init__(self, url: str, settings: Settings, prefix: str = "lc") -> None:
        from livecast.store.redis import connect

        self._client = connect(url, decode_responses=False, socket_timeout=2.0,
                               socket_connect_timeout=2.0)
        self.prefix = prefix
        self.in_broker = True  # the broker's publish appends (RedisBroker, same prefix)
        self.maxlen = settings.history_size
        self.ttl_ms = _ttl_ms(settings)
        self._append = self._client.register_script(_APPEND)
        self._read = self._client.register_script(_READ)

    def _key(self, group_id: str, part: str) -> str:
        return f"{self.prefix}:{{g:{group_id}}}:{part}"

    async def append(self, group_id: str, token: int, payload: bytes) -> bool:
        keys = [self._key(group_id, "fence"), self._key(group_id, "history"),
                self._key(group_id, "hepoch")]
        args: list[bytes | int] = [token, payload, self.maxlen, self.ttl_ms, _epoch_candidate()]
        return bool(await self._append(keys=keys, args=args))

    async def read(self, group_id: str, epoch: int) -> Stored:
        """The stream's batches that were published (invariant 3): a batch is
        written before it is published, so the last ones may not be yet; they
        are left out, and come to the reader live."""
        keys = [self._key(group_id, "history"), self._key(group_id, "hepoch"),
                self._key(group_id, "seq")]
        held, entries, published = await self._read(keys=keys, args=[epoch])
        batches = [dict(zip(fields[::2], fields[1::2], strict=True))[b"p"]
                   for _id, fields in entries]
        last = int(published or 0)
        while batches and _last_seq(batches[-1]) > last:
            batches.pop()
        return int(held), batches, last

    async def close(self) -> None:
        await self._client.aclose()


def _last_seq(payload: bytes) -> int:
    """The last seq of one batch (a ``msgs`` frame's JSON); 0 if unreadable.
    Its messages are not encoded again (``decode_batch`` does that)."""
    try:
        msgs = orjson.loads(payload)["msgs"]
        return int(msgs[-1]["seq"]) if msgs else 0
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return 0


def _ttl_ms(settings: Settings) -> int:
    """A room's stream expires this long after its last batch."""
    return max(1, int(settings.history_ttl * 1000))


def _epoch_candidate() -> int:
    """A new stream's epoch when its first batch is written: wall time in ms."""
    return int(time.time() * 1000)
