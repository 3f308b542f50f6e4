"""``livecast counter`` against a real livecast server on loopback.

Tencent-format before-send callbacks are POSTed to the counter app (a real
aiohttp server); flushes are driven through ``flush_due`` / ``flush_now`` with
a manual clock, so nothing waits for the 3 to 5 s schedule.  Totals are read
back over the server's REST API, and a WebSocket member sees the tip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from livecast.cli import main
from livecast.client import custom
from livecast.core import callbacks
from livecast.core.signing import tencent_sign
from livecast.counter.app import COUNTER, Counter, make_app
from livecast.counter.settings import CounterSettings, build, in_process
from livecast.settings import ConfigError, Secret
from tests.conftest import KEY, SDKAPPID, Live, base_settings, sig, start_live
from tests.test_cli import free_port

TOKEN = "counter-token"
BEFORE = "Group.CallbackBeforeSendMsg"
AFTER_DESTROYED = "Group.CallbackAfterGroupDestroyed"


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Running:
    """A counter app on loopback, its manual clock, and a way to post callbacks to it."""

    server: TestServer
    counter: Counter
    clock: Clock
    http: aiohttp.ClientSession

    async def post(self, body: Any, command: str = BEFORE, token: str | None = TOKEN,
                   sdkappid: int = SDKAPPID, headers: dict[str, str] | None = None,
                   **query: str) -> tuple[int, dict[str, Any]]:
        params = {"SdkAppid": str(sdkappid), "CallbackCommand": command,
                  "contenttype": "json", "ClientIP": "127.0.0.1", "OptPlatform": "Web"}
        if token is not None:
            t = int(time.time())
            params.update(Sign=tencent_sign(token, t), RequestTime=str(t))
        params.update(query)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.post(self.server.make_url("/callback"), params=params,
                                  data=data, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def like(self, group: str, count: int | None = None, **kw: Any) -> None:
        status, reply = await self.post(like_body(group, count, **kw))
        assert (status, reply) == (200, OK)


OK = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
Start = Callable[..., Awaitable[Running]]


RANDOMS = itertools.count(1)  # each body is another message (the counter dedups resends)


def like_body(group: str, count: int | None = None, priority: str | None = "Low",
              kind: str = "like") -> dict[str, Any]:
    payload: dict[str, Any] = {"type": kind}
    if count is not None:
        payload["count"] = count
    body: dict[str, Any] = {
        "CallbackCommand": BEFORE, "GroupId": group, "Type": "AVChatRoom",
        "From_Account": "alice", "Operator_Account": "alice", "Random": next(RANDOMS),
        "OnlineOnlyFlag": 0,
        "MsgBody": [{"MsgType": "TIMCustomElem",
                     "MsgContent": {"Data": json.dumps(payload), "Desc": "", "Ext": ""}}],
        "CloudCustomData": "", "EventTime": int(time.time() * 1000),
    }
    if priority is not None:
        body["MsgPriority"] = priority
    return body


def counter_settings(api: str, **overrides: Any) -> CounterSettings:
    s = CounterSettings(api=api.rstrip("/"), sdkappid=SDKAPPID, secret_key=Secret(KEY),
                        callback_token=Secret(TOKEN), port=0, timeout=2.0)
    return replace(s, **overrides)


@pytest.fixture
async def start_counter() -> AsyncIterator[Start]:
    started: list[TestServer] = []
    async with aiohttp.ClientSession() as http:

        async def start(api: str, run_loop: bool = False, **overrides: Any) -> Running:
            clock = Clock()
            app = make_app(counter_settings(api, **overrides), clock=clock,
                           rand=lambda: 0.5, run_loop=run_loop)
            server = TestServer(app, host="127.0.0.1", port=0)
            await server.start_server()
            started.append(server)
            return Running(server, app[COUNTER], clock, http)

        yield start
        for server in reversed(started):
            await server.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def rest_backend(path: str, handler: Handler) -> AsyncIterator[TestServer]:
    """A fake REST endpoint on loopback serving ``handler`` at ``path``."""
    backend = web.Application()
    backend.router.add_post(path, handler)
    server = TestServer(backend, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def rest(live: Live, command: str, body: dict[str, Any]) -> dict[str, Any]:
    """One group_open_http_svc call to the livecast server, as the admin."""
    params = {"sdkappid": str(SDKAPPID), "identifier": "administrator",
              "usersig": sig("administrator"), "random": "1", "contenttype": "json"}
    async with aiohttp.ClientSession() as http, http.post(
            live.url(f"/v4/group_open_http_svc/{command}"), params=params,
            data=json.dumps(body).encode()) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json(content_type=None)
        return answer


async def app_value(live: Live, group: str, key: str = "likes") -> str | None:
    r = await rest(live, "get_group_info", {"GroupIdList": [group]})
    assert r["ErrorCode"] == 0, r
    items = {i["Key"]: i["Value"] for i in r["GroupInfo"][0]["AppDefinedData"]}
    return items.get(key)


async def counter_value(live: Live, group: str, key: str = "likes") -> int | None:
    r = await rest(live, "get_group_counter", {"GroupId": group, "GroupCounterKeys": [key]})
    assert r["ErrorCode"] == 0, r
    return {i["Key"]: i["Value"] for i in r["GroupCounter"]}.get(key)


# ----------------------------------------------------------------- totals
async def test_likes_reach_app_defined_data_exactly_and_members_see_the_tip(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    viewer = await live.client("viewer", join=gid)
    c = await start_counter(live.url("/"))
    counts = [None, 1, 5, 1000, 3000, None, 7, None, 2]  # 3000 is capped at 1000
    for n in counts:
        await c.like(gid, n, priority="Lowest" if n == 7 else "Low")
    await c.like(gid, None, priority=None)  # Tencent sends no MsgPriority: still a like
    expected = 1 + 1 + 5 + 1000 + 1000 + 1 + 7 + 1 + 2 + 1
    assert await c.counter.flush_due(c.clock.now + 2.999) == 0  # not before 3 s
    assert await app_value(live, gid) is None
    assert await c.counter.flush_due(c.clock.now + 4.0) == 1  # rand 0.5: due at +4 s
    assert await app_value(live, gid) == str(expected)
    tip = await viewer.next_push("tips")
    assert tip["groupId"] == gid
    assert tip["tips"] == [{"type": "groupInfo", "changes": {
        "AppDefinedData": [{"Key": "likes", "Value": str(expected)}]}}]
    info = await viewer.get_group_info(gid)
    assert {"Key": "likes", "Value": str(expected)} in info["group"]["AppDefinedData"]
    assert await c.counter.flush_due(c.clock.now + 100) == 0  # unchanged rooms are not written


async def test_group_counter_target_sets_the_like_counter(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    viewer = await live.client("viewer", join=gid)
    c = await start_counter(live.url("/"), target="group_counter", key="likes")
    for _ in range(25):
        await c.like(gid, 4)
    assert await c.counter.flush_now() == 1
    assert await counter_value(live, gid) == 100
    tip = await viewer.next_push("tips")
    assert tip["tips"] == [{"type": "counters", "counters": [{"Key": "likes", "Value": 100}]}]
    await c.like(gid, 3)
    assert await c.counter.flush_now() == 1
    assert await counter_value(live, gid) == 103


async def test_callbacks_as_livecast_sends_them_are_counted(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"))
    now = time.time()
    for rnd, (priority, data) in enumerate((("Low", '{"type":"like","count":3}'),
                                            ("Lowest", '{"type":"like"}'),
                                            ("Normal", '{"type":"like"}'))):
        body = callbacks.before_send(gid, "alice", "alice", rnd, custom(data), "", priority,
                                     now)
        params = callbacks.query(SDKAPPID, BEFORE, "127.0.0.1", "Web", TOKEN, int(now))
        async with c.http.post(c.server.make_url("/callback"), params=params,
                               data=json.dumps(body).encode()) as resp:
            assert resp.status == 200 and await resp.json() == OK
    assert await c.counter.flush_now() == 1
    assert await app_value(live, gid) == "4"


async def test_rooms_are_summed_separately(live: Live, start_counter: Start) -> None:
    a, b = await live.room("ra"), await live.room("rb")
    c = await start_counter(live.url("/"))
    for i in range(30):
        await c.like(a if i % 3 else b, i + 1)
    assert await c.counter.flush_now() == 2
    assert await app_value(live, a) == str(sum(i + 1 for i in range(30) if i % 3))
    assert await app_value(live, b) == str(sum(i + 1 for i in range(30) if not i % 3))


async def test_the_periodic_loop_writes_rooms_when_due(live: Live, start_counter: Start) -> None:
    """The loop does not poll: asleep until its next sweep (a minute away), it
    is woken by the like that makes a room due (at once, on a 0 s schedule),
    writes it, sleeps again, and is woken again by the next like."""
    gid = await live.room("r1")
    viewer = await live.client("viewer", join=gid)
    c = await start_counter(live.url("/"), run_loop=True, min_s=0.0, max_s=0.0)
    for likes, total in ((9, "9"), (3, "12")):
        await c.like(gid, likes)
        while True:  # the write's tip (a join tip may come first)
            changes = (await viewer.next_push("tips"))["tips"][0].get("changes", {})
            if "AppDefinedData" in changes:
                break
        assert changes["AppDefinedData"] == [{"Key": "likes", "Value": total}]
        assert await app_value(live, gid) == total
    assert c.counter.stats.writes == 2


async def test_shutdown_writes_what_is_pending(live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"), run_loop=True)
    await c.like(gid, 6)
    await c.server.close()  # long before the room is due
    assert await app_value(live, gid) == "6"


# ------------------------------------------------------- what is not counted
async def test_non_likes_and_other_commands_are_acknowledged_and_ignored(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"))
    text = like_body(gid)
    text["MsgBody"] = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": '{"type":"like"}'}}]
    for body in (like_body(gid, priority="High"), like_body(gid, priority="Normal"),
                 like_body(gid, kind="gift"), like_body(gid, 0), like_body(gid, -2), text):
        assert await c.post(body) == (200, OK)
    for command in ("Group.CallbackAfterSendMsg", "Group.CallbackSendMsgException",
                    "Group.CallbackAfterNewMemberJoin", "Some.Unknown"):
        assert await c.post(like_body(gid), command=command) == (200, OK)
    assert await c.counter.flush_now() == 0
    assert await app_value(live, gid) is None
    assert c.counter.stats.likes == 0 and c.counter.stats.callbacks == 10


async def test_malformed_bodies_are_answered_without_counting(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"))
    for raw in (b"", b"{not json", b"[1,2]", b'"like"', b"null", b"\xff\xfe",
                json.dumps({"GroupId": gid}).encode(), json.dumps({"MsgBody": 3}).encode(),
                b"{" + b" " * 70000 + b"}"):
        assert await c.post(raw) == (200, OK)
    for encoding in ("gzip", "deflate", "br"):  # a body that does not decode as it says
        headers = {"Content-Encoding": encoding, "Connection": "close"}
        assert await c.post(b"garbage", headers=headers) == (200, OK)
    assert c.counter.stats.malformed == 10
    await c.like(gid)
    assert await c.counter.flush_now() == 1
    assert await app_value(live, gid) == "1"


async def test_a_wrong_sign_or_sdkappid_is_refused_with_401(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"))
    t = str(int(time.time()))
    refused = [
        await c.post(like_body(gid), token="not-the-token"),
        await c.post(like_body(gid), token=None),  # no Sign at all
        await c.post(like_body(gid), token=None, Sign=tencent_sign(TOKEN, int(t))),
        await c.post(like_body(gid), token=None, Sign="00" * 32, RequestTime=t),
        await c.post(like_body(gid), token=None, Sign=tencent_sign(TOKEN, int(t)),
                     RequestTime="yesterday"),
        await c.post(like_body(gid), sdkappid=SDKAPPID + 1),
    ]
    for status, reply in refused:
        assert status == 401
        assert reply["ActionStatus"] == "FAIL" and reply["ErrorCode"] == 1
    assert c.counter.stats.refused == len(refused) and c.counter.stats.callbacks == 0
    assert await c.counter.flush_now() == 0
    assert await app_value(live, gid) is None


async def test_the_sign_window_refuses_stale_callbacks(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"), sign_window=60.0)
    stale = int(time.time()) - 3600
    status, _ = await c.post(like_body(gid), token=None, Sign=tencent_sign(TOKEN, stale),
                             RequestTime=str(stale))
    assert status == 401
    await c.like(gid)  # fresh
    assert c.counter.stats.likes == 1


async def test_without_a_token_only_the_sdkappid_is_checked(
        live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"), callback_token=Secret(""))
    assert await c.post(like_body(gid, 2), token=None) == (200, OK)
    assert (await c.post(like_body(gid), token=None, sdkappid=1))[0] == 401
    assert await c.counter.flush_now() == 1
    assert await app_value(live, gid) == "2"


async def test_require_priority_and_a_custom_rule(live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"), like_require_priority=True, like_type="heart",
                            like_count_field="n", like_max_count=10)
    await c.post(like_body(gid, priority=None, kind="heart"))  # no priority: refused
    await c.post(like_body(gid, kind="like"))
    body = like_body(gid, kind="heart")
    body["MsgBody"][0]["MsgContent"]["Data"] = json.dumps({"type": "heart", "n": 50})
    await c.post(body)
    assert c.counter.stats.likes == 10


# --------------------------------------------------------- restart, failure
async def test_a_restart_resumes_from_the_rooms_value(live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    first = await start_counter(live.url("/"))
    for _ in range(5):
        await first.like(gid)
    assert await first.counter.flush_now() == 1
    await first.server.close()
    second = await start_counter(live.url("/"))
    for _ in range(3):
        await second.like(gid, 2)
    assert await second.counter.flush_now() == 1
    assert await app_value(live, gid) == "11"


@pytest.mark.parametrize(("target", "seed", "seeded"), [
    ("app_defined_data", "modify_group_base_info", "500"),
    ("group_counter", "update_group_counter", 500),
])
async def test_a_value_set_before_first_sight_is_the_base(
        live: Live, start_counter: Start, target: str, seed: str, seeded: Any) -> None:
    gid = await live.room("r1")
    key = "likes"
    body: dict[str, Any] = {"GroupId": gid}
    if target == "app_defined_data":
        body["AppDefinedData"] = [{"Key": key, "Value": seeded}]
    else:
        body.update(GroupCounter=[{"Key": key, "Value": seeded}], Mode="Set")
    assert (await rest(live, seed, body))["ErrorCode"] == 0
    c = await start_counter(live.url("/"), target=target, key=key)
    await c.like(gid, 7)
    assert await c.counter.flush_now() == 1
    if target == "app_defined_data":
        assert await app_value(live, gid) == "507"
    else:
        assert await counter_value(live, gid) == 507


async def test_a_failed_write_is_retried_at_the_next_flush(start_counter: Start) -> None:
    port = free_port()
    c = await start_counter(f"http://127.0.0.1:{port}")  # nothing listens there yet
    for _ in range(4):
        await c.like("r1", 3)
    assert await c.counter.flush_now() == 1
    assert c.counter.stats.write_failures == 1 and c.counter.tally.pending() == ["r1"]
    assert await c.counter.flush_due(c.clock.now + 2.9) == 0  # the retry waits its turn
    live = await start_live(base_settings(), port=port)
    try:
        await live.room("r1")
        assert await c.counter.flush_due(c.clock.now + 5.0) == 1
        assert await app_value(live, "r1") == "12"
        assert c.counter.tally.pending() == []
    finally:
        await live.server.close()


async def test_a_room_that_does_not_exist_is_forgotten(live: Live, start_counter: Start) -> None:
    c = await start_counter(live.url("/"))
    await c.like("no-such-room", 5)
    assert await c.counter.flush_now() == 1
    assert "no-such-room" not in c.counter.tally and c.counter.stats.write_failures == 1


async def test_a_hung_rest_endpoint_never_blocks_the_receiver(start_counter: Start) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def backend_call(request: web.Request) -> web.Response:
        if request.match_info["command"] == "get_group_info":
            return web.json_response({**OK, "GroupInfo": [{"GroupId": "r1", "ErrorCode": 0}]})
        arrived.set()  # the write hangs until released
        await release.wait()
        return web.json_response(OK)

    async with rest_backend("/v4/{service}/{command}", backend_call) as server:
        try:
            c = await start_counter(str(server.make_url("/")), timeout=30.0)
            await c.like("r1")
            flush = asyncio.create_task(c.counter.flush_now())
            await arrived.wait()
            for _ in range(20):
                await c.like("r1", 2)  # answered while the write hangs
            assert c.counter.stats.likes == 41 and not flush.done()
            release.set()
            assert await flush == 1
            assert c.counter.stats.writes == 1
            assert c.counter.tally.pending() == ["r1"]  # the 40 later likes: next flush
            assert c.counter.tally.due("r1") == pytest.approx(c.clock.now + 4.0)
        finally:
            release.set()


async def test_a_room_destroyed_while_its_base_is_read_is_not_written(
        start_counter: Start) -> None:
    """The destroy callback comes while the first write's read of the room is
    on its way: that write is dropped, the other rooms' go on, and the room
    made again counts from its own value."""
    arrived, release = asyncio.Event(), asyncio.Event()
    writes: list[tuple[str, str]] = []

    async def backend_call(request: web.Request) -> web.Response:
        body = await request.json()
        if request.match_info["command"] == "get_group_info":
            gid = body["GroupIdList"][0]
            if gid == "r1" and not release.is_set():
                arrived.set()  # r1's read hangs until released
                await release.wait()
            return web.json_response({**OK, "GroupInfo": [{"GroupId": gid, "ErrorCode": 0}]})
        writes.append((body["GroupId"], body["AppDefinedData"][0]["Value"]))
        return web.json_response(OK)

    async with rest_backend("/v4/{service}/{command}", backend_call) as server:
        try:
            c = await start_counter(str(server.make_url("/")))
            await c.like("r1", 3)
            await c.like("r2", 5)
            flush = asyncio.create_task(c.counter.flush_now())
            await arrived.wait()
            gone = {"CallbackCommand": AFTER_DESTROYED, "GroupId": "r1", "Type": "AVChatRoom"}
            assert await c.post(gone, command=AFTER_DESTROYED) == (200, OK)
            await c.like("r1", 2)  # the room made again
            release.set()
            assert await flush == 2  # no KeyError: r2 written all the same
            assert writes == [("r2", "5")]
            assert c.counter.tally.pending() == ["r1"]
            assert await c.counter.flush_now() == 1
            assert writes == [("r2", "5"), ("r1", "2")]  # its own 2, not 3 + 2
        finally:
            release.set()


async def test_a_rest_call_that_times_out_fails_and_is_retried(start_counter: Start) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.json_response(OK)  # pragma: no cover

    async with rest_backend("/{tail:.*}", hang) as server:
        try:
            c = await start_counter(str(server.make_url("/")), timeout=0.2)
            await c.like("r1")
            assert await c.counter.flush_now() == 1
            assert c.counter.stats.write_failures == 1 and c.counter.tally.pending() == ["r1"]
            assert c.counter.tally.due("r1") is not None
        finally:
            never.set()


async def test_a_redirected_rest_call_is_not_followed_and_fails(start_counter: Start) -> None:
    """The write-back's REST API answering a redirect: nothing (no UserSig)
    goes to the other host, and the write fails, to be tried again."""
    reached: list[str] = []

    async def other(request: web.Request) -> web.Response:
        reached.append(request.path_qs)
        return web.json_response(OK)  # pragma: no cover

    async with rest_backend("/{tail:.*}", other) as elsewhere:
        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(str(elsewhere.make_url(request.path_qs)))

        async with rest_backend("/{tail:.*}", moved) as server:
            c = await start_counter(str(server.make_url("/")))
            await c.like("r1")
            assert await c.counter.flush_now() == 1
            assert c.counter.stats.write_failures == 1 and c.counter.tally.pending() == ["r1"]
    assert reached == []


async def test_healthz_reports_counts(live: Live, start_counter: Start) -> None:
    gid = await live.room("r1")
    c = await start_counter(live.url("/"))
    await c.like(gid, 3)
    async with c.http.get(c.server.make_url("/healthz")) as resp:
        health = await resp.json()
    assert health["status"] == "ok" and health["likes"] == 3 and health["pending"] == 1


# ---------------------------------------------------------------- settings
def test_settings_defaults(tmp_path: Path) -> None:
    s = build({}, dev_key_file=tmp_path / "k")
    assert (s.host, s.port, s.api, s.admin) == ("127.0.0.1", 8090, "http://127.0.0.1:8080",
                                                "administrator")
    assert (s.target, s.key, s.min_s, s.max_s) == ("app_defined_data", "likes", 3.0, 5.0)
    assert s.dev_key and not s.callback_token.value
    assert s.rule.priorities == {"Low", "Lowest"} and not s.rule.require_priority
    assert build({"LIVECAST_COUNTER_TARGET": "group_counter"},
                 dev_key_file=tmp_path / "k").key == "likes"


def test_settings_from_env(tmp_path: Path) -> None:
    s = build({"LIVECAST_COUNTER_API": "https://adminapisgp.im.qcloud.com/",
               "LIVECAST_SECRET_KEY": "zq-secret-key", "LIVECAST_CALLBACK_TOKEN": "zq-token",
               "LIVECAST_LIKE_PRIORITIES": "", "LIVECAST_LIKE_REQUIRE_PRIORITY": "1",
               "LIVECAST_COUNTER_MIN_S": "1", "LIVECAST_COUNTER_MAX_S": "2"},
              dev_key_file=tmp_path / "k")
    assert s.api == "https://adminapisgp.im.qcloud.com" and not s.dev_key
    assert s.rule.priorities == frozenset() and s.rule.require_priority
    assert (s.min_s, s.max_s) == (1.0, 2.0)
    assert "zq-" not in repr(s) and s.secret_key.value == "zq-secret-key"
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(("name", "value"), [
    ("LIVECAST_COUNTER_PORT", "x"), ("LIVECAST_COUNTER_API", "ftp://x"),
    ("LIVECAST_COUNTER_API", ""), ("LIVECAST_COUNTER_TARGET", "redis"),
    ("LIVECAST_COUNTER_KEY", "like-count"), ("LIVECAST_COUNTER_KEY", "k" * 17),
    ("LIVECAST_LIKE_PRIORITIES", "low"), ("LIVECAST_LIKE_MAX_COUNT", "0"),
    ("LIVECAST_COUNTER_MIN_S", "6"), ("LIVECAST_COUNTER_ADMIN", " "),
    ("LIVECAST_COUNTER_API", "http://"), ("LIVECAST_COUNTER_API", "http://h:99999"),
    ("LIVECAST_COUNTER_REDIS_URL", "redis://127.0.0.1:abc"),
    ("LIVECAST_COUNTER_REDIS_URL", "redis://a:1,b:2"),
    ("LIVECAST_COUNTER_REDIS_URL", "redis+cluster://a:1"),
])
def test_bad_settings_name_the_variable(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        build({name: value}, dev_key_file=tmp_path / "k")


def test_cli_counter_with_bad_config_exits_2(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECAST_SECRET_KEY", "k")
    assert main(["counter", "--target", "nowhere"]) == 2
    assert "LIVECAST_COUNTER_TARGET" in capsys.readouterr().err


async def test_livecast_counter_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, LIVECAST_COUNTER_PORT=str(port), LIVECAST_SECRET_KEY="k",
               LIVECAST_DEV_KEY_FILE=str(tmp_path / "k"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "counter", "--min-s", "1", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert f"http://127.0.0.1:{port}" in line
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert (await resp.json())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_cancelled_flush_leaves_no_room_stranded(start_counter: Start) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def backend_call(request: web.Request) -> web.Response:
        body = await request.json()
        if request.match_info["command"] == "get_group_info":
            gid = body["GroupIdList"][0]
            return web.json_response({**OK, "GroupInfo": [{"GroupId": gid, "ErrorCode": 0}]})
        arrived.set()
        await release.wait()
        written.append(body["GroupId"])
        return web.json_response(OK)

    async with rest_backend("/v4/{service}/{command}", backend_call) as server:
        try:
            c = await start_counter(str(server.make_url("/")), timeout=30.0, concurrency=1)
            for gid in ("a", "b", "c"):
                await c.like(gid)
            flush = asyncio.create_task(c.counter.flush_now())
            await arrived.wait()  # the one worker is writing a room; two wait their turn
            flush.cancel()
            with pytest.raises(asyncio.CancelledError):
                await flush
            release.set()
            assert await c.counter.flush_now() == 3  # every room is taken again
            assert sorted(written) == ["a", "b", "c"] and c.counter.tally.pending() == []
        finally:
            release.set()


def test_in_process_settings_read_the_like_variables_only() -> None:
    """``livecast serve``'s counter: where and what to count; the service's own
    address, API and token are not read, so a bad one never stops a server."""
    s = in_process({"LIVECAST_COUNTER_TARGET": "group_counter", "LIVECAST_LIKE_TYPE": "heart",
                    "LIVECAST_COUNTER_MIN_S": "1", "LIVECAST_COUNTER_PORT": "nope",
                    "LIVECAST_COUNTER_API": "ftp://x", "LIVECAST_SECRET_KEY": "k"})
    assert (s.target, s.key, s.min_s, s.rule.type_value) == ("group_counter", "likes", 1.0,
                                                             "heart")
    assert s.port == 8090 and not s.secret_key.value and not s.dev_key
    assert in_process({}).key == "likes"
    with pytest.raises(ConfigError, match="LIVECAST_COUNTER_MIN_S"):
        in_process({"LIVECAST_COUNTER_MIN_S": "9", "LIVECAST_COUNTER_MAX_S": "5"})
    with pytest.raises(ConfigError, match="LIVECAST_COUNTER_KEY"):
        in_process({"LIVECAST_COUNTER_KEY": "no spaces"})
