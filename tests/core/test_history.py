"""The history ring (livecast/core/history.py): order, contiguity, bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecast.core.history import Entry, HistoryRing, frame_payload
from livecast.core.wsframe import frame

DAY_MS = 86_400_000


def entries(first: int, last: int, time_ms: int = 1000, size: int = 10) -> list[Entry]:
    return [Entry(s, time_ms, (b"%d" % s).ljust(size, b".")) for s in range(first, last + 1)]


def seqs(data: list[bytes], ring: HistoryRing) -> list[int]:
    by_data = {e.data: e.seq for e in ring.entries()}
    return [by_data[d] for d in data]


def ring_of(n: int, size: int = 100, max_bytes: int = 1 << 20) -> HistoryRing:
    ring = HistoryRing(size, max_bytes, DAY_MS)
    ring.append(Entry(s, 1000, b"%d" % s) for s in range(1, n + 1))
    return ring


def test_since_answers_every_later_message_in_order() -> None:
    ring = ring_of(10)
    rec = ring.since(6, 2000)
    assert rec.recovered and rec.last_seq == 10
    assert rec.msgs == [b"7", b"8", b"9", b"10"]


def test_since_the_newest_seq_is_recovered_with_nothing() -> None:
    rec = ring_of(10).since(10, 2000)
    assert rec.recovered and rec.msgs == [] and rec.last_seq == 10


def test_since_older_than_held_is_not_recovered() -> None:
    ring = ring_of(10, size=5)  # holds 6..10
    assert ring.first_seq == 6
    assert ring.since(5, 2000).recovered  # 6.. all held
    rec = ring.since(4, 2000)  # 5 is gone
    assert not rec.recovered and rec.msgs == [] and rec.last_seq == 10


def test_since_a_seq_from_the_future_is_not_recovered() -> None:
    rec = ring_of(3).since(7, 2000)
    assert not rec.recovered and rec.last_seq == 3


def test_bytes_cap_trims_oldest_first() -> None:
    ring = HistoryRing(100, 35, DAY_MS)
    ring.append(entries(1, 5, size=10))
    assert [e.seq for e in ring.entries()] == [3, 4, 5] and ring.size_bytes == 30
    assert ring.last_seq == 5


def test_ttl_hides_old_messages() -> None:
    ring = HistoryRing(100, 1 << 20, 1000)
    ring.append(entries(1, 3, time_ms=1000))
    ring.append(entries(4, 5, time_ms=1500))
    assert len(ring.last(10, 2200)) == 2  # 1..3 are over a second old
    assert not ring.since(2, 2200).recovered
    assert ring.since(3, 2200).recovered


def test_last_is_the_newest_n_oldest_first() -> None:
    ring = ring_of(10)
    assert ring.last(3, 2000) == [b"8", b"9", b"10"]
    assert ring.last(0, 2000) == []
    assert len(ring.last(50, 2000)) == 10


def test_a_batch_that_does_not_continue_restarts_the_ring() -> None:
    ring = ring_of(5)
    assert not ring.append(entries(8, 9))
    assert [e.seq for e in ring.entries()] == [8, 9]
    assert not ring.since(5, 2000).recovered  # 6 and 7 were never seen
    assert ring.since(7, 2000).recovered


def test_a_republished_seq_replaces_the_held_one() -> None:
    ring = ring_of(5)
    assert ring.append([Entry(4, 1000, b"new4"), Entry(5, 1000, b"new5")])
    assert ring.since(3, 2000).msgs == [b"new4", b"new5"]


def test_frame_payload_of_every_length_class() -> None:
    for n in (0, 125, 126, 65535, 65536):
        payload = b"a" * n
        assert frame_payload(frame(payload)) == payload


@given(st.lists(st.integers(1, 5), min_size=1, max_size=40), st.integers(1, 30),
       st.integers(0, 250))
def test_recovery_is_contiguous_and_bounded(batches: list[int], size: int, since: int) -> None:
    ring = HistoryRing(size, 20 * size, DAY_MS)
    seq = 0
    for n in batches:
        assert ring.append(entries(seq + 1, seq + n, size=10))
        seq += n
        assert len(ring) <= size and ring.size_bytes <= 20 * size
    rec = ring.since(since, 2000)
    assert rec.last_seq == seq
    if rec.recovered:
        assert seqs(rec.msgs, ring) == list(range(since + 1, seq + 1))
    else:
        assert since > seq or since + 1 < ring.first_seq


@given(st.lists(st.tuples(st.integers(-2, 6), st.integers(1, 4), st.integers(0, 3000)),
                min_size=1, max_size=30),
       st.integers(1, 20), st.integers(10, 200))
def test_extend_keeps_exactly_what_append_keeps(batches: list[tuple[int, int, int]],
                                                size: int, max_bytes: int) -> None:
    """The owner's ``extend`` (seqs and bytes, one time) and ``append``
    (entries) give the same ring, gaps, repeats and trims included."""
    by_entries = HistoryRing(size, max_bytes, DAY_MS)
    by_columns = HistoryRing(size, max_bytes, DAY_MS)
    seq = 0
    for step, n, time_ms in batches:
        first = max(1, seq + step)  # a step of 1 continues; <= 0 repeats; > 1 leaves a gap
        batch = entries(first, first + n - 1, time_ms=time_ms, size=7 + first % 5)
        assert by_entries.append(batch) == by_columns.extend(
            [e.seq for e in batch], time_ms, [e.data for e in batch])
        seq = first + n - 1
        assert by_entries.entries() == by_columns.entries()
        assert (by_entries.last_seq, by_entries.size_bytes, by_entries.first_seq) == (
            by_columns.last_seq, by_columns.size_bytes, by_columns.first_seq)
        kept = by_columns.entries()
        assert by_columns.size_bytes == sum(len(e.data) for e in kept) <= max_bytes
        assert [e.seq for e in kept] == list(range(by_columns.first_seq, seq + 1))[-len(kept):]
    assert by_entries.last(size, 2000) == by_columns.last(size, 2000)


def test_advance_keeps_the_position_and_drops_what_no_longer_reaches_it() -> None:
    ring = HistoryRing(10, 1 << 20, 60_000)
    ring.extend([1, 2], 0, [b"a", b"b"])
    ring.advance(2)  # not newer: nothing changes
    assert (ring.last_seq, len(ring)) == (2, 2)
    ring.advance(5)  # 3..5 were never given: 1..2 no longer reach the newest end
    assert (ring.last_seq, len(ring)) == (5, 0)
    assert ring.since(5, 0).recovered and not ring.since(2, 0).recovered
    assert ring.append([Entry(6, 0, b"f")])  # 6 continues the position
    assert ring.since(5, 0).msgs == [b"f"]
