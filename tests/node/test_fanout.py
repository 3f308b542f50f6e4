"""livecast/node/fanout.py, and the node's degrade-then-shed path, over real
transports (spec/rooms.md, Fan-out).

Each member is a real asyncio transport on one end of a socketpair. A member
whose peer never reads is stalled: its kernel buffers are filled first, so
everything written after that stays in the transport's write buffer and
``get_write_buffer_size`` moves exactly by what is written (no loop iteration
runs between the writes of one synchronous block). Reading the peer at the
end checks the bytes each member was given.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest

from livecast.core.fate import Address
from livecast.core.scheduler import Priority
from livecast.core.wsframe import frame
from livecast.node import node as node_module
from livecast.node.connection import Connection
from livecast.node.fanout import fanout
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.settings import Settings

FULL = frame(b'{"op":"msgs","msgs":["full"]}')
LITE = frame(b'{"op":"msgs","msgs":["lite"]}')


@dataclass
class Member:
    conn: Connection
    peer: socket.socket
    filler: int = 0                     # bytes written before the frames under test
    got: bytearray = field(default_factory=bytearray)

    @property
    def transport(self) -> Any:
        return self.conn.transport

    def stall(self) -> None:
        """Fill the kernel buffers; from now on writes stay in the transport."""
        chunk = b"\0" * 65536
        while self.transport.get_write_buffer_size() == 0:
            self.transport.write(chunk)
            self.filler += len(chunk)

    def top_up(self, size: int) -> None:
        """Grow the transport's buffer to exactly ``size`` bytes."""
        missing = size - self.transport.get_write_buffer_size()
        assert missing >= 0
        self.transport.write(b"\0" * missing)
        self.filler += missing
        assert self.conn.buffered() == size

    async def read(self, n: int) -> bytes:
        """Everything up to ``n`` bytes past the filler, read from the peer."""
        loop = asyncio.get_running_loop()
        while len(self.got) < self.filler + n:
            chunk = await loop.sock_recv(self.peer, 1 << 20)
            assert chunk, "peer closed early"
            self.got += chunk
        assert not any(self.got[:self.filler])
        return bytes(self.got[self.filler:])

    async def frames(self, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """WebSocket frames written past the filler, read until ``until`` holds."""
        loop = asyncio.get_running_loop()
        while not until(found := _ws_frames(await self.read(0))):
            chunk = await loop.sock_recv(self.peer, 1 << 20)
            assert chunk, "peer closed early"
            self.got += chunk
        return found


class _Quiet(asyncio.Protocol):
    pass


@pytest.fixture
async def members() -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for m in made:
        if not m.transport.is_closing():
            m.transport.abort()
        m.peer.close()


async def member(made: list[Member]) -> Member:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await asyncio.get_running_loop().create_unix_connection(_Quiet, sock=ours)
    m = Member(Connection(transport, "socketpair"), theirs)
    made.append(m)
    return m


async def logged_in(node: Node, made: list[Member], user: str) -> Member:
    """A member of ``made``, attached to ``node`` and logged in as ``user``."""
    m = await member(made)
    node.attach(m.conn)
    node.login(m.conn, user)
    return m


async def lagging_trio(made: list[Member]) -> tuple[Member, Member, Member, int, int]:
    """(fast, lagging, hopeless, soft, hard): lagging just past soft, hopeless past hard."""
    fast, lagging, hopeless = await member(made), await member(made), await member(made)
    lagging.stall()
    hopeless.stall()
    soft = max(lagging.conn.buffered(), hopeless.conn.buffered())
    hard = soft + 10_000
    lagging.top_up(soft + 1)
    hopeless.top_up(hard + 1)
    return fast, lagging, hopeless, soft, hard


async def test_full_to_readers_lite_to_laggards_and_shed_past_hard(
        members: list[Member]) -> None:
    fast, lagging, hopeless, soft, hard = await lagging_trio(members)
    result = fanout([fast.conn, lagging.conn, hopeless.conn], FULL, LITE, soft, hard)
    assert result == (1, 1, [hopeless.conn])
    assert lagging.conn.buffered() == soft + 1 + len(LITE)
    assert hopeless.conn.buffered() == hard + 1          # nothing more for a shed member
    assert await fast.read(len(FULL)) == FULL
    assert await lagging.read(len(LITE)) == LITE
    assert await hopeless.read(0) == b""


async def test_nothing_droppable_means_everyone_below_hard_gets_full(
        members: list[Member]) -> None:
    fast, lagging, hopeless, soft, hard = await lagging_trio(members)
    result = fanout([fast.conn, lagging.conn, hopeless.conn], FULL, None, soft, hard)
    assert result == (2, 0, [hopeless.conn])
    assert await fast.read(len(FULL)) == FULL
    assert await lagging.read(len(FULL)) == FULL


async def test_all_droppable_means_laggards_get_nothing(members: list[Member]) -> None:
    fast, lagging, hopeless, soft, hard = await lagging_trio(members)
    result = fanout([fast.conn, lagging.conn, hopeless.conn], FULL, b"", soft, hard)
    assert result == (1, 1, [hopeless.conn])
    assert lagging.conn.buffered() == soft + 1
    assert await fast.read(len(FULL)) == FULL


async def test_thresholds_are_inclusive(members: list[Member]) -> None:
    """A buffer exactly at soft still gets full; exactly at hard gets lite, not shed."""
    at_soft, at_hard = await member(members), await member(members)
    at_soft.stall()
    at_hard.stall()
    soft = max(at_soft.conn.buffered(), at_hard.conn.buffered())
    hard = soft + 5000
    at_soft.top_up(soft)
    at_hard.top_up(hard)
    assert fanout([at_soft.conn, at_hard.conn], FULL, LITE, soft, hard) == (1, 1, [])
    assert await at_soft.read(len(FULL)) == FULL
    assert await at_hard.read(len(LITE)) == LITE


async def test_closing_members_are_skipped(members: list[Member]) -> None:
    open_, closing = await member(members), await member(members)
    closing.transport.close()
    assert fanout([closing.conn, open_.conn], FULL, LITE, 100, 200) == (1, 0, [])
    assert await open_.read(len(FULL)) == FULL


async def test_same_bytes_object_is_written_to_every_member(members: list[Member]) -> None:
    many = [await member(members) for _ in range(20)]
    assert fanout([m.conn for m in many], FULL, LITE, 1 << 20, 2 << 20) == (20, 0, [])
    for m in many:
        assert await m.read(len(FULL)) == FULL


# ------------------------------------------------------------- through the node
def _ws_frames(data: bytes) -> list[dict[str, Any]]:
    """Decode the unmasked text frames of ``data`` (server to client)."""
    out = []
    while data:
        n = data[1] & 0x7F
        start = 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(data[2:10], "big"), 10
        out.append(orjson.loads(data[start:start + n]))
        data = data[start + n:]
    return out


async def test_node_degrades_a_lagging_member_then_sheds_it(members: list[Member]) -> None:
    node = Node(replace(Settings(), room_rate=100, room_burst=100))
    await node.start()  # its broker delivers the room's batches to this process
    try:
        await _degrade_then_shed(node, members)
    finally:
        await node.close_collaborators()


async def _degrade_then_shed(node: Node, members: list[Member]) -> None:
    await node.create_group("administrator", {"Name": "r"}, "r")
    fast, lagging = await member(members), await member(members)
    for m, user in ((fast, "fast"), (lagging, "lagging")):
        node.attach(m.conn)
        node.login(m.conn, user)
        node.join(m.conn, "r")
    lagging.stall()
    soft = lagging.conn.buffered()
    hard = soft + 4096
    lagging.top_up(soft + 1)
    node.settings = replace(node.settings, outbox_soft_bytes=soft, outbox_hard_bytes=hard)
    sample = node.metrics.registry.get_sample_value

    async def tick(*batch: tuple[Priority, int]) -> list[int]:
        """Submit ``batch`` (priority, text size) at once; the seqs it was given."""
        answers = []
        for p, size in batch:
            body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * size}}]
            waiter, answer = node.rest_waiter()  # its fate, answered as a REST call's
            node.submit("r", Outgoing("fast", "", "", p, 0, body, "", Address(rest=waiter)))
            answers.append(answer)
        return [a["MsgSeq"] for a in await asyncio.gather(*answers)]

    # past soft: the laggard gets the tick's batch without its Low message
    assert await tick((Priority.NORMAL, 10), (Priority.LOW, 10)) == [1, 2]
    assert sample("livecast_frames_degraded_total") == 1
    assert not lagging.conn.closing
    # a big Normal message still reaches it, and leaves it past hard
    assert await tick((Priority.NORMAL, hard)) == [3]
    assert lagging.conn.buffered() > hard and not lagging.conn.closing
    # the next tick sheds it: kicked "slow", close 4008, no longer a member
    assert await tick((Priority.NORMAL, 10)) == [4]
    assert lagging.conn.closing and lagging.conn.close_code == 4008
    assert sample("livecast_connections_shed_total") == 1
    assert node.online("r") == 1

    fast_frames = await fast.frames(until=lambda fs: _seqs(fs)[-1:] == [4])
    assert [(m["seq"], m["priority"]) for f in fast_frames for m in f["msgs"]] == [
        (1, "Normal"), (2, "Low"), (3, "Normal"), (4, "Normal")]
    lag_frames = await lagging.frames(until=lambda fs: bool(fs) and fs[-1]["op"] == "_close")
    assert _seqs(lag_frames) == [1, 3]
    assert lag_frames[-2:] == [{"op": "kicked", "reason": "slow"}, {"op": "_close", "code": 4008}]


def _seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for f in frames if f["op"] == "msgs" for m in f["msgs"]]


def _ws_frames(data: bytes) -> list[dict[str, Any]]:
    """Decode the complete unmasked frames of ``data`` (server to client);
    a close frame becomes ``{"op": "_close", "code": ..}``."""
    out: list[dict[str, Any]] = []
    while len(data) >= 2:
        n, start = data[1] & 0x7F, 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(data[2:10], "big"), 10
        if len(data) < start + n:
            break
        payload = data[start:start + n]
        if data[0] & 0x0F == 0x8:
            out.append({"op": "_close", "code": int.from_bytes(payload[:2], "big")})
        else:
            out.append(orjson.loads(payload))
        data = data[start + n:]
    return out


async def test_profiles_stay_bounded_and_keep_those_in_session(
        members: list[Member], monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-user tables do not grow with every user ever seen (connection cycles)."""
    monkeypatch.setattr("livecast.node.hub.MAX_PROFILES", 5)
    node = Node(Settings())
    online = await member(members)
    node.attach(online.conn)
    node.login(online.conn, "online")
    node.hub.set_profile("online", "Still here", "")
    for i in range(20):
        node.hub.set_profile(f"gone{i}", f"nick{i}", "")
    assert len(node.profiles) == 5
    assert node.profiles["online"] == ("Still here", "")  # in session: kept
    assert "gone19" in node.profiles and "gone0" not in node.profiles  # newest kept


# ------------------------------------------- the sender's frame and its reply
async def test_the_held_member_gets_no_write_until_its_next_one(members: list[Member]) -> None:
    sender, other = await member(members), await member(members)
    assert fanout([sender.conn, other.conn], FULL, LITE, 1 << 20, 2 << 20,
                  hold=sender.conn) == (2, 0, [])
    assert sender.conn.held == FULL and other.conn.held == b""
    assert await other.read(len(FULL)) == FULL
    reply = frame(b'{"op":"reply"}')
    sender.conn.write(reply)  # the frame, then the reply, in one write
    assert sender.conn.held == b""
    assert await sender.read(len(FULL + reply)) == FULL + reply


async def test_a_lagging_held_member_is_degraded_as_any_other(members: list[Member]) -> None:
    fast, lagging, _hopeless, soft, hard = await lagging_trio(members)
    assert fanout([fast.conn, lagging.conn], FULL, LITE, soft, hard,
                  hold=lagging.conn) == (1, 1, [])
    assert lagging.conn.held == b""  # only a member with nothing waiting is held
    assert lagging.conn.buffered() == soft + 1 + len(LITE)


class _Counting:
    """A transport that records each write (the writes are the syscalls)."""

    def __init__(self, transport: Any) -> None:
        self.inner = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _room_of_two(node: Node, members: list[Member]) -> tuple[Member, Member]:
    await node.create_group("administrator", {"Name": "r"}, "r")
    pair = []
    for user in ("sender", "viewer"):
        m = await member(members)
        m.conn.transport = _Counting(m.conn.transport)
        node.attach(m.conn)
        node.login(m.conn, user)
        node.join(m.conn, "r")
        pair.append(m)
    for m in pair:  # the join tips are out: what follows is the message's
        m.conn.transport.writes.clear()
    return pair[0], pair[1]


def _send(node: Node, sender: Member, request: int) -> None:
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
    node.submit("r", Outgoing("sender", "", "", Priority.NORMAL, 5, body, "",
                              Address(conn=sender.conn.id, request=request)))


async def test_the_sender_gets_its_echo_then_its_reply_in_one_write(
        members: list[Member]) -> None:
    """docs/protocol.md: the echo comes before the reply; they leave together."""
    node = Node(Settings())
    await node.start()
    try:
        sender, viewer = await _room_of_two(node, members)
        _send(node, sender, 7)
        frames = await sender.frames(until=lambda fs: any(f["op"] == "reply" for f in fs))
        assert [f["op"] for f in frames if f["op"] in ("msgs", "reply")] == ["msgs", "reply"]
        assert frames[-1]["id"] == 7 and frames[-1]["code"] == 0
        # the write that carries them carries nothing else of the tick (a
        # join tip's flush may come in a write of its own)
        carrying = [fs for fs in map(_ws_frames, sender.conn.transport.writes)
                    if any(f["op"] in ("msgs", "reply") for f in fs)]
        assert carrying == [frames[-2:]]
        seen = await viewer.frames(until=lambda fs: any(f["op"] == "msgs" for f in fs))
        assert [m["seq"] for f in seen if f["op"] == "msgs" for m in f["msgs"]] == [
            frames[-1]["msgSeq"]]
    finally:
        await node.close_collaborators()


async def test_a_sender_whose_answer_fails_still_gets_the_frame(
        members: list[Member], monkeypatch: pytest.MonkeyPatch) -> None:
    """The held frame is written when the tick's fates are settled, reply or not."""
    node = Node(Settings())
    await node.start()
    try:
        sender, _viewer = await _room_of_two(node, members)

        def broken(*args: Any) -> Any:
            raise RuntimeError("the answer failed")
        monkeypatch.setattr(node, "answer", broken)  # the answer's two ways: through
        monkeypatch.setattr(node_module, "delivered_reply", broken)  # ``answer``, or here
        _send(node, sender, 8)
        frames = await sender.frames(until=lambda fs: any(f["op"] == "msgs" for f in fs))
        assert not [f for f in frames if f["op"] == "reply"]
        assert sender.conn.held == b""
    finally:
        await node.close_collaborators()
