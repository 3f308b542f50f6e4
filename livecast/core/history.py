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
    __slots__ = ("_bytes", "_entries", "last_seq", "max_bytes", "size", "ttl_ms")

    def __init__(self, size: int, max_bytes: int, ttl_ms: int, last_seq: int = 0) -> None:
        if size < 0 or max_bytes < 0 or ttl_ms < 0:
            raise ValueError("size, max_bytes and ttl_ms must be >= 0")
        self.size = size
        self.max_bytes = max_bytes
        self.ttl_ms = ttl_ms
        self.last_seq = last_seq
        self._entries: deque[Entry] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def first_seq(self) -> int:
        """The oldest seq held; ``last_seq + 1`` when empty."""
        return self._entries[0].seq if self._entries else self.last_seq + 1

    def append(self, batch: Iterable[Entry]) -> bool:
        """One tick's delivered messages (ascending seqs); False when the batch
        did not continue the ring, which then holds only from this batch on."""
        contiguous = True
        for entry in batch:
            if entry.seq <= self.last_seq:
                self._cut_from(entry.seq)
            elif entry.seq != self.last_seq + 1 and (self._entries or self.last_seq):
                contiguous = False
                self._clear()
            self._entries.append(entry)
            self._bytes += len(entry.data)
            self.last_seq = entry.seq
        self._trim()
        return contiguous

    def last(self, n: int, now_ms: int) -> list[bytes]:
        """The newest ``n`` messages still held and no older than the TTL, oldest first."""
        if n <= 0:
            return []
        fresh = self._fresh(now_ms)
        start = max(fresh, len(self._entries) - n)
        return [self._entries[i].data for i in range(start, len(self._entries))]

    def since(self, seq: int, now_ms: int) -> Recovery:
        """Every message after ``seq`` if all of them are still held and fresh."""
        if seq == self.last_seq:
            return Recovery(True, [], self.last_seq)
        entries = self._entries
        if seq > self.last_seq or seq < 0 or not entries:
            return Recovery(False, [], self.last_seq)
        fresh = self._fresh(now_ms)
        start = seq + 1 - entries[0].seq  # index of seq + 1
        if start < fresh:
            return Recovery(False, [], self.last_seq)
        return Recovery(True, [entries[i].data for i in range(start, len(entries))],
                        self.last_seq)

    def entries(self) -> list[Entry]:
        return list(self._entries)

    # -- helpers -----------------------------------------------------------

    def _fresh(self, now_ms: int) -> int:
        """Index of the first entry within the TTL (entries are in time order)."""
        cutoff = now_ms - self.ttl_ms
        entries = self._entries
        lo, hi = 0, len(entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if entries[mid].time_ms < cutoff:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _cut_from(self, seq: int) -> None:
        entries = self._entries
        while entries and entries[-1].seq >= seq:
            self._bytes -= len(entries.pop().data)
        if not entries:
            self._bytes = 0

    def _clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _trim(self) -> None:
        entries = self._entries
        while entries and (len(entries) > self.size or self._bytes > self.max_bytes):
            self._bytes -= len(entries.popleft().data)


def frame_payload(data: bytes) -> bytes:
    """The payload of one unmasked server frame (core/wsframe.frame)."""
    n = data[1] & 0x7F
    head = 2 if n < 126 else 4 if n == 126 else 10
    return data[head:]
