"""The room owner driven by hand: a manual clock and manual timers, no event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest

from livecast.core.fate import Delivered, Dropped, Failed, Fate
from livecast.core.group import Group
from livecast.core.scheduler import Pending, Priority, RoomScheduler
from livecast.core.wsframe import frame
from livecast.errors import Code
from livecast.node.owner import RoomOwner
from livecast.node.room import Outgoing

T0 = 1_700_000_000.0
TICK = 0.1


@dataclass
class Timer:
    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ManualTimers:
    """A hand-driven loop: ``run_due`` calls what is due at ``now``, in order."""

    now: float = 0.0
    timers: list[Timer] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], object]) -> Timer:
        return self.call_at(self.now, callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while due := [t for t in self.pending() if t.when <= self.now]:
            for timer in due:
                self.timers.remove(timer)
                timer.callback()


@dataclass
class Recorder:
    frames: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    fates: list[tuple[str, int, Fate]] = field(default_factory=list)
    # each delivered batch: (room, seqs, each message's bytes, time)
    batches: list[tuple[str, list[int], list[bytes], int]] = field(default_factory=list)
    ticks: int = 0

    def deliver(self, owner: RoomOwner, batch: list[tuple[int, Pending]], encoded: list[bytes],
                full: bytes, lite: bytes | None, time_ms: int) -> None:
        self.frames.append((full, lite))
        self.batches.append((owner.group_id, [seq for seq, _p in batch], encoded, time_ms))
        for seq, pending in batch:
            self.settle(owner.group_id, pending.payload, pending.priority,
                        Delivered(seq, time_ms))

    def settle(self, group_id: str, msg: Outgoing, priority: Priority, fate: Fate) -> None:
        self.fates.append((msg.sender, msg.random, fate))

    def ticked(self, seconds: float) -> None:
        self.ticks += 1


class Room:
    def __init__(self, rate: int = 40, burst: int = 40) -> None:
        self.wall = T0
        self.timers = ManualTimers()
        self.events = Recorder()
        group = Group.create("live", "host", T0, {})
        sched = RoomScheduler(rate, burst, self.timers.time(), (5.0, 2.0, 1.0, 1.0))
        self.owner = RoomOwner(group, sched, self.events, self.timers, lambda: self.wall, TICK)

    def send(self, sender: str, n: int, priority: Priority = Priority.NORMAL) -> Outgoing:
        msg = Outgoing(sender, "", "", priority, n, [{"MsgType": "TIMTextElem",
                                                    "MsgContent": {"Text": str(n)}}], "")
        self.owner.offer(msg)
        return msg

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.timers.advance(seconds)

    def seqs(self) -> list[int]:
        return [f.seq for _s, _r, f in self.events.fates if isinstance(f, Delivered)]


def msgs_of(data: bytes) -> list[dict[str, object]]:
    payload = data[2:] if data[1] < 126 else data[4:] if data[1] == 126 else data[10:]
    decoded = orjson.loads(payload)
    assert decoded["op"] == "msgs" and decoded["groupId"] == "live"
    return list(decoded["msgs"])


def test_a_quiet_room_dispatches_on_the_next_iteration_and_one_frame_carries_the_burst() -> None:
    room = Room()
    for n in range(3):
        room.send("alice", n)
    assert not room.events.frames  # nothing is written inside offer
    room.advance(0)
    assert len(room.events.frames) == 1
    full, lite = room.events.frames[0]
    assert [m["seq"] for m in msgs_of(full)] == [1, 2, 3] and lite is None
    assert room.seqs() == [1, 2, 3]


def test_a_busy_room_dispatches_once_per_tick_with_contiguous_seqs() -> None:
    room = Room(rate=20, burst=1)  # a token every half tick, at most one held
    for n in range(4):
        room.send("alice", n)
    room.advance(0)
    assert room.seqs() == [1]
    assert [t.when for t in room.timers.pending()] == [TICK]  # the next tick, not sooner
    for _ in range(3):
        room.advance(TICK)
    assert room.seqs() == [1, 2, 3, 4]
    assert not room.timers.pending()  # nothing waiting: no timer


def test_a_batch_with_likes_gets_a_lite_frame_without_them() -> None:
    room = Room()
    room.send("alice", 1, Priority.NORMAL)
    room.send("bob", 2, Priority.LOW)
    room.advance(0)
    full, lite = room.events.frames[0]
    assert [m["random"] for m in msgs_of(full)] == [1, 2]
    assert lite is not None and [m["random"] for m in msgs_of(lite)] == [1]


def test_each_message_is_encoded_once_and_the_frames_are_the_whole_batch_encoded() -> None:
    """The frames join each message's own JSON; they are byte for byte the
    batch encoded whole, and the history gets the same bytes per message."""
    room = Room()
    room.send("alice", 1, Priority.NORMAL)
    room.send("bob", 2, Priority.LOW)
    room.send("carol", 3, Priority.HIGH)
    room.advance(0)
    full, lite = room.events.frames[0]
    wires = msgs_of(full)
    assert full == frame(orjson.dumps({"op": "msgs", "groupId": "live", "msgs": wires}))
    kept = [w for w in wires if w["priority"] in ("High", "Normal")]
    assert lite == frame(orjson.dumps({"op": "msgs", "groupId": "live", "msgs": kept}))
    [(gid, seqs, data, time_ms)] = room.events.batches
    assert gid == "live" and seqs == [1, 2, 3] and time_ms == int(T0 * 1000)
    assert [orjson.loads(d) for d in data] == wires
    assert [orjson.dumps(w) for w in wires] == data


def test_a_batch_of_likes_only_leaves_lagging_members_an_empty_lite_frame() -> None:
    room = Room()
    room.send("alice", 1, Priority.LOW)
    room.advance(0)
    full, lite = room.events.frames[0]
    assert [m["random"] for m in msgs_of(full)] == [1] and lite == b""


def test_overload_drops_are_fates_with_the_reason() -> None:
    room = Room(rate=1, burst=1)
    for n in range(5):
        room.send("alice", n, Priority.LOW)
    room.advance(0)
    room.advance(1.5)  # past Low's longest wait: the rest are dropped
    fates = [f for _s, _r, f in room.events.fates]
    assert sum(isinstance(f, Delivered) for f in fates) >= 1
    drops = [f for f in fates if isinstance(f, Dropped)]
    assert drops and all(d.reason == "MsgFreqCtrl" for d in drops)
    assert len(fates) == 5  # every message ends exactly once


def test_close_fails_every_waiting_message_and_stops_dispatching() -> None:
    room = Room(rate=1, burst=1)
    for n in range(3):
        room.send("alice", n)
    room.advance(0)
    room.owner.close(Code.GROUP_NOT_FOUND)
    assert not room.timers.pending()
    failed = [f for _s, _r, f in room.events.fates if isinstance(f, Failed)]
    assert [f.code for f in failed] == [Code.GROUP_NOT_FOUND] * 2
    room.advance(10)
    assert room.seqs() == [1]


def test_configure_changes_the_rate_from_now_on() -> None:
    room = Room(rate=1, burst=1)
    room.owner.configure(100, 100)
    assert (room.owner.group.rate, room.owner.group.burst) == (100, 100)
    room.advance(1.0)  # the bucket fills at the new rate
    for n in range(50):
        room.send("alice", n)
    room.advance(0)
    assert room.seqs() == list(range(1, 51))


def test_each_dispatch_reports_its_duration() -> None:
    room = Room()
    room.send("alice", 1)
    room.advance(0)
    assert room.events.ticks == 1


@pytest.mark.parametrize("step", [-8.0, 30.0])
def test_a_step_of_the_wall_clock_neither_stalls_a_room_nor_expires_its_queue(
        step: float) -> None:
    """The scheduler runs on the monotonic time: the wall clock stepped back
    (a VM resumed, NTP) or forward changes the messages' times only."""
    room = Room(rate=10, burst=10)
    for n in range(30):
        room.send("alice", n, Priority.HIGH)
    room.advance(0)
    assert room.seqs() == list(range(1, 11))  # the burst
    room.wall += step
    for _ in range(20):
        room.advance(TICK)  # 2 s: 10 a second, well within High's 5 s wait
    assert room.seqs() == list(range(1, 31))
    assert not [f for _s, _r, f in room.events.fates if not isinstance(f, Delivered)]
    last = [f for _s, _r, f in room.events.fates][-1]
    assert isinstance(last, Delivered) and last.time_ms >= int((T0 + step) * 1000)
