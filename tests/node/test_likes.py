"""node/likes.py: ``livecast serve`` without a callback URL counts likes itself.

A real server on loopback (the same factory, listener and front as ``livecast
serve``), real WebSocket clients and REST calls.  The write-back schedule is
shortened through the counter's own settings, and every wait is on a pushed
tip or a REST read with a bounded timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from livecast.client import Client, custom, text
from livecast.counter.settings import CounterSettings
from livecast.gateway.app import LIKES, make_app
from livecast.gateway.front import Front
from livecast.gateway.ws import NODE
from livecast.node.likes import NodeTotals
from livecast.runner import Listener
from livecast.settings import ConfigError, Settings, build
from tests.conftest import Live, base_settings

FAST = CounterSettings(min_s=0.05, max_s=0.1)
WAIT = 10.0  # bound on any wait for a tip


def like(count: int | None = None) -> list[dict[str, Any]]:
    payload: dict[str, Any] = {"type": "like"}
    if count is not None:
        payload["count"] = count
    return custom(orjson.dumps(payload).decode(), "like")


Start = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``start(settings, likes)``: a server as ``livecast serve`` runs it."""
    running: list[Live] = []

    async def start_(settings: Settings | None = None,
                     likes: CounterSettings | None = FAST) -> Live:
        s = settings or base_settings()
        app = make_app(s, likes=likes)
        server = Listener(app, Front, shutdown_timeout=s.shutdown_grace)
        await server.start("127.0.0.1", 0)
        live = Live(server, app[NODE], s)
        running.append(live)
        return live

    yield start_
    for live in running:
        for c in live.clients:
            await c.close()
        await live.server.close()


async def total_pushed(viewer: Client, want: int, key: str = "likes") -> list[int]:
    """Totals the viewer is pushed, in order, until one equals ``want``."""
    seen: list[int] = []
    async with asyncio.timeout(WAIT):
        async for push in viewer.pushes():
            for tip in push.get("tips", ()) if push["op"] == "tips" else ():
                items = (tip.get("changes", {}).get("AppDefinedData", [])
                         if tip["type"] == "groupInfo" else tip.get("counters", []))
                seen += [int(kv["Value"]) for kv in items if kv["Key"] == key]
            if seen and seen[-1] == want:
                return seen
    raise AssertionError(f"no total {want}; saw {seen}")


async def app_defined(live: Live, gid: str, key: str = "likes") -> str | None:
    r = await live.rest("group_open_http_svc", "get_group_info", {
        "GroupIdList": [gid], "ResponseFilter": {"AppDefinedDataFilter_Group": [key]}})
    found = [kv["Value"] for kv in r["GroupInfo"][0]["AppDefinedData"] if kv["Key"] == key]
    return found[0] if found else None


async def test_likes_add_up_exactly_even_those_the_room_drops(start: Start) -> None:
    live = await start()
    gid = await live.room("r1", AppDefinedData=[{"Key": "likes", "Value": "100"}])
    await live.node.set_rate(gid, 1, 1)  # one message a second: most likes are dropped
    viewer = await live.client("viewer", join=gid)
    fan = await live.client("fan", join=gid)
    counts = [None, 1, 5, 1000, 3000, 7, None, 2]  # 3000 is capped at 1000
    replies = await asyncio.gather(*(fan.send(gid, like(n), priority="Low") for n in counts))
    await fan.send(gid, like(9), priority="Normal")  # not a like priority
    await fan.send(gid, text('{"type":"like"}'), priority="Low")  # not a custom element
    await fan.send(gid, custom('{"type":"like","count":0}'), priority="Lowest")  # bad count
    assert [r["code"] for r in replies] == [0] * len(counts)
    assert any(r["dropReason"] == "MsgFreqCtrl" for r in replies)
    expected = 100 + 1 + 1 + 5 + 1000 + 1000 + 7 + 1 + 2
    assert (await total_pushed(viewer, expected))[-1] == expected
    assert await app_defined(live, gid) == str(expected)
    likes = live.server.app[LIKES]
    assert likes.counter.stats.likes == expected - 100
    assert likes.counter.stats.writes >= 1


async def test_the_group_counter_target_and_rest_sends(start: Start) -> None:
    live = await start(likes=replace(FAST, target="group_counter"))
    gid = await live.room("r2")
    viewer = await live.client("viewer", join=gid)
    fan = await live.client("fan", join=gid)
    await fan.send(gid, like(3), priority="Lowest")
    msg = {"GroupId": gid, "From_Account": "fan", "Random": 1, "MsgPriority": "Low",
           "MsgBody": like(4)}
    assert (await live.rest("group_open_http_svc", "send_group_msg", msg))["ErrorCode"] == 0
    forbid = msg | {"Random": 2, "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback"]}
    assert (await live.rest("group_open_http_svc", "send_group_msg", forbid))["ErrorCode"] == 0
    assert (await total_pushed(viewer, 7))[-1] == 7  # no before-send callback: not counted
    r = await live.rest("group_open_http_svc", "get_group_counter",
                        {"GroupId": gid, "GroupCounterKeys": ["likes"]})
    assert r["GroupCounter"] == [{"Key": "likes", "Value": 7}]
    assert await app_defined(live, gid) is None


async def test_pending_likes_are_written_when_the_server_stops(start: Start) -> None:
    live = await start(likes=replace(FAST, min_s=600.0, max_s=600.0))
    gid = await live.room("r3")
    fan = await live.client("fan", join=gid)
    await fan.send(gid, like(6), priority="Low")
    assert await app_defined(live, gid) is None  # due in 600 s
    await fan.close()
    await live.server.close()
    assert live.node.room(gid).group.app_defined == {"likes": "6"}
    assert live.node.on_admit is None


async def test_a_room_made_again_with_its_id_counts_from_its_own_value(start: Start) -> None:
    live = await start()
    gid = await live.room("r4")
    fan = await live.client("fan", join=gid)
    viewer = await live.client("viewer", join=gid)
    await fan.send(gid, like(3), priority="Low")
    assert (await total_pushed(viewer, 3))[-1] == 3
    await fan.close()
    await viewer.close()
    await live.rest("group_open_http_svc", "destroy_group", {"GroupId": gid})
    await live.room("r4", AppDefinedData=[{"Key": "likes", "Value": "10"}])
    fan = await live.client("fan2", join=gid)
    viewer = await live.client("viewer2", join=gid)
    await fan.send(gid, like(2), priority="Low")
    assert (await total_pushed(viewer, 12))[-1] == 12  # 10 + 2, not 3 + 2 nor 15
    assert await app_defined(live, gid) == "12"


@pytest.mark.parametrize("overrides", [{"callback_url": "http://127.0.0.1:9/cb"},
                                       {"like_counter": False}])
async def test_a_business_backend_or_the_setting_turns_it_off(
        start: Start, overrides: dict[str, Any]) -> None:
    live = await start(base_settings(**overrides))
    assert LIKES not in live.server.app
    assert live.node.on_admit is None


async def test_the_default_server_counts_likes_in_process(start: Start) -> None:
    live = await start(likes=None)
    likes = live.server.app[LIKES]
    assert live.node.on_admit == likes.admit
    s = likes.counter.settings
    assert (s.target, s.key, s.min_s, s.max_s) == ("app_defined_data", "likes", 3.0, 5.0)


async def test_a_room_gone_or_full_is_a_coded_failure(live: Live) -> None:
    totals = NodeTotals(live.node, "app_defined_data", "likes", "administrator")
    assert (await totals.read("nope")).code == 10010
    assert (await totals.write("nope", 5))["ErrorCode"] == 10010
    gid = await live.room("r4", AppDefinedData=[{"Key": f"k{i}", "Value": "x"} for i in range(10)])
    reply = await totals.write(gid, 5)
    assert reply["ActionStatus"] == "FAIL" and reply["ErrorCode"] != 0
    assert (await totals.read(gid)).value == 0


def test_settings_count_likes_in_process_unless_a_backend_or_the_setting_says_no(
        tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert build({}, dev_key_file=key).counts_likes
    assert not build({"LIVECAST_CALLBACK_URL": "http://127.0.0.1:9/cb"},
                     dev_key_file=key).counts_likes
    assert not build({"LIVECAST_LIKE_COUNTER": "0"}, dev_key_file=key).counts_likes
    with pytest.raises(ConfigError, match="LIVECAST_LIKE_COUNTER"):
        build({"LIVECAST_LIKE_COUNTER": "sometimes"}, dev_key_file=key)
