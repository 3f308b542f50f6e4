"""A room's recent history: the ring of delivered messages that joins and
recoveries are answered from (docs/design.md, "History and recovery").

Invariants:
1. Order: entries are held in ascending seq order, each message once, exactly
   as members saw it (its encoded wire form, ``data``).
2. Contiguity: the ring holds every message from ``first_seq`` to
   ``last_seq`` (none when empty).  A batch that does not continue
   ``last_seq`` restarts the ring at that batch (``append`` returns False),
   and a batch that repeats seqs already held replaces them (a newer
   publication of a seq wins).
3. Bounds: at most ``size`` messages and ``max_bytes`` bytes of ``data``;
   a message older than ``ttl_ms`` is never answered.  Trimming removes the
   oldest first.
4. ``last_seq`` is the newest seq seen, even when its message was trimmed,
   so a recovery can answer the position it could not fill.

Pure: no clock reads; ``now_ms`` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Entry", "HistoryRing", "Recovery", "frame_payload"]


@dataclass(slots=True)
class Entry:
    seq: int
    time_ms: int
    data: bytes  # the message's JSON, as members saw it


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a rejoin with ``sinceSeq`` gets: every message after it (when
    ``recovered``), and the newest seq either way."""

    recovered: bool
    msgs: list[bytes]
    last_seq: int


class HistoryRing:
    """Held as three parallel deques (seqs, times, bytes) rather than one
    object per message: ints and bytes are not tracked by the garbage
    collector, so a full ring adds nothing to the collector's walks, and an
    entry costs three deque slots."""

    __slots__ = ("_bytes", "_data", "_seqs", "_times", "last_seq", "max_bytes", "size", "ttl_ms")

    def __init__(self, size: int, max_bytes: int, ttl_ms: int, last_seq: int = 0) -> None:
        if size < 0 or max_bytes < 0 or ttl_ms < 0:
            raise ValueError("size, max_bytes and ttl_ms must be >= 0")
        self.size = size
        self.max_bytes = max_bytes
        self.ttl_ms = ttl_ms
        self.last_seq = last_seq
        self._seqs: deque[int] = deque()
        self._times: deque[int] = deque()
        self._data: deque[bytes] = deque()
        self._bytes = 0

    @property
    def last_time_ms(self) -> int:
        """When the newest message held was delivered (0: none held)."""
        return self._times[-1] if self._times else 0

    def __len__(self) -> int:
        return len(self._seqs)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def first_seq(self) -> int:
        """The oldest seq held; ``last_seq + 1`` when empty."""
        return self._seqs[0] if self._seqs else self.last_seq + 1

    def append(self, batch: Iterable[Entry]) -> bool:
        """One tick's delivered messages (ascending seqs); False when the batch
        did not continue the ring, which then holds only from this batch on."""
        contiguous = True
        for entry in batch:
            contiguous = self._push(entry.seq, entry.time_ms, entry.data) and contiguous
        self._trim()
        return contiguous

    def extend(self, seqs: Iterable[int], time_ms: int, data: Iterable[bytes]) -> bool:
        """``append`` for a batch given as its seqs and each message's bytes,
        all delivered at ``time_ms``: no ``Entry`` made per message."""
        contiguous = True
        for seq, one in zip(seqs, data, strict=True):
            contiguous = self._push(seq, time_ms, one) and contiguous
        self._trim()
        return contiguous

    def advance(self, last_seq: int) -> None:
        """The room's newest seq is ``last_seq`` though the messages up to it
        were not all given to this ring (a history that expired, a stream
        with a hole, history off): what it holds no longer reaches the newest
        end, so it is dropped (invariant 2), and the position is kept
        (invariant 4).  Nothing changes when ``last_seq`` is not newer."""
        if last_seq > self.last_seq:
            self._clear()
            self.last_seq = last_seq

    def last(self, n: int, now_ms: int) -> list[bytes]:
        """The newest ``n`` messages still held and no older than the TTL, oldest first."""
        if n <= 0:
            return []
        data = self._data
        start = max(self._fresh(now_ms), len(data) - n)
        return [data[i] for i in range(start, len(data))]

    def since(self, seq: int, now_ms: int) -> Recovery:
        """Every message after ``seq`` if all of them are still held and fresh."""
        if seq == self.last_seq:
            return Recovery(True, [], self.last_seq)
        seqs, data = self._seqs, self._data
        if seq > self.last_seq or seq < 0 or not seqs:
            return Recovery(False, [], self.last_seq)
        start = seq + 1 - seqs[0]  # index of seq + 1
        if start < self._fresh(now_ms):
            return Recovery(False, [], self.last_seq)
        return Recovery(True, [data[i] for i in range(start, len(data))], self.last_seq)

    def entries(self) -> list[Entry]:
        return [Entry(*e) for e in zip(self._seqs, self._times, self._data, strict=True)]

    # -- helpers -----------------------------------------------------------

    def _push(self, seq: int, time_ms: int, data: bytes) -> bool:
        """One message at the newest end; False when it broke contiguity."""
        contiguous = True
        if seq <= self.last_seq:
            self._cut_from(seq)
        elif seq != self.last_seq + 1 and (self._seqs or self.last_seq):
            contiguous = False
            self._clear()
        self._seqs.append(seq)
        self._times.append(time_ms)
        self._data.append(data)
        self._bytes += len(data)
        self.last_seq = seq
        return contiguous

    def _fresh(self, now_ms: int) -> int:
        """Index of the first entry within the TTL (entries are in time order)."""
        cutoff = now_ms - self.ttl_ms
        times = self._times
        lo, hi = 0, len(times)
        while lo < hi:
            mid = (lo + hi) // 2
            if times[mid] < cutoff:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _cut_from(self, seq: int) -> None:
        seqs = self._seqs
        while seqs and seqs[-1] >= seq:
            seqs.pop()
            self._times.pop()
            self._bytes -= len(self._data.pop())
        if not seqs:
            self._bytes = 0

    def _clear(self) -> None:
        self._seqs.clear()
        self._times.clear()
        self._data.clear()
        self._bytes = 0

    def _trim(self) -> None:
        seqs = self._seqs
        while seqs and (len(seqs) > self.size or self._bytes > self.max_bytes):
            seqs.popleft()
            self._times.popleft()
            self._bytes -= len(self._data.popleft())


def frame_payload(data: bytes) -> bytes:
    """The payload of one unmasked server frame (core/wsframe.frame)."""
    n = data[1] & 0x7F
    head = 2 if n < 126 else 4 if n == 126 else 10
    return data[head:]
