"""Random replies from the business backend (docs/webhooks.md, "Your replies"
and "When your backend is slow or down").

A real aiohttp backend answers every callback with what Hypothesis draws: an
HTTP status (200 or another), a body (a well-formed reply with any
``ErrorCode``/``ErrorInfo`` and a valid or invalid replacement, an oversized
one, invalid JSON, HTML, empty, random bytes) and a short delay well inside
the callback timeout.  A real member sends a message (before-send) or joins
the room (before-join), and the outcome must be the one the documented
table gives for that reply, or the failure policy's (fail open: deliver or
join; ``LIVECAST_CALLBACK_FAIL_CLOSED=1``: 80003) when the table calls the
reply a failed callback.  After-events get the same random replies and must
change nothing.  Afterwards the server still serves and logged no error.

The expected outcome is computed here from the documentation's rules, not by
livecast's parser; replacements come from pools whose validity the
documentation states (docs/protocol.md, "Message elements").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livecast.client import Client, custom, text
from tests.conftest import Live, LiveFactory
from tests.webhooks.conftest import serve_callbacks

ROOM = "replies"
MAX_REPLY = 256 * 1024
FAILED = ("failed",)
Outcome = tuple[Any, ...]   # ("allow", body) | ("refuse", code) | ("drop",) | FAILED

VALID_BODIES = [text("replaced"), custom('{"a":1}', "d"), [*text("a"), *text("b")],
                [{"MsgType": "TIMFaceElem", "MsgContent": {"Index": 3}}]]
INVALID_BODIES = [[], "text", {"MsgType": "TIMTextElem"}, [{"MsgType": "TIMRelayElem",
                                                             "MsgContent": {}}],
                  [*custom("a"), *custom("b")], [{"MsgType": "TIMTextElem",
                                                  "MsgContent": {"Text": 5}}],
                  text("x" * 12289), [{"MsgType": "TIMTextElem"}] * 33]
codes = st.sampled_from([0, 1, 2, 10099, 10100, 10150, 10200, 10201, -1, 80003, 2**40]) | st.one_of(
    st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False), st.text(max_size=5))
infos = st.sampled_from(["", "nope", "<b>html</b>", "é" * 10]) | st.none() | st.integers()


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A JSON object reply: ErrorCode, ErrorInfo and maybe a replacement."""
    reply: dict[str, Any] = {"ActionStatus": draw(st.sampled_from(["OK", "FAIL", 7]))}
    if draw(st.integers(0, 15)):
        reply["ErrorCode"] = draw(codes)
    if draw(st.booleans()):
        reply["ErrorInfo"] = draw(infos)
    if draw(st.booleans()):
        reply["MsgBody"] = draw(st.sampled_from([None, *VALID_BODIES, *INVALID_BODIES]))
    if draw(st.booleans()):
        reply["CloudCustomData"] = draw(st.sampled_from([None, "", "ccd", 5, ["x"], "y" * 13000]))
    if draw(st.integers(0, 20)) == 0:
        reply["Pad"] = "p" * (MAX_REPLY + 10)
    return json.dumps(reply).encode()   # json: integers past 64 bits too


raw_bodies = st.one_of(
    structured(),
    st.sampled_from([b"", b"<html><body>502 Bad Gateway</body></html>", b"null", b"[]",
                     b'"OK"', b"0", b'{"ErrorCode": 0', b'{"ErrorCode": NaN}',
                     b'{"ErrorCode": 1e400}', b'{"ErrorCode": 18446744073709551616}',
                     b'\xff\xfe{"ErrorCode": 0}', b"{}" * 2]),
    st.binary(max_size=40),
)
statuses = st.sampled_from([200] * 6 + [201, 204, 301, 400, 404, 429, 500, 502, 503])
delays = st.sampled_from([0.0] * 6 + [0.05, 0.2])


@dataclass
class Reply:
    status: int
    data: bytes
    delay: float


replies = st.builds(Reply, statuses, raw_bodies, delays)


def _doc_verdict(reply: Reply, join: bool) -> Outcome:
    """The documented outcome of ``reply`` to a before-join or before-send."""
    if reply.status != 200 or len(reply.data) > MAX_REPLY:
        return FAILED
    try:
        obj = orjson.loads(reply.data.removeprefix(b"\xef\xbb\xbf"))  # a BOM is skipped
    except orjson.JSONDecodeError:
        return FAILED
    if not isinstance(obj, dict):
        return FAILED
    code, info = obj.get("ErrorCode"), obj.get("ErrorInfo")
    if info is None:  # absent or null: read as empty
        info = ""
    if type(code) is not int or not isinstance(info, str):
        return FAILED
    if code == 1:
        return ("refuse", 10016)
    if 10100 <= code <= 10200:
        return ("refuse", code)
    if join:
        return ("allow", None) if code == 0 else FAILED
    if code == 2:
        return ("drop",)
    return _replacement(obj) if code == 0 else FAILED


def _replacement(obj: dict[str, Any]) -> Outcome:
    body = obj.get("MsgBody")
    ccd = obj.get("CloudCustomData")
    if body is not None and not any(body == v for v in VALID_BODIES):
        return FAILED
    if ccd is not None and not isinstance(ccd, str):
        return FAILED
    final_body = SENT if body is None else body
    final_ccd = "" if ccd is None else ccd
    size = len(orjson.dumps(final_body)) + len(final_ccd.encode())
    return ("allow", final_body) if size <= 12288 else FAILED


SENT = text("original")


class FuzzBackend:
    """Answers every callback with ``reply``; counts the callbacks it answered."""

    def __init__(self) -> None:
        self.reply = Reply(200, b'{"ErrorCode":0}', 0.0)
        self.calls = 0
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.calls += 1
        reply = self.reply
        if reply.delay:
            await asyncio.sleep(reply.delay)  # a slow backend, well inside the timeout
        return web.Response(status=reply.status, body=reply.data,
                            content_type="application/json")


@pytest.fixture
async def backend() -> AsyncIterator[FuzzBackend]:
    b = FuzzBackend()
    b.server = await serve_callbacks(b.handle)
    yield b
    await b.server.close()


OK_REPLY = Reply(200, b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}', 0.0)


class Member:
    """The member under test, its server and backend; ``n`` makes each Random unique."""

    def __init__(self, live: Live, backend: FuzzBackend, fail_closed: bool) -> None:
        self.live = live
        self.backend = backend
        self.fail_closed = fail_closed
        self.client: Client | None = None
        self.joined = False
        self.n = 0

    async def ready(self, in_room: bool) -> Client:
        """A logged-in member, in the room or not, set up under an OK backend."""
        self.backend.reply = OK_REPLY
        if self.client is None or self.client.close_code is not None:
            self.n += 1
            self.client = await self.live.client(f"m{self.n}")
            self.joined = False
        if in_room and not self.joined:
            assert (await self.client.join(ROOM))["code"] == 0
        if not in_room and self.joined:
            assert (await self.client.quit(ROOM))["code"] == 0
        self.joined = in_room
        return self.client

    def policy(self, expected: Outcome, allowed: Outcome) -> Outcome:
        if expected != FAILED:
            return expected
        return ("refuse", 80003) if self.fail_closed else allowed

    async def send(self, reply: Reply, expected: Outcome) -> None:
        c = await self.ready(in_room=True)
        self.n += 1
        self.backend.reply = reply
        r = await c.send(ROOM, SENT, random=self.n)
        expected = self.policy(expected, ("allow", SENT))
        if expected[0] == "refuse":
            assert r["code"] == expected[1], (r, expected)
        elif expected[0] == "drop":
            assert (r["code"], r["msgSeq"], r["dropReason"]) == (0, 0, "Callback"), r
        else:
            assert r["code"] == 0 and r["msgSeq"] > 0, (r, expected)
            assert await self._delivered(c, r["msgSeq"]) == expected[1]

    async def join(self, reply: Reply, expected: Outcome) -> None:
        c = await self.ready(in_room=False)
        self.backend.reply = reply
        r = await c.join(ROOM)
        expected = self.policy(expected, ("allow", None))
        assert r["code"] == (0 if expected[0] == "allow" else expected[1]), (r, expected)
        self.joined = r["code"] == 0

    @staticmethod
    async def _delivered(c: Client, seq: int) -> Any:
        while True:
            for m in (await c.next_push("msgs", within=10))["msgs"]:
                if m["seq"] == seq:
                    return m["msgBody"]


@pytest.fixture(params=[False, True], ids=["fail-open", "fail-closed"])
async def member(request: pytest.FixtureRequest, live_factory: LiveFactory,
                 backend: FuzzBackend) -> Member:
    assert backend.server is not None
    live = await live_factory(callback_url=str(backend.server.make_url("/im/callback")),
                              callback_timeout=10.0, callback_breaker=0,
                              callback_fail_closed=request.param, room_rate=100_000,
                              room_burst=100_000)
    await live.room(ROOM)
    return Member(live, backend, request.param)


HTML = b"<html><body>502 Bad Gateway</body></html>"


@pytest.mark.timeout(600)
@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(reply=replies, join=st.booleans())
@example(reply=Reply(200, b'{"ErrorCode":0,"MsgBody":' + orjson.dumps(VALID_BODIES[1]) + b"}",
                     0.0), join=False)
@example(reply=Reply(200, b'{"ErrorCode":1,"ErrorInfo":"no"}', 0.05), join=False)
@example(reply=Reply(200, b'{"ErrorCode":1,"ErrorInfo":null}', 0.0), join=True)
@example(reply=Reply(200, b'\xef\xbb\xbf{"ErrorCode":1}', 0.0), join=False)
@example(reply=Reply(200, b'{"ErrorCode":10150}', 0.0), join=True)
@example(reply=Reply(200, b'{"ErrorCode":2}', 0.0), join=False)
@example(reply=Reply(200, HTML, 0.0), join=False)
@example(reply=Reply(500, b'{"ErrorCode":1}', 0.0), join=True)
@example(reply=Reply(200, b'{"ErrorCode":0,"Pad":"' + b"p" * MAX_REPLY + b'"}', 0.0),
         join=False)
@example(reply=Reply(200, b"", 0.2), join=True)
async def test_every_reply_is_handled_as_documented(
        member: Member, caplog: pytest.LogCaptureFixture, reply: Reply, join: bool) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()
    if join:
        await member.join(reply, _doc_verdict(reply, join=True))
    else:
        await member.send(reply, _doc_verdict(reply, join=False))
    # the server keeps serving: another member sends and is delivered
    c = await member.ready(in_room=True)
    r = await c.send(ROOM, text("still serving"), priority="High")
    assert r["code"] == 0 and r["msgSeq"] > 0, r
    errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert errors == []
