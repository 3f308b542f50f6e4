"""The per-message path in one process, without the kernel: livecast's own
Python cost of a message in a small room.

``python -m livecast.bench.path --members 12 --rooms 500 --messages 20000``
builds a real ``Node`` and real ``WsConnection`` objects (logged in with a
real UserSig, joined), whose transports count bytes instead of sending
them.  Each message is a client ``send`` frame (masked, as a browser sends
it) fed to its sender's ``data_received``, then one loop iteration runs the
room's dispatch: the reading, parsing and checks, the scheduler, the encode,
the reply to the sender and the writes to every member, everything but the
system calls and the event loop's own reading.  It prints the process CPU
time per message and per delivery; a sampling profiler attached to it shows
where that time goes (docs/benchmarks.md, "Small rooms: the per-message
path").

``--server baseline`` runs the raw writer (``livecast.bench.baseline``, the
floor ``livecast bench --baseline`` measures against) through the same
harness: the same frames fed to its connections, the same counting
transports, so the two figures differ by livecast's own Python alone.
``--server floor`` runs it with the contract's steps (``baseline.py
--steps``, the limits as livecast's run here): livecast less the floor is the
way between the steps (docs/benchmarks.md, "The contract's floor in the
running server").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from livecast.bench import baseline
from livecast.bench.wire import MSGS_PREFIX, client_frame
from livecast.core.usersig import mint
from livecast.gateway.ws import WsConnection
from livecast.node.node import Node
from livecast.settings import Secret, Settings

KEY = "bench-path-key"


class CountingTransport:
    """A transport that takes every write at once and only counts it (and
    the ``msgs`` frames among the writes)."""

    __slots__ = ("closing", "frames", "msgs", "written")

    def __init__(self) -> None:
        self.written = 0
        self.frames = 0
        self.msgs = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.frames += 1
        if MSGS_PREFIX in data[:16]:
            self.msgs += 1

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_protocol(self, protocol: Any) -> None:
        return None

    def close(self) -> None:
        self.closing = True

    abort = close


class _GcTime:
    """The garbage collector's runs and their time (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = [0, 0, 0]  # by generation
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.runs[info["generation"]] += 1


def _msgs_frames(node: Node) -> int:
    return sum(c.transport.msgs for c in node.connections)


def _conn(node: Node, user: str, room: str) -> WsConnection:
    conn = WsConnection(node, CountingTransport(), "127.0.0.1")  # type: ignore[arg-type]
    conn.connection_made(conn.transport)
    s = node.settings
    login = {"op": "login", "id": 1, "sdkAppId": s.sdkappid, "userId": user,
             "userSig": mint(s.sdkappid, KEY, user, time.time())}
    conn.data_received(client_frame(orjson.dumps(login)))
    conn.data_received(client_frame(orjson.dumps({"op": "join", "id": 2, "groupId": room})))
    return conn


def _send(room: str, i: int) -> bytes:
    return client_frame(orjson.dumps({
        "op": "send", "id": i, "groupId": room, "priority": "Normal", "random": i,
        "msgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * 64}}],
        "cloudCustomData": "t=1700000000.000"}))


async def _feed(senders: Sequence[Any], messages: int,
                msgs_frames: Callable[[], int]) -> tuple[float, float, _GcTime, int]:
    """Each room's sender (one per room) sends once to warm its path up, then
    ``messages`` send frames go to the rooms in turn, one loop iteration after
    each (the room's dispatch): (CPU s and wall s of those, GC runs, the
    ``msgs`` frames written meanwhile, counted by ``msgs_frames``)."""
    rooms = len(senders)
    frames = [_send(f"path-{r}", i) for i in range(100) for r in range(rooms)]
    for r in range(rooms):  # warm up every room's code path
        senders[r].data_received(frames[r])
    await asyncio.sleep(0)
    msgs0 = msgs_frames()
    gc_time = _GcTime()
    gc.callbacks.append(gc_time)
    started, wall = time.process_time(), time.perf_counter()
    try:
        for i in range(messages):
            senders[i % rooms].data_received(frames[i % len(frames)])
            await asyncio.sleep(0)  # one loop iteration: the room's dispatch
        cpu = time.process_time() - started
    finally:
        gc.callbacks.remove(gc_time)
    wall = time.perf_counter() - wall
    await asyncio.sleep(0.05)  # any dispatch still due (none when every room was quiet)
    return cpu, wall, gc_time, msgs_frames() - msgs0


def _result(messages: int, members: int, rooms: int, delivered: int,
            fed: tuple[float, float, _GcTime, int]) -> dict[str, Any]:
    cpu, wall, gc_time, written = fed
    return {"messages": messages, "members": members, "rooms": rooms,
            "delivered": delivered,
            "msgs_per_frame": round(delivered * members / written, 3) if written else 0.0,
            "cpu_s": round(cpu, 4),
            "wall_s": round(wall, 4),
            "gc_s": round(gc_time.seconds, 4), "gc_runs": gc_time.runs,
            "us_per_message": round(cpu / messages * 1e6, 2),
            "us_per_delivery": round(cpu / (messages * members) * 1e6, 3)}


def _settings() -> Settings:
    # a 5 ms tick: with hundreds of rooms taking turns, each room is quiet
    # when its next message comes, which then goes out in a frame of its own
    return Settings(secret_key=Secret(KEY), room_rate=10_000, room_burst=10_000,
                    req_rate=1e9, req_burst=1_000_000_000, tick_ms=5)


async def run(members: int, rooms: int, messages: int) -> dict[str, Any]:
    """CPU seconds per message and per delivery over ``messages`` sends."""
    node = Node(_settings())
    await node.start()
    senders = []
    for r in range(rooms):
        gid = f"path-{r}"
        await node.create_group("administrator", {"Type": "AVChatRoom", "Name": gid}, gid)
        senders.append(_conn(node, f"s{r}", gid))
        for m in range(members - 1):
            _conn(node, f"m{r}-{m}", gid)
    fed = await _feed(senders, messages, lambda: _msgs_frames(node))
    delivered = sum(r.sched.delivered_total for r in node.rooms.values()) - rooms
    await node.close_collaborators()
    return _result(messages, members, rooms, delivered, fed)


def _baseline_conn(hub: baseline.Hub, user: str, room: str) -> baseline.Conn:
    conn = baseline.Conn(hub)
    conn.connection_made(CountingTransport())  # type: ignore[arg-type]
    conn.open = True  # past the handshake
    sdkappid = Settings().sdkappid  # a login the floor's validation takes (no check of the sig)
    login = {"op": "login", "id": 1, "sdkAppId": sdkappid, "userId": user,
             "userSig": mint(sdkappid, KEY, user, time.time())}
    conn.data_received(client_frame(orjson.dumps(login)))
    conn.data_received(client_frame(orjson.dumps({"op": "join", "id": 2, "groupId": room})))
    return conn


async def run_baseline(members: int, rooms: int, messages: int,
                       steps: bool = False) -> dict[str, Any]:
    """``run`` for the raw writer (``steps``: the floor): the same rooms,
    frames, limits and measurement."""
    hub = baseline.Hub(0.005, _settings() if steps else None)  # the same 5 ms tick
    senders = []
    for r in range(rooms):
        gid = f"path-{r}"
        senders.append(_baseline_conn(hub, f"s{r}", gid))
        for m in range(members - 1):
            _baseline_conn(hub, f"m{r}-{m}", gid)

    def msgs_frames() -> int:  # the room's members are the counting transports
        return sum(t.msgs for room in hub.rooms.values() for t in room.members)  # type: ignore[attr-defined]

    fed = await _feed(senders, messages, msgs_frames)
    delivered = sum(room.sched.delivered_total if steps else room.seq
                    for room in hub.rooms.values()) - rooms
    return _result(messages, members, rooms, delivered, fed)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m livecast.bench.path", description=__doc__)
    p.add_argument("--members", type=int, default=12, help="members per room, sender included")
    p.add_argument("--rooms", type=int, default=500)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--server", choices=["livecast", "baseline", "floor"], default="livecast",
                   help="the server whose path is run (baseline: the raw writer; floor: the "
                        "raw writer with the contract's steps)")
    args = p.parse_args(argv)
    import uvloop

    if args.server == "livecast":
        result = uvloop.run(run(args.members, args.rooms, args.messages))
    else:
        result = uvloop.run(run_baseline(args.members, args.rooms, args.messages,
                                         steps=args.server == "floor"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
