"""Slow readers judged by everything they have not read (docs/design.md,
"Bounded outbox"): the kernel's send queue counts toward the outbox, so a
member that stops reading is degraded, then shed (4008) once the outbox,
kernel included, passes the hard limit, and not megabytes later; a member
whose outbox never drains at all is shed after LIVECAST_STALL_TIMEOUT even
under the hard limit.  Real sockets on loopback; the stalled member is a raw
client with a small SO_RCVBUF that stops reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from livecast.client import Client, text
from livecast.node.connection import Connection, bytes_acked
from tests.conftest import Live, LiveFactory
from tests.gateway.test_fanout_slow import Watcher
from tests.gateway.test_ws_closes import RawWs, login_raw, metric

BIG = 12_000
ROUND = 5
MAX_BYTES = 64 * 1024 * 1024


async def until(probe: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


def server_side(live: Live, user: str) -> Connection:
    return next(c for c in live.node.connections if c.user == user)


async def read_to_the_end(raw: RawWs) -> tuple[int, list[dict[str, Any]]]:
    """Bytes of message text received, then the frames after the last msgs."""
    got = 0
    tail: list[dict[str, Any]] = []
    while not tail or tail[-1]["op"] != "_close":
        frame = await asyncio.wait_for(raw.recv_json(), 10)
        if frame["op"] == "msgs":
            got += sum(len(m["msgBody"][0]["MsgContent"]["Text"]) for m in frame["msgs"])
            tail = []
        elif frame["op"] != "tips":
            tail.append(frame)
    return got, tail


async def _round(sender: Client, gid: str) -> None:
    sends = [sender.send(gid, text("z" * BIG)) for _ in range(ROUND)]
    sends.append(sender.send(gid, text("low"), priority="Low"))
    replies = await asyncio.gather(*sends)
    assert all(r["code"] == 0 for r in replies), replies


async def test_stalled_member_is_degraded_then_shed_at_the_hard_limit(
        live_factory: LiveFactory) -> None:
    soft, hard = 64 * 1024, 256 * 1024
    live = await live_factory(outbox_soft_bytes=soft, outbox_hard_bytes=hard,
                              room_rate=1000, room_burst=1000, req_rate=10_000,
                              req_burst=10_000, tip_interval=0.1, shutdown_grace=60.0,
                              stall_timeout=3600)
    gid = await live.room()
    sender = await live.client("sender", join=gid)
    slow = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(slow, "slow")
        assert (await slow.request("join", "j", groupId=gid))["code"] == 0
        watcher = Watcher(sender)
        sent = 0
        while not watcher.left.is_set():          # the slow member reads nothing now
            assert sent < MAX_BYTES, "the stalled member was never shed"
            await _round(sender, gid)
            sent += ROUND * BIG
        assert await metric(live, "livecast_frames_degraded_total") > 0
        assert await metric(live, "livecast_connections_shed_total") == 1
        assert await metric(live, "livecast_connections_stalled_total") == 0
        got, tail = await read_to_the_end(slow)
        assert tail == [{"op": "kicked", "reason": "slow"}, {"op": "_close", "code": 4008}]
        # what it had not read when shed: the hard limit, one tick's frame and
        # what its own kernel took, not the megabytes a kernel can queue
        assert hard <= got < hard + ROUND * BIG + 2 * soft, got
    finally:
        slow.close()


async def test_member_that_never_drains_is_shed_after_the_stall_timeout(
        live_factory: LiveFactory) -> None:
    soft, hard = 64 * 1024, 8 * 1024 * 1024
    live = await live_factory(outbox_soft_bytes=soft, outbox_hard_bytes=hard,
                              room_rate=1000, room_burst=1000, req_rate=10_000,
                              req_burst=10_000, shutdown_grace=60.0, stall_timeout=0.3)
    gid = await live.room()
    sender = await live.client("sender", join=gid)
    slow = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(slow, "slow")
        assert (await slow.request("join", "j", groupId=gid))["code"] == 0
        conn = server_side(live, "slow")
        sent = 0
        while not conn.transport.get_write_buffer_size():   # until the kernel is full
            assert sent < MAX_BYTES, "the kernel's send buffer never filled"
            await _round(sender, gid)
            sent += ROUND * BIG
        assert conn.buffered() > conn.transport.get_write_buffer_size()  # kernel counted
        assert conn.buffered() < hard

        async def stalled() -> bool:
            return await metric(live, "livecast_connections_stalled_total") == 1
        await until(stalled)                      # nothing more sent: it never drains
        assert await metric(live, "livecast_connections_shed_total") == 1
        got, tail = await read_to_the_end(slow)
        assert tail == [{"op": "kicked", "reason": "slow"}, {"op": "_close", "code": 4008}]
        assert got < hard
        assert (await sender.ping())["code"] == 0
    finally:
        slow.close()


async def test_stall_clock_restarts_whenever_the_peer_acknowledges_bytes(
        live_factory: LiveFactory) -> None:
    """``Connection.stalled`` on a real socket, asked at chosen times: no byte
    acknowledged for the timeout is a stall; reading any restarts the clock."""
    live = await live_factory(outbox_soft_bytes=64 * 1024, outbox_hard_bytes=8 * 1024 * 1024,
                              room_rate=1000, room_burst=1000, req_rate=10_000,
                              req_burst=10_000, shutdown_grace=60.0, stall_timeout=3600)
    gid = await live.room()
    sender = await live.client("sender", join=gid)
    slow = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(slow, "slow")
        assert (await slow.request("join", "j", groupId=gid))["code"] == 0
        conn = server_side(live, "slow")
        while not conn.transport.get_write_buffer_size():
            await _round(sender, gid)
        acked = bytes_acked(conn.transport)
        assert acked is not None                   # Linux tells (TCP_INFO)
        t = time.monotonic()
        assert not conn.stalled(t, 5)              # the clock starts
        assert not conn.stalled(t + 4, 5)
        assert conn.stalled(t + 5, 5)              # nothing acknowledged since

        frame = await asyncio.wait_for(slow.recv_json(), 10)   # the peer reads a little
        assert frame["op"] in ("msgs", "tips")

        async def more_acked() -> bool:
            now = bytes_acked(conn.transport)
            return now is not None and now > acked
        await until(more_acked)
        assert not conn.stalled(t + 6, 5)          # progress: the clock restarts
    finally:
        slow.close()
