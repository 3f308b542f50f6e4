"""RoomScheduler: examples for the basics, and a Hypothesis state machine that
drives random overload (offers, ticks, rate changes) and checks spec rooms.md
invariants 1-5 and max-wait expiry after every step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from livecast.core.bucket import EPSILON
from livecast.core.scheduler import (
    DEFAULT_MAX_WAIT,
    PRIORITY_NAMES,
    Pending,
    Priority,
    RoomScheduler,
    TickResult,
    parse_priority,
)
from tests.core.test_bucket import RateWitness

H, N, L, LL = Priority.HIGH, Priority.NORMAL, Priority.LOW, Priority.LOWEST


def payloads(result: TickResult) -> list[object]:
    return [m.payload for _, m in result.delivered]


def seqs(result: TickResult) -> list[int]:
    return [s for s, _ in result.delivered]


# -- examples ---------------------------------------------------------------


def test_priority_names() -> None:
    assert [parse_priority(n) for n in PRIORITY_NAMES] == list(Priority)
    assert [PRIORITY_NAMES[p] for p in Priority] == ["High", "Normal", "Low", "Lowest"]
    for bad in ("high", "HIGH", "Normal ", "", "0", 0, 1, None, b"High", ["High"]):
        assert parse_priority(bad) is None


def test_delivers_burst_then_rate_with_contiguous_seqs() -> None:
    room = RoomScheduler(rate=2, burst=2, now=0.0)
    for i in range(5):
        assert room.offer(i, N, 0.0) == []
    first = room.tick(0.0)
    assert (payloads(first), seqs(first), first.dropped) == ([0, 1], [1, 2], [])
    assert payloads(room.tick(0.2)) == []
    second = room.tick(0.5)
    assert (payloads(second), seqs(second)) == ([2], [3])
    assert (room.pending, room.next_seq, room.delivered_total) == (2, 4, 3)


def test_highest_priority_first_fifo_within() -> None:
    room = RoomScheduler(rate=10, burst=10, now=0.0)
    for payload, p in [("l1", L), ("n1", N), ("h1", H), ("z1", LL), ("h2", H), ("n2", N)]:
        room.offer(payload, p, 0.0)
    result = room.tick(0.0)
    assert payloads(result) == ["h1", "h2", "n1", "n2", "l1", "z1"]
    assert seqs(result) == [1, 2, 3, 4, 5, 6]


def test_priority_preempts_older_lower_messages() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0)
    room.offer("low", L, 0.0)
    room.offer("normal", N, 0.0)
    room.tick(0.0)
    room.offer("high", H, 0.5)
    assert payloads(room.tick(0.9)) == []
    assert payloads(room.tick(1.0)) == ["high"]  # "low" waited longer but ranks lower


def test_capacity_evicts_newest_of_lowest_priority_below_the_offer() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0, max_wait=(2.0, 2.0, 2.0, 2.0))
    assert room.capacity == 2
    assert room.offer("a", L, 0.0) == []
    assert room.offer("b", L, 0.0) == []
    assert [m.payload for m in room.offer("c", N, 0.0)] == ["b"]  # newest Low
    assert [m.payload for m in room.offer("d", L, 0.0)] == ["d"]  # nothing below Low
    assert [m.payload for m in room.offer("e", H, 0.0)] == ["a"]  # lowest present first
    assert [m.payload for m in room.offer("f", H, 0.0)] == ["c"]
    assert [m.payload for m in room.offer("g", H, 0.0)] == ["g"]  # High alone is full
    assert room.dropped_by_priority == (1, 1, 3, 0)
    assert payloads(room.tick(0.0)) == ["e"]
    assert [room.pending_of(p) for p in Priority] == [1, 0, 0, 0]


def test_capacity_follows_rate_and_longest_wait() -> None:
    assert RoomScheduler(rate=40, burst=40, now=0.0).capacity == 200
    assert RoomScheduler(rate=40, burst=500, now=0.0).capacity == 500
    assert RoomScheduler(rate=3, burst=1, now=0.0, max_wait=(0.1,) * 4).capacity == 1
    assert RoomScheduler(rate=7, burst=1, now=0.0, max_wait=(0, 0.5, 0, 0)).capacity == 4


def test_expiry_at_max_wait_is_inclusive_and_drops_on_first_tick_after() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0)  # Low waits at most 1 s
    for i in range(3):
        room.offer(i, L, 0.0)
    assert payloads(room.tick(0.0)) == [0]
    at_limit = room.tick(1.0)  # waited exactly 1 s: still deliverable
    assert (payloads(at_limit), at_limit.dropped) == ([1], [])
    late = room.tick(1.5)
    assert payloads(late) == []
    assert [m.payload for m in late.dropped] == [2]
    assert room.dropped_by_priority == (0, 0, 1, 0)
    assert (room.pending, room.next_seq) == (0, 3)


def test_expired_message_is_not_delivered_even_with_tokens() -> None:
    room = RoomScheduler(rate=1, burst=5, now=0.0)
    room.offer("old", LL, 0.0)
    room.offer("new", LL, 2.0)
    result = room.tick(2.0)
    assert payloads(result) == ["new"]
    assert seqs(result) == [1]  # seq counts delivered messages only
    assert [m.payload for m in result.dropped] == ["old"]


def test_paused_room_delivers_nothing_and_everything_expires() -> None:
    room = RoomScheduler(rate=0, burst=3, now=0.0)
    assert room.capacity == 3
    for i in range(5):
        dropped = room.offer(i, H, 0.0)
        assert [m.payload for m in dropped] == ([] if i < 3 else [i])
    assert room.tick(4.0) == TickResult([], [])
    result = room.tick(5.5)
    assert (payloads(result), [m.payload for m in result.dropped]) == ([], [0, 1, 2])
    assert room.dropped_by_priority == (5, 0, 0, 0)


def test_configure_keeps_queues_seq_and_tokens() -> None:
    room = RoomScheduler(rate=2, burst=2, now=0.0, next_seq=100)
    for i in range(6):
        room.offer(i, N, 0.0)
    assert seqs(room.tick(0.0)) == [100, 101]
    room.configure(rate=10, burst=10, now=0.25)  # 0.5 token earned at the old rate
    assert (room.rate, room.burst, room.capacity, room.pending) == (10, 10, 50, 4)
    assert room.tokens == pytest.approx(0.5)
    result = room.tick(0.4)  # 0.5 + 10 * 0.15 = 2 tokens
    assert (payloads(result), seqs(result)) == ([2, 3], [102, 103])


def test_configure_shrinking_capacity_trims_lowest_newest_into_next_tick() -> None:
    room = RoomScheduler(rate=10, burst=1, now=0.0, max_wait=(1.0,) * 4)
    room.offer("first", H, 0.0)
    assert payloads(room.tick(0.0)) == ["first"]  # spends the one token
    for payload, p in [("h", H), ("n1", N), ("n2", N), ("l1", L), ("l2", L), ("z", LL)]:
        room.offer(payload, p, 0.0)
    room.configure(rate=2, burst=2, now=0.0)
    assert (room.capacity, room.pending) == (2, 2)
    assert [room.pending_of(p) for p in Priority] == [1, 1, 0, 0]
    assert room.tokens == 0
    result = room.tick(0.5)
    assert payloads(result) == ["h"]
    assert [m.payload for m in result.dropped] == ["z", "l2", "l1", "n2"]
    assert room.dropped_by_priority == (0, 1, 2, 1)
    assert room.next_seq == 3
    assert room.tick(0.5).dropped == []  # reported once


def test_drain_drops_everything_waiting_once() -> None:
    room = RoomScheduler(rate=10, burst=1, now=0.0)
    for payload, p in [("h", H), ("n", N), ("l", L), ("z", LL), ("z2", LL)]:
        room.offer(payload, p, 0.0)
    assert payloads(room.tick(0.0)) == ["h"]
    room.configure(rate=1, burst=1, now=0.0)  # capacity 5: nothing trimmed
    room.configure(rate=0, burst=2, now=0.0)  # capacity 2: trims "z2", "z"
    assert sorted(m.payload for m in room.drain()) == ["l", "n", "z", "z2"]
    assert (room.pending, room.dropped_by_priority, room.next_seq) == (0, (0, 1, 1, 2), 2)
    assert room.drain() == []
    assert room.tick(10.0) == TickResult([], [])


def test_clock_going_backwards_is_the_latest_time_seen() -> None:
    room = RoomScheduler(rate=1, burst=1, now=10.0)
    room.offer("first", L, 10.0)
    assert payloads(room.tick(10.0)) == ["first"]
    room.offer("late", L, 5.0)
    assert room.tick(9.0) == TickResult([], [])  # no refill from the step back
    assert payloads(room.tick(11.0)) == ["late"]  # enqueued at 10.0, waited 1 s


def test_offer_accepts_plain_ints_as_priority() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0)
    room.offer("x", 2, 0.0)  # type: ignore[arg-type]
    assert room.pending_of(L) == 1
    with pytest.raises(ValueError):
        room.offer("y", 7, 0.0)  # type: ignore[arg-type]


def test_pending_records_priority_and_time() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0)
    room.offer({"k": 1}, N, 3.5)
    ((seq, msg),) = room.tick(3.5).delivered
    assert (seq, msg) == (1, Pending(N, 3.5, {"k": 1}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": -1, "burst": 1},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": -5},
        {"rate": 1, "burst": 1, "next_seq": -1},
        {"rate": 1, "burst": 1, "max_wait": (1.0, 1.0, 1.0)},
        {"rate": 1, "burst": 1, "max_wait": (1.0, 1.0, -1.0, 1.0)},
        {"rate": 1, "burst": 1, "max_wait": (1.0, math.nan, 1.0, 1.0)},
        {"rate": 1, "burst": 1, "max_wait": (1.0, 1.0, 1.0, math.inf)},
    ],
)
def test_rejects_programmer_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RoomScheduler(now=0.0, **kwargs)  # type: ignore[arg-type]


def test_configure_rejects_bad_settings() -> None:
    room = RoomScheduler(rate=1, burst=1, now=0.0)
    with pytest.raises(ValueError):
        room.configure(rate=-1, burst=1, now=0.0)
    with pytest.raises(ValueError):
        room.configure(rate=1, burst=0, now=0.0)
    assert (room.rate, room.burst) == (1, 1)


def test_sustained_tenfold_overload_delivers_exactly_at_rate() -> None:
    room = RoomScheduler(rate=40, burst=40, now=1000.0)
    delivered = 0
    for k in range(401):  # 10 s of 25 ms ticks, 400 offers/s against a 40/s room
        now = 1000.0 + k * 0.025
        for i in range(10):
            room.offer((k, i), H, now)
            assert room.pending <= room.capacity
        delivered += len(room.tick(now).delivered)
    assert delivered == 40 + 40 * 10
    assert room.next_seq == delivered + 1


# -- the state machine ------------------------------------------------------


@dataclass(slots=True)
class Msg:
    priority: Priority
    at: float


_dts = st.one_of(  # mostly dispatch-tick sized steps, sometimes long gaps
    st.just(0.0),
    st.floats(0.0, 0.3),
    st.sampled_from([0.025, 0.05, 0.1, 0.25]),
    st.sampled_from([0.5, 1.0, 2.0, 5.0]),
)
_rates = st.one_of(st.sampled_from([1, 2, 5, 10, 20, 40, 50]), st.integers(0, 50))
_bursts = st.one_of(st.sampled_from([1, 5, 10, 40, 60]), st.integers(1, 60))
_max_waits = st.one_of(
    st.just(DEFAULT_MAX_WAIT),
    st.sampled_from([(0.5, 0.5, 0.25, 0.1), (2.0, 1.0, 0.5, 0.0), (1.0, 2.0, 3.0, 4.0)]),
    st.tuples(*[st.floats(0.0, 5.0)] * 4),
)
_priorities = st.sampled_from(Priority)
_counts = st.one_of(st.integers(1, 10), st.integers(10, 150))  # bursts far above the rate


class RoomMachine(RuleBasedStateMachine):
    """Offers far above the rate, ticks at random increasing times, rate changes.

    The model tracks every offered message by id (its payload): ``queued`` are
    those the room holds, ``limbo`` those a configure() trimmed and the next
    tick must report, ``ended`` those delivered or dropped (exactly once).
    """

    @initialize(
        rate=_rates,
        burst=_bursts,
        waits=_max_waits,
        start=st.sampled_from([0.0, 1000.0, 1.7e9]),
    )
    def setup(self, rate: int, burst: int, waits: tuple[float, ...], start: float) -> None:
        self.now = start
        self.waits = waits
        self.room = RoomScheduler(rate, burst, start, max_wait=waits)
        self.witness = RateWitness(rate, burst, start)
        self.queued: dict[int, Msg] = {}
        self.limbo: set[int] = set()
        self.order: list[list[int]] = [[] for _ in Priority]  # ids by offer order
        self.ended: set[int] = set()
        self.next_id = 0
        self.seqs: list[int] = []
        self.delivered = 0
        self.dropped = [0] * len(Priority)

    # -- model helpers --

    def end(self, mid: int, delivered: bool) -> None:
        assert mid not in self.ended, f"message {mid} ended twice"
        self.ended.add(mid)
        msg = self.queued.pop(mid, None)
        if msg is None:
            self.limbo.remove(mid)  # the only other place it may be
        if delivered:
            self.delivered += 1

    def newest(self, p: Priority) -> int | None:
        ids = self.order[p]
        while ids and ids[-1] not in self.queued:  # ended ids never come back
            ids.pop()
        return ids[-1] if ids else None

    def expired(self, msg: Msg) -> bool:
        return self.now - msg.at > self.waits[msg.priority]

    # -- rules --

    @rule(pattern=st.lists(_priorities, min_size=1, max_size=8), count=_counts, dt=_dts)
    def offer(self, pattern: list[Priority], count: int, dt: float) -> None:
        """A burst of ``count`` offers at one time, priorities cycling through ``pattern``."""
        self.now += dt
        for i in range(count):
            self.offer_one(pattern[i % len(pattern)])

    def offer_one(self, p: Priority) -> None:
        room, mid = self.room, self.next_id
        self.next_id += 1
        before = [room.pending_of(q) for q in Priority]
        full = room.pending == room.capacity
        newest = [self.newest(q) for q in Priority]
        dropped = room.offer(mid, p, self.now)
        self.queued[mid] = Msg(p, self.now)
        self.order[p].append(mid)
        if not full:
            assert dropped == []
            return
        # invariant 3: the drop is of the lowest priority present, High last
        (victim,) = dropped
        lowest = max([q for q in Priority if before[q]] + [p])
        assert victim.priority == lowest
        if victim.payload == mid:
            assert not any(before[q] for q in Priority if q > p)
        else:
            assert victim.priority > p
            assert victim.payload == newest[victim.priority]
        self.dropped[victim.priority] += 1
        self.end(victim.payload, delivered=False)

    @rule(dt=_dts)
    def tick(self, dt: float) -> None:
        self.now += dt
        self.run_tick()

    def drain(self) -> None:
        """Tick past every max wait: nothing may be left pending or unaccounted."""
        self.now += max(self.waits) + 1.0
        self.run_tick()
        assert self.room.pending == 0
        assert not self.queued and not self.limbo
        assert len(self.ended) == self.next_id
        assert self.seqs == list(range(1, len(self.seqs) + 1))

    @rule(rate=_rates, burst=_bursts, dt=_dts)
    def configure(self, rate: int, burst: int, dt: float) -> None:
        self.now += dt
        room = self.room
        seq, before = room.next_seq, [room.pending_of(q) for q in Priority]
        room.configure(rate, burst, self.now)
        self.witness.configure(rate, burst, self.now)
        after = [room.pending_of(q) for q in Priority]
        assert room.next_seq == seq and (room.rate, room.burst) == (rate, burst)
        for p in Priority:  # trims take the lowest priorities, newest first
            cut = before[p] - after[p]
            assert cut >= 0
            if cut:
                assert not any(after[q] for q in Priority if q > p)
            for _ in range(cut):
                mid = self.newest(p)
                assert mid is not None
                self.limbo.add(mid)
                del self.queued[mid]
                self.dropped[p] += 1

    # -- the tick and its checks --

    def run_tick(self) -> None:
        first_seq, limbo = self.room.next_seq, set(self.limbo)
        result = self.room.tick(self.now)
        self.witness.took(len(result.delivered), self.now)  # invariant 1
        self.check_dropped(result, limbo)
        self.check_delivered(result, first_seq)
        self.check_left_behind(result)

    def check_dropped(self, result: TickResult, limbo: set[int]) -> None:
        ids = [m.payload for m in result.dropped]
        assert set(ids) >= limbo  # trimmed messages are reported by the next tick
        for m in result.dropped:
            mid = m.payload
            if mid not in limbo:  # max wait: dropped only once past it
                assert mid in self.queued and self.expired(self.queued[mid])
                self.dropped[m.priority] += 1
            self.end(mid, delivered=False)

    def check_delivered(self, result: TickResult, first_seq: int) -> None:
        got = seqs(result)
        assert got == list(range(first_seq, first_seq + len(got)))  # invariant 4
        assert self.room.next_seq == first_seq + len(got)
        self.seqs.extend(got)
        keys = [(m.priority, m.payload) for _, m in result.delivered]
        assert keys == sorted(keys)  # highest first, FIFO within a priority
        for _, m in result.delivered:
            model = self.queued[m.payload]
            assert (m.priority, m.enqueued) == (model.priority, model.at)
            assert not self.expired(model)  # never delivered past its max wait
            self.end(m.payload, delivered=True)

    def check_left_behind(self, result: TickResult) -> None:
        oldest = [math.inf] * len(Priority)
        for mid, msg in self.queued.items():
            assert not self.expired(msg)  # dropped by the first tick past max wait
            oldest[msg.priority] = min(oldest[msg.priority], mid)
        for _, m in result.delivered:  # invariant 2
            # nothing of a higher priority is left waiting behind it (however
            # late it came), nor anything of its own that came before it
            assert all(oldest[q] == math.inf for q in Priority if q < m.priority)
            assert oldest[m.priority] > m.payload
        if self.room.rate > 0 and self.queued:  # the tick used every whole token
            assert self.room.tokens + EPSILON < 1

    # -- after every step --

    @invariant()
    def bounded_and_accounted(self) -> None:
        room = self.room
        assert room.pending <= room.capacity  # invariant 5
        assert room.capacity == max(room.burst, math.ceil(room.rate * max(self.waits)))
        assert room.pending == len(self.queued)
        counts = [0] * len(Priority)
        for msg in self.queued.values():
            counts[msg.priority] += 1
        assert counts == [room.pending_of(p) for p in Priority]
        assert room.delivered_total == self.delivered == len(self.seqs)
        assert list(room.dropped_by_priority) == self.dropped
        ends = len(self.ended) + len(self.queued) + len(self.limbo)
        assert ends == self.next_id  # invariant 4: nothing vanishes

    def teardown(self) -> None:
        if hasattr(self, "room"):
            self.drain()


RoomMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestRoomScheduler = RoomMachine.TestCase


def test_deliveries_are_counted_per_priority() -> None:
    s = RoomScheduler(10, 10, 0.0)
    for p in (Priority.HIGH, Priority.LOW, Priority.LOW, Priority.LOWEST):
        s.offer(object(), p, 0.0)
    s.tick(0.0)
    assert s.delivered_by_priority == (1, 0, 2, 1)
    assert sum(s.delivered_by_priority) == s.delivered_total
