"""The bench's raw writer server, run as the bench runs it (a subprocess on
loopback), with and without ``--steps`` (the contract's steps added to each
send), driven by a real WebSocket client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from livecast.bench.server import baseline_command, free_port, start, stop
from livecast.core.protocol import FrameError, parse_frame
from livecast.core.usersig import mint
from livecast.errors import Code
from livecast.gateway.ws import OPS

BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


async def _server(steps: bool) -> AsyncIterator[str]:
    port = free_port()
    argv, env = baseline_command(port, 100, steps=steps)
    server = await start("floor" if steps else "baseline", argv, env, port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await stop(server)


@pytest.fixture
async def floor() -> AsyncIterator[str]:
    async for url in _server(steps=True):
        yield url


@pytest.fixture
async def raw() -> AsyncIterator[str]:
    async for url in _server(steps=False):
        yield url


async def _member(http: aiohttp.ClientSession, url: str, user: str,
                  gid: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url)  # the raw writer checks no signature: any key will do
    await ws.send_str(_text({"op": "login", "id": 1, "sdkAppId": 1400000000, "userId": user,
                             "userSig": mint(1400000000, "k" * 32, user, time.time())}))
    assert (await _next(ws, "reply"))["code"] == 0
    await ws.send_str(_text({"op": "join", "id": 2, "groupId": gid}))
    assert (await _next(ws, "reply"))["code"] == 0
    return ws


def _text(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


async def _next(ws: aiohttp.ClientWebSocketResponse, op: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        data: dict[str, Any] = orjson.loads(msg.data)
        if data["op"] == op:
            return data


async def test_with_steps_a_send_is_delivered_through_the_scheduler_and_answered(
        floor: str) -> None:
    async with aiohttp.ClientSession() as http:
        sender = await _member(http, floor, "alice", "room-1")
        viewer = await _member(http, floor, "bob", "room-1")
        for rid in (10, 11):
            await sender.send_str(_text({"op": "send", "id": rid, "groupId": "room-1",
                                                  "msgBody": BODY, "random": rid}))
            echo = await _next(sender, "msgs")
            answer = await _next(sender, "reply")
            seen = await _next(viewer, "msgs")
            assert echo == seen and seen["groupId"] == "room-1"
            [m] = seen["msgs"]
            assert (m["seq"], m["from"], m["random"], m["msgBody"]) == (rid - 9, "alice", rid,
                                                                         BODY)
            assert (answer["id"], answer["code"], answer["msgSeq"]) == (rid, 0, rid - 9)


async def test_with_steps_a_refused_send_gets_livecasts_code_and_goes_nowhere(
        floor: str, raw: str) -> None:
    bad = {"op": "send", "id": 7, "groupId": "room-2", "msgBody": BODY, "priority": "Urgent"}
    expected = parse_frame(orjson.dumps(bad), OPS)
    assert isinstance(expected, FrameError)
    async with aiohttp.ClientSession() as http:
        sender = await _member(http, floor, "alice", "room-2")
        await sender.send_str(_text(bad))
        answer = await _next(sender, "reply")
        assert (answer["id"], answer["code"]) == (7, expected.code)
        await sender.send_str(_text({**bad, "id": 8, "priority": "High"}))
        [m] = (await _next(sender, "msgs"))["msgs"]  # the next frame is the good send's
        assert (m["seq"], m["priority"]) == (1, "High")
        assert (await _next(sender, "reply"))["id"] == 8
        # the send rule: a connection that has not joined the room may not send to it
        await sender.send_str(_text({**bad, "id": 9, "priority": "Low", "groupId": "room-3"}))
        answer = await _next(sender, "reply")
        assert (answer["id"], answer["code"]) == (9, Code.NO_PERMISSION)
        # the raw writer validates nothing: the same frame goes out
        raw_sender = await _member(http, raw, "alice", "room-2")
        await raw_sender.send_str(_text(bad))
        [m] = (await _next(raw_sender, "msgs"))["msgs"]
        assert (m["seq"], m["priority"]) == (1, "Urgent")
