"""Fuzzing the WebSocket endpoint (spec/websocket.md, Transport; STYLE.md habit 1:
remote misbehaviour becomes a reply code or a close code, never a crash).

Hypothesis throws random frames at one live server over three connections at a
time: random JSON values, objects with known or random ops and fields of
random types, plausible requests (login, join, send), random text and random
binary frames. A connection the server closes is reopened. Every frame the
server sends must be a JSON object with a known ``op``; every close must carry
one of the codes a misbehaving client can earn; the server must log no error;
and after each example a fresh client must still log in, join, send and
receive its own message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.client import custom, text
from livecast.core.protocol import MAX_FRAME_BYTES
from livecast.gateway.ws import OPS
from tests.conftest import SDKAPPID, Live, LiveFactory, sig
from tests.strategies import json_trees

ROOM = "fuzz"
USERS = ("fz0", "fz1", "fz2")
SIGS = {u: sig(u) for u in USERS}
CONNECTIONS = 3
# codes a client earns by misbehaving: frame too large, login failed, a newer
# login of the same user, protocol violations, request flood
ALLOWED_CLOSES = {1009, 4001, 4003, 4009, 4029}
PUSH_OPS = {"reply", "msgs", "tips", "kicked"}

Frame = tuple[str, Any]      # ("text", str), ("binary", bytes) or ("burst", n pings)


class Big(str):
    """A long text frame that shows itself briefly in Hypothesis reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} chars: {str.__repr__(self[:30])}...>"


json_values = json_trees(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    max_leaves=8)
ids = st.none() | st.integers(-2**70, 2**70) | st.text(max_size=70) | st.booleans() | st.floats()
bodies = st.sampled_from([text("hi"), custom("d", "like"), [], "hi",
                          [{"MsgType": "TIMTextElem"}], [{"MsgType": "TIMFaceElem",
                                                         "MsgContent": {"Index": 1.5}}]])
FIELDS = {
    "id": ids,
    "groupId": st.sampled_from([ROOM, "nope", "", "x" * 49]) | json_values,
    "msgBody": bodies | json_values,
    "priority": st.sampled_from(["High", "Normal", "Low", "Lowest", "urgent"]) | json_values,
    "random": st.integers(-1, 2**33) | json_values,
    "cloudCustomData": st.text(max_size=20) | json_values,
    "sdkAppId": st.sampled_from([SDKAPPID, 1]) | json_values,
    "userId": st.sampled_from(USERS) | json_values,
    "userSig": st.sampled_from([*SIGS.values(), "", "garbage"]) | json_values,
    "nick": st.text(max_size=70) | json_values,
    "avatar": st.text(max_size=20) | json_values,
}
ops = st.sampled_from(sorted(OPS)) | st.text(max_size=10) | json_values
random_objects = st.fixed_dictionaries({"op": ops}, optional=FIELDS)
logins = st.sampled_from(USERS).map(lambda u: {"op": "login", "id": "l", "sdkAppId": SDKAPPID,
                                               "userId": u, "userSig": SIGS[u]})
requests = st.one_of(
    logins,
    st.sampled_from(USERS).map(lambda u: {"op": "login", "id": "f", "sdkAppId": SDKAPPID,
                                          "userId": u, "userSig": "garbage"}),
    st.just({"op": "join", "id": "j", "groupId": ROOM}),
    st.builds(lambda body, p: {"op": "send", "id": "s", "groupId": ROOM, "msgBody": body,
                               "priority": p},
              bodies, st.sampled_from(["High", "Normal", "Low", "Lowest"])),
)
small_frames: st.SearchStrategy[Frame] = st.one_of(
    random_objects.map(lambda o: ("text", json.dumps(o))),
    requests.map(lambda o: ("text", json.dumps(o))),
    json_values.map(lambda v: ("text", json.dumps(v))),
    st.text(max_size=40).map(lambda s: ("text", s)),
    st.binary(max_size=40).map(lambda b: ("binary", b)),
)
rare_frames = st.sampled_from([("text", Big('"' + "x" * 70_000 + '"')),
                               ("text", Big('{"op":"ping","id":"big","p":"' + "x" * 65_000
                                            + '"}')),
                               ("burst", 40)])
# big frames (1009) and request bursts (4029) are one draw in sixteen
frames = st.one_of(*[small_frames] * 15, rare_frames)


class FuzzConn:
    """One connection under fuzz: a reader task checks everything the server sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.problems: list[str] = []
        self.answered = asyncio.Event()
        self.sent_big = False
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                self.problems.append(f"non-text frame {msg.type}")
                continue
            obj = orjson.loads(msg.data)
            if not isinstance(obj, dict) or obj.get("op") not in PUSH_OPS:
                self.problems.append(f"unexpected frame {msg.data[:200]!r}")
            elif obj["op"] == "reply" and not isinstance(obj.get("code"), int):
                self.problems.append(f"reply without a code {msg.data[:200]!r}")
            elif obj["op"] == "reply" and obj.get("id") == "last":
                self.answered.set()

    async def send(self, frame: Frame) -> bool:
        """Send one frame; False once the server has closed this connection."""
        kind, data = frame
        if self.task.done() or self.ws.closed:
            return False
        self.sent_big |= kind == "text" and len(data) > MAX_FRAME_BYTES
        try:
            if kind == "text":
                await self.ws.send_str(data)
            elif kind == "binary":
                await self.ws.send_bytes(data)
            else:
                for i in range(data):
                    await self.ws.send_str(f'{{"op":"ping","id":{i}}}')
        except ConnectionResetError:
            return False
        return True

    async def finish(self) -> int | None:
        """Ping; the close code if the server closed the connection, else None."""
        if await self.send(("text", '{"op":"ping","id":"last"}')):
            answered = asyncio.ensure_future(self.answered.wait())
            await asyncio.wait([answered, self.task], timeout=5,
                               return_when=asyncio.FIRST_COMPLETED)
            answered.cancel()
            if not self.task.done():
                if not self.answered.is_set():
                    self.problems.append("a ping got neither a reply nor a close")
                await self.ws.close()
                await self.task
                return None
        await asyncio.wait_for(self.task, 5)
        if self.sent_big and self.ws.close_code == 1006:
            # aiohttp's reader refuses the frame: it sends 1009 and drops the
            # socket at once, so the client's answering close may fail (1006)
            return 1009
        return self.ws.close_code


async def _fresh_client_works(live: Live) -> None:
    c = await live.client()
    try:
        assert (await c.login(SDKAPPID, "checker", sig("checker")))["code"] == 0
        assert (await c.join(ROOM))["code"] == 0
        r = await c.send(ROOM, text("still alive"), priority="High")
        assert r["code"] == 0 and r["msgSeq"] > 0, r
        while True:
            push = await c.next_push("msgs")
            if any(m["seq"] == r["msgSeq"] and m["from"] == "checker" for m in push["msgs"]):
                break
    finally:
        await c.close()
        live.clients.remove(c)


async def _run(live: Live, http: aiohttp.ClientSession, plan: list[tuple[int, Frame]]) -> None:
    conns = [FuzzConn(await http.ws_connect(live.ws_url)) for _ in range(CONNECTIONS)]
    closes: list[int | None] = []
    problems: list[str] = []
    for index, frame in plan:
        if not await conns[index].send(frame):
            closes.append(await conns[index].finish())
            problems += conns[index].problems
            conns[index] = FuzzConn(await http.ws_connect(live.ws_url))
            await conns[index].send(frame)
    for conn in conns:
        code = await conn.finish()
        if code is not None:
            closes.append(code)
        problems += conn.problems
    assert problems == []
    assert set(closes) <= ALLOWED_CLOSES, closes


@pytest.fixture
async def fuzz_live(live_factory: LiveFactory) -> Live:
    live = await live_factory(room_rate=100_000, room_burst=100_000, violation_limit=5,
                              req_rate=100.0, req_burst=15)
    await live.room(ROOM)
    return live


@pytest.mark.timeout(600)  # passing takes seconds; shrinking a failure can take minutes
@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(plan=st.lists(st.tuples(st.integers(0, CONNECTIONS - 1), frames), min_size=25,
                     max_size=80))
async def test_random_frames_never_break_the_server(
        fuzz_live: Live, caplog: pytest.LogCaptureFixture,
        plan: list[tuple[int, Frame]]) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()
    async with aiohttp.ClientSession() as http:
        await _run(fuzz_live, http, plan)
    await _fresh_client_works(fuzz_live)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
