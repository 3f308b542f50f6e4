"""The Python client (livecast/client.py): recovery across a reconnect and
replies matched to requests, against a real server on loopback (and, for a
reply held back on purpose, a real aiohttp server speaking just that much of
the protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web

from livecast.client import Client, ClientClosed, text
from tests.conftest import SDKAPPID, Live, sig
from tests.node.test_history import ROOM, send_n, seqs_until


async def until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Wait until ``condition`` holds (the client's reader task makes it so)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # polling a state, bounded by ``within``


async def test_a_room_quit_is_not_rejoined_on_reconnect(live: Live) -> None:
    await live.room(ROOM)
    await live.room("kept")
    bob = await live.client("bob", ROOM)
    assert (await bob.join("kept"))["code"] == 0
    assert (await bob.quit(ROOM))["code"] == 0
    bob.drop()
    await bob.wait_closed()
    replies = await bob.reconnect(SDKAPPID, "bob", sig("bob"))
    assert list(replies) == ["kept"] and replies["kept"]["code"] == 0
    assert (await bob.get_online_member_num(ROOM))["onlineMemberNum"] == 0
    assert (await bob.get_online_member_num("kept"))["onlineMemberNum"] == 1


async def test_pushes_not_read_yet_survive_a_reconnect(live: Live) -> None:
    """Three messages received but not read when the connection is lost: after
    the reconnect they are read first, then the ones missed meanwhile, then
    live ones; each seq once (the position had moved past the three, so the
    rejoin's sinceSeq could not bring them back)."""
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    viewer = await live.client("bob", ROOM)
    await send_n(sender, 3)
    await until(lambda: viewer.positions[ROOM][1] == 3, "bob received seqs 1 to 3")
    viewer.drop()
    await viewer.wait_closed()
    await send_n(sender, 2, start=3)  # 4, 5 while bob is away
    replies = await viewer.reconnect(SDKAPPID, "bob", sig("bob"))
    assert replies[ROOM]["code"] == 0 and replies[ROOM]["recovered"] is True
    await send_n(sender, 2, start=5)  # 6, 7 live
    assert await seqs_until(viewer, 7) == [1, 2, 3, 4, 5, 6, 7]


def _reply(frame: dict[str, Any], **fields: Any) -> str:
    return orjson.dumps({"op": "reply", "id": frame["id"], "code": 0, **fields}).decode()


@contextlib.asynccontextmanager
async def serve_ws(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> AsyncIterator[str]:
    """A real aiohttp app on loopback serving ``handler`` at /v1/ws: its URL."""
    app = web.Application()
    app.router.add_get("/v1/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/v1/ws"
    finally:
        await runner.cleanup()


@pytest.fixture
async def held() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A WebSocket server that answers every request at once but ``send``,
    whose reply it holds until the event is set; after that reply it pushes
    a ``tips`` frame, so that what the client queues after it is known."""
    release = asyncio.Event()

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            if frame["op"] == "send":
                await release.wait()
                await sock.send_str(_reply(frame, msgSeq=1))
                await sock.send_str(orjson.dumps(
                    {"op": "tips", "groupId": ROOM, "tips": [{"type": "marker"}]}).decode())
            else:
                await sock.send_str(_reply(frame))
        return sock

    async with serve_ws(ws) as url:
        yield url, release
        release.set()


async def test_a_reply_after_its_request_gave_up_is_dropped_not_pushed(
        held: tuple[str, asyncio.Event]) -> None:
    url, release = held
    async with Client(url, timeout=0.2) as c:
        assert (await c.ping())["code"] == 0
        with pytest.raises(TimeoutError):  # the server holds the reply back
            await c.send(ROOM, text("late"))
        release.set()
        push = await c.next_push(within=10)
        assert push["op"] == "tips" and push["tips"] == [{"type": "marker"}]
        assert c.late_replies == 1
        assert (await c.ping())["code"] == 0  # and requests still get their replies


async def test_joining_a_room_again_with_history_does_not_repeat_what_was_seen(
        live: Live) -> None:
    """``positions`` is the no-duplicate line for a join's messages too: a room
    joined again with ``history`` pushes only what is past it."""
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    viewer = await live.client("bob", ROOM)
    await send_n(sender, 3)
    assert await seqs_until(viewer, 3) == [1, 2, 3]
    again = await viewer.join(ROOM, history=5)
    assert [m["seq"] for m in again["msgs"]] == [1, 2, 3]  # the reply holds them all
    await send_n(sender, 1, start=3)
    assert await seqs_until(viewer, 4) == [4]
    assert viewer.positions[ROOM][1] == 4


async def test_a_request_made_as_the_connection_goes_raises_client_closed(live: Live) -> None:
    """Cut while the reader has not yet seen the end: the write's own error is
    ``ClientClosed``, as every request's once closed; the join in flight is
    forgotten with it."""
    await live.room(ROOM)
    bob = await live.client("bob", ROOM)
    pending = asyncio.ensure_future(bob.join("other"))
    await asyncio.sleep(0)  # one loop iteration: the task writes the join, then waits
    assert list(bob._joins.values()) == [("other", None)]  # on its way, its reply not read
    bob.drop()
    with pytest.raises(ClientClosed) as closed:
        await bob.send(ROOM, text("as it went"))
    assert closed.value.code is not None
    with pytest.raises(ClientClosed):
        await pending
    await bob.wait_closed()
    assert bob._joins == {}


def _msg(seq: int) -> dict[str, Any]:
    return {"seq": seq, "time": 1, "from": "alice", "priority": "Normal", "random": seq,
            "msgBody": text(f"m{seq}")}


@pytest.fixture
async def lagged() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, int]]]:
    """A WebSocket server whose join pushes seqs 1, 2 and 5 (3 and 4, Low,
    left out as for a lagging member); a join with ``sinceSeq`` is answered
    with every seq after it up to the room's newest (5, or ``top["seq"]``),
    as the room's history holds them.  The join frames it got are listed."""
    joins: list[dict[str, Any]] = []
    top = {"seq": 5}

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            frame = orjson.loads(msg.data)
            if frame["op"] != "join":
                await sock.send_str(_reply(frame))
                continue
            joins.append(frame)
            if "sinceSeq" in frame:
                held = [_msg(s) for s in range(frame["sinceSeq"] + 1, top["seq"] + 1)]
                await sock.send_str(_reply(frame, historyEpoch=7, lastSeq=top["seq"],
                                           recovered=True, msgs=held))
                continue
            await sock.send_str(_reply(frame, historyEpoch=7, lastSeq=0))
            for seqs in ([1, 2], [5]):
                await sock.send_str(orjson.dumps({"op": "msgs", "groupId": ROOM,
                                                  "msgs": [_msg(s) for s in seqs]}).decode())
        return sock

    async with serve_ws(ws) as url:
        yield url, joins, top


async def test_rejoin_fetches_the_seqs_a_push_skipped_and_nothing_seen(
        lagged: tuple[str, list[dict[str, Any]], dict[str, int]]) -> None:
    url, joins, _top = lagged
    async with Client(url) as c:
        assert (await c.join(ROOM))["code"] == 0
        seen = [m["seq"] for _ in range(2) for m in (await c.next_push("msgs", 10))["msgs"]]
        assert seen == [1, 2, 5] and c.positions[ROOM] == (7, 5)
        assert c.gaps[ROOM] == (3, {5})
        await c.rejoin(ROOM)
        assert joins[-1]["sinceSeq"] == 2  # from the first seq missed
        recovered = await c.next_push("msgs", 10)
        assert [m["seq"] for m in recovered["msgs"]] == [3, 4]  # 5 was seen already
        assert recovered["recovered"] is True
        assert ROOM not in c.gaps and c.positions[ROOM] == (7, 5)
        await c.rejoin(ROOM)
        assert joins[-1]["sinceSeq"] == 5  # no gap left: from the last seq seen


async def test_a_reconnect_asks_from_the_last_seq_seen_and_keeps_the_gap(
        lagged: tuple[str, list[dict[str, Any]], dict[str, int]]) -> None:
    """A gap's first seq may be held no more when the connection comes back:
    asking from it could then lose what came while away, so ``reconnect``
    asks from the last seq seen; the gap stays for ``rejoin`` to ask."""
    url, joins, _top = lagged
    async with Client(url) as c:
        assert (await c.join(ROOM))["code"] == 0
        seen = [m["seq"] for _ in range(2) for m in (await c.next_push("msgs", 10))["msgs"]]
        assert seen == [1, 2, 5] and c.gaps[ROOM] == (3, {5})
        c.drop()
        await c.wait_closed()
        replies = await c.reconnect(SDKAPPID)
        assert replies[ROOM]["recovered"] is True
        assert joins[-1]["sinceSeq"] == 5 and c.gaps[ROOM] == (3, {5})
        await c.rejoin(ROOM)
        assert joins[-1]["sinceSeq"] == 2 and ROOM not in c.gaps


async def test_what_a_reconnect_recovered_is_not_pushed_again_by_the_gap_s_rejoin(
        lagged: tuple[str, list[dict[str, Any]], dict[str, int]]) -> None:
    url, joins, top = lagged
    async with Client(url) as c:
        assert (await c.join(ROOM))["code"] == 0
        for _ in range(2):
            await c.next_push("msgs", 10)
        assert c.gaps[ROOM] == (3, {5})
        c.drop()
        await c.wait_closed()
        top["seq"] = 7  # 6 and 7 were sent while it was away
        await c.reconnect(SDKAPPID)
        recovered = [m["seq"] for m in (await c.next_push("msgs", 10))["msgs"]]
        assert recovered == [6, 7] and joins[-1]["sinceSeq"] == 5
        await c.rejoin(ROOM)
        fetched = [m["seq"] for m in (await c.next_push("msgs", 10))["msgs"]]
        assert fetched == [3, 4] and c.positions[ROOM] == (7, 7)
