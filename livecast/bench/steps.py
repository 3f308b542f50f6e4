"""The steps a message's contract asks of livecast beyond the raw writer,
each timed alone: what the per-message path would cost if it were nothing
but its steps.

``python -m livecast.bench.steps`` runs, each with ``timeit`` (the best of
three repeats), the functions livecast's path calls for the steps the raw
writer (``livecast.bench.baseline``) does not take: the send's validation,
the request rate, the ban and mute check, the room's scheduler, the
history, and the fan-out's per-member outbox checks.  Reading the frame,
``orjson.loads``, encoding the ``msgs`` frame and the reply and the writes
are the raw writer's too and are left out.  It prints one JSON line: each
step's µs, and their sum, beside which ``python -m livecast.bench.path``
(livecast's whole path less the raw writer's, in the same process) shows
how much of a message's own cost is steps and how much the way between
them (docs/benchmarks.md, "The contract's steps, timed alone").
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from livecast.bench.path import CountingTransport
from livecast.core.bucket import TokenBucket
from livecast.core.fate import send_refusal
from livecast.core.group import Group
from livecast.core.history import HistoryRing
from livecast.core.protocol import parse_frame
from livecast.core.scheduler import Priority, RoomScheduler
from livecast.gateway.ws import OPS
from livecast.node.connection import Connection
from livecast.node.fanout import fanout

SEND = orjson.dumps({
    "op": "send", "id": 5, "groupId": "steps-1", "priority": "Normal", "random": 5,
    "msgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * 64}}],
    "cloudCustomData": "t=1700000000.000"})
FRAME = b"\x81\x7e" + b"x" * 200  # the bytes written: their content does not matter


def _best(fn: Callable[[], object], number: int) -> float:
    """µs per call: the best of three repeats of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def _members(n: int) -> list[Connection]:
    members = []
    for _ in range(n):
        conn = Connection.__new__(Connection)
        conn.transport = CountingTransport()
        conn.held = b""
        members.append(conn)
    return members


def measure(members: int = 12, number: int = 100_000) -> dict[str, Any]:
    """Each step's µs per message (rooms of ``members``), and their sum."""
    steps: dict[str, float] = {}
    loads = _best(lambda: orjson.loads(SEND), number)
    steps["validate the send (parse_frame less orjson.loads)"] = (
        _best(lambda: parse_frame(SEND, OPS), number) - loads)
    bucket = TokenBucket(1e9, 1e9, time.monotonic())
    steps["the request rate (TokenBucket.try_take)"] = _best(
        lambda: bucket.try_take(time.monotonic()), number)
    group = Group.create("steps-1", "owner", time.time(), {"Type": "AVChatRoom", "Name": "s"})
    steps["ban and mute (send_refusal)"] = _best(
        lambda: send_refusal(group, "u1", time.time()), number)
    sched = RoomScheduler(10**9, 10**9, time.monotonic())

    def schedule() -> None:
        now = time.monotonic()
        sched.offer(None, Priority.NORMAL, now)
        sched.tick(now)
    steps["the room's scheduler (offer, then the tick delivering it)"] = _best(schedule, number)
    ring = HistoryRing(1000, 1 << 20, 3_600_000)
    seq = iter(range(1, 10**9))
    steps["the history (HistoryRing.extend)"] = _best(
        lambda: ring.extend((next(seq),), 1, (FRAME,)), number)
    conns = _members(members)
    transports = [c.transport for c in conns]

    def bare() -> None:
        for t in transports:
            t.write(FRAME)
    steps[f"the outbox checks of {members} members (fanout less bare writes)"] = (
        _best(lambda: fanout(conns, FRAME, None, 1 << 20, 1 << 22), number // members)
        - _best(bare, number // members))
    return {"members": members,
            "steps_us": {k: round(v, 2) for k, v in steps.items()},
            "sum_us": round(sum(steps.values()), 2)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m livecast.bench.steps", description=__doc__)
    p.add_argument("--members", type=int, default=12, help="members per room, sender included")
    p.add_argument("--number", type=int, default=100_000, help="calls per repeat")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.members, args.number)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
