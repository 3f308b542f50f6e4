"""Slow readers against a real server (spec/rooms.md, Fan-out; spec/websocket.md,
close 4008): a member that stops reading never slows the room or the other
members; it is shed, and finds ``kicked`` "slow" and close 4008 when it reads
again.

The stalled member is a hand-written WebSocket client (``RawWs``) with a small
SO_RCVBUF that simply stops calling recv. How many bytes the kernels absorb
before the server's own buffer grows depends on the host, so the senders keep
going until the room tells the others the stalled member left (a
``memberQuit`` tip), with a bound on the volume. The degrade step (no
Low/Lowest past the soft limit) is tested deterministically in
tests/node/test_fanout.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livecast.client import Client, text
from tests.conftest import LiveFactory
from tests.gateway.test_ws_closes import OP_TEXT, RawWs, encode_client_frame, login_raw, metric

BIG = 12_000                       # characters of text per message (under the 12 KB rule)
ROUND = 10                         # messages per round (one tick: under the hard limit)
MAX_BYTES = 64 * 1024 * 1024       # give up (fail) after this much traffic


class Watcher:
    """Reads every push of one member in the background."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seqs: list[int] = []
        self.tips: list[dict[str, Any]] = []
        self.left = asyncio.Event()
        self.progress = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for push in self.client.pushes():
            if push["op"] == "msgs":
                self.seqs.extend(m["seq"] for m in push["msgs"])
                self.progress.set()
            elif push["op"] == "tips":
                self.tips.extend(push["tips"])
                if any(t["type"] == "memberQuit" and "slow" in t["members"]
                       for t in push["tips"]):
                    self.left.set()

    async def until_seq(self, last: int) -> None:
        while not self.seqs or self.seqs[-1] < last:
            self.progress.clear()
            await asyncio.wait_for(self.progress.wait(), 10)


async def _flood_until_shed(sender: Client, gid: str, watcher: Watcher) -> int:
    """Send big Normal messages until ``watcher`` sees the stalled member leave;
    return the last seq sent."""
    last, sent = 0, 0
    while not watcher.left.is_set():
        assert sent < MAX_BYTES, "the stalled member was never shed"
        replies = await asyncio.gather(*(sender.send(gid, text("z" * BIG))
                                         for _ in range(ROUND)))
        assert all(r["code"] == 0 and r["msgSeq"] > 0 for r in replies)
        last = max(r["msgSeq"] for r in replies)
        sent += ROUND * BIG
    return last


async def test_stalled_member_is_shed_and_others_miss_nothing(
        live_factory: LiveFactory) -> None:
    live = await live_factory(outbox_soft_bytes=64 * 1024, outbox_hard_bytes=256 * 1024,
                              room_rate=400, room_burst=400, req_rate=10_000, req_burst=10_000,
                              tip_interval=0.1, shutdown_grace=60.0)
    gid = await live.room()
    sender = await live.client("sender", join=gid)
    readers = [await live.client(f"r{i}", join=gid) for i in range(3)]
    slow = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(slow, "slow")
        assert (await slow.request("join", "j", groupId=gid))["onlineMemberNum"] == 5
        # from here on the slow member reads nothing
        watchers = [Watcher(c) for c in (sender, *readers)]
        last = await _flood_until_shed(sender, gid, watchers[0])

        for w in watchers:                         # every message reached every reader
            await w.until_seq(last)
            assert w.seqs == list(range(1, last + 1))
        assert await metric(live, "livecast_connections_shed_total") == 1
        assert await metric(live, "livecast_connections_closed_total", code="4008") == 1
        assert (await readers[0].get_online_member_num(gid))["onlineMemberNum"] == 4

        seen, tail = await _read_to_the_end(slow)
        # Normal messages only, so nothing was held back before the shed: a prefix
        assert seen == list(range(1, len(seen) + 1)) and len(seen) < last
        assert tail == [{"op": "kicked", "reason": "slow"}, {"op": "_close", "code": 4008}]
    finally:
        slow.close()


async def _read_to_the_end(raw: RawWs) -> tuple[list[int], list[dict[str, Any]]]:
    """Seqs of every msgs frame, then what came after the last one."""
    seen: list[int] = []
    tail: list[dict[str, Any]] = []
    while not tail or tail[-1]["op"] != "_close":
        frame = await asyncio.wait_for(raw.recv_json(), 10)
        if frame["op"] == "msgs":
            seen.extend(m["seq"] for m in frame["msgs"])
            tail = []
        elif frame["op"] != "tips":
            tail.append(frame)
    return seen, tail


async def test_a_requester_that_never_reads_is_shed(live_factory: LiveFactory) -> None:
    """Replies go through the same bounded outbox as fan-out: a client that keeps
    asking but never reads is shed instead of growing the server's buffer."""
    live = await live_factory(outbox_soft_bytes=16 * 1024, outbox_hard_bytes=64 * 1024,
                              req_rate=100_000, req_burst=100_000, shutdown_grace=60.0)
    big = [{"Key": f"k{i}", "Value": "v" * 512} for i in range(10)]
    gid = await live.room(AppDefinedData=big)
    raw = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(raw, "greedy")
        reply_size = len((await raw.request("getGroupInfo", 0, groupId=gid))["group"]
                         ["AppDefinedData"]) * 512
        count = MAX_BYTES // 4 // reply_size
        for start in range(1, count, 500):
            frames = b"".join(_request_frame(i, gid) for i in range(start, start + 500))
            await raw.loop.sock_sendall(raw.sock, frames)
        replies = 0
        while (frame := await asyncio.wait_for(raw.recv_json(), 10))["op"] == "reply":
            replies += 1
            assert replies < count, "every request was answered: the outbox is unbounded"
        assert frame == {"op": "kicked", "reason": "slow"}
        assert await raw.close_code() == 4008
        assert await metric(live, "livecast_connections_shed_total") == 1
    finally:
        raw.close()


def _request_frame(rid: int, gid: str) -> bytes:
    return encode_client_frame(OP_TEXT, b'{"op":"getGroupInfo","id":%d,"groupId":"%s"}'
                               % (rid, gid.encode()))
