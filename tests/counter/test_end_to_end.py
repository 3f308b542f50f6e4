"""The like counter's acceptance scenario end to end (issue: webhooks and the
like counter; spec rooms.md "Likes and counters").

A real livecast server limited to 20 messages/s sends its webhooks to a real
``livecast counter`` app, which writes the totals back through livecast's
REST API.  Ten WebSocket members send 1,000 likes in about 2 s; the rate
limit drops most of them from the message stream, yet the total pushed to
members and returned by getGroupInfo is exactly 1,000.

Synchronisation: livecast answers a send only after its before-send callback
was answered, and the counter counts a like before it answers; so when every
send has its reply, the counter has counted every like (checked on its
``/healthz``).  Its write-back is driven with ``flush_now`` instead of its
3 to 5 s schedule.  The only sleep paces the senders.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from livecast.client import Client, custom
from livecast.counter.app import COUNTER, Counter, make_app
from livecast.counter.settings import CounterSettings
from livecast.settings import Secret
from tests.backplane.conftest import until_true
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory

TOKEN = "end-to-end-token"
GID = "live-likes"
RATE = 20  # messages per second (and burst) of the room
FANS = 10
LIKES_EACH = 100
SECONDS = 2.0  # the likes are spread over about this long
LIKE = custom(json.dumps({"type": "like"}))


@dataclass
class Rig:
    live: Live
    counter: Counter
    server: TestServer

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(
                self.server.make_url("/healthz")) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result


Make = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(live_factory: LiveFactory) -> AsyncIterator[Make]:
    """livecast -> counter (webhooks) and counter -> livecast (REST), both on loopback."""
    servers: list[TestServer] = []

    async def make(**counter_overrides: Any) -> Rig:
        # the counter's socket is bound first: each side needs the other's URL
        sock = socket.create_server(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        live = await live_factory(room_rate=RATE, room_burst=RATE,
                                  callback_url=f"http://127.0.0.1:{port}/callback",
                                  callback_token=Secret(TOKEN))
        settings = replace(CounterSettings(
            api=live.url("/").rstrip("/"), sdkappid=SDKAPPID, secret_key=Secret(KEY),
            callback_token=Secret(TOKEN), port=port), **counter_overrides)
        app = make_app(settings, run_loop=False)
        server = TestServer(app, host="127.0.0.1", port=port,
                            socket_factory=lambda host, p, family: sock)
        await server.start_server()
        servers.append(server)
        return Rig(live, app[COUNTER], server)

    yield make
    for server in servers:
        await server.close()


async def fan(c: Client, index: int) -> list[dict[str, Any]]:
    """One member's likes, paced over ``SECONDS``; returns every reply."""
    sends: list[asyncio.Future[dict[str, Any]]] = []
    for n in range(LIKES_EACH):
        sends.append(asyncio.ensure_future(
            c.send(GID, LIKE, priority="Low", random=index * 1000 + n)))
        await asyncio.sleep(SECONDS / LIKES_EACH)  # pacing, not synchronisation
    return list(await asyncio.gather(*sends))


async def like_tip(c: Client, kind: str) -> dict[str, Any]:
    """The next tip of ``kind`` (member join/quit tips are skipped)."""
    while True:
        for tip in (await c.next_push("tips"))["tips"]:
            if tip["type"] == kind:
                return dict(tip)


@pytest.mark.parametrize("target", ["app_defined_data", "group_counter"])
async def test_1000_likes_at_20_msgs_per_s_are_counted_exactly(rig: Make, target: str) -> None:
    key = "likes"
    r = await rig(target=target, key=key)
    live = r.live
    await live.room(GID)
    viewer = await live.client("viewer", join=GID)
    fans = [await live.client(f"fan{i}", join=GID) for i in range(FANS)]
    replies = [x for batch in await asyncio.gather(*(fan(c, i) for i, c in enumerate(fans)))
               for x in batch]
    assert len(replies) == FANS * LIKES_EACH == 1000
    assert all(x["code"] == 0 for x in replies)
    delivered = [x for x in replies if x["msgSeq"] > 0]
    dropped = [x for x in replies if x["dropReason"] == "MsgFreqCtrl"]
    assert len(delivered) + len(dropped) == 1000
    assert delivered and len(dropped) > 500  # most likes never reach the message stream
    got: list[dict[str, Any]] = []
    while len(got) < len(delivered):
        got += (await viewer.next_push("msgs"))["msgs"]
    assert sorted(m["seq"] for m in got) == sorted(x["msgSeq"] for x in delivered)

    health = await r.health()  # every before-send was answered, so every like is counted
    assert (health["likes"], health["refused"], health["pending"]) == (1000, 0, 1)
    assert await r.counter.flush_now() == 1
    assert (await r.health())["writes"] == 1

    if target == "app_defined_data":
        tip = await like_tip(viewer, "groupInfo")
        assert tip["changes"] == {"AppDefinedData": [{"Key": key, "Value": "1000"}]}
        info = await viewer.get_group_info(GID)
        assert {"Key": key, "Value": "1000"} in info["group"]["AppDefinedData"]
        late = await live.client("late")
        joined = await late.join(GID)
        assert {"Key": key, "Value": "1000"} in joined["group"]["AppDefinedData"]
    else:
        tip = await like_tip(viewer, "counters")
        assert tip["counters"] == [{"Key": key, "Value": 1000}]
        info = await viewer.get_group_info(GID)
        assert {"Key": key, "Value": 1000} in info["counters"]
        late = await live.client("late")
        assert {"Key": key, "Value": 1000} in (await late.join(GID))["counters"]


async def test_a_room_made_again_with_its_id_counts_from_its_own_value(rig: Make) -> None:
    """The counter forgets a destroyed room (``Group.CallbackAfterGroupDestroyed``),
    so the room made again with its id starts from its own value."""
    r = await rig()
    live = r.live
    await live.room(GID)
    fan_ = await live.client("fan", join=GID)
    for n in range(3):
        assert (await fan_.send(GID, LIKE, priority="Low", random=n))["code"] == 0
    assert await r.counter.flush_now() == 1
    await fan_.close()
    assert (await live.rest("group_open_http_svc", "destroy_group",
                            {"GroupId": GID}))["ErrorCode"] == 0

    async def forgotten() -> bool:  # the after-event comes on its own time
        return bool((await r.health())["rooms"] == 0)
    await until_true(forgotten)
    await live.room(GID, AppDefinedData=[{"Key": "likes", "Value": "10"}])
    fan_ = await live.client("fan2", join=GID)
    for n in range(2):
        assert (await fan_.send(GID, LIKE, priority="Low", random=10 + n))["code"] == 0
    assert await r.counter.flush_now() == 1
    info = await live.rest("group_open_http_svc", "get_group_info", {"GroupIdList": [GID]})
    assert {"Key": "likes", "Value": "12"} in info["GroupInfo"][0]["AppDefinedData"]
