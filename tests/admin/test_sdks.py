"""Third-party Tencent IM server SDKs from PyPI, unchanged, against livecast.

``timsdk`` and ``tencentcloud-sdk-python-im`` run a live room's backend flow
(create, send, system notification, mute, profile, counters, online count,
ban, kick, destroy) against a real livecast server on loopback, while real
WebSocket members check what each call did and a real aiohttp app plays the
business backend that receives the callbacks (tests/webhooks/conftest.py).

Both SDKs are synchronous (``requests``): every SDK call runs in a worker
thread (``asyncio.to_thread``) so the server keeps serving on the loop.

Pointing them at the test server, by each SDK's own means:
- tencentcloud-sdk-python-im: ``TCIMClient(..., tencent_url=...)``, its
  documented base-URL argument (it defaults to ``https://console.tim.qq.com/v4``).
- timsdk: ``HttpClient.get_url`` hard-codes ``https://console.tim.qq.com``
  with no option to change it. Each of its API objects takes another HTTP
  client through the public ``set_client``: the tests give them a subclass
  of timsdk's own ``HttpClient`` whose ``get_url`` lets the SDK build its URL
  (path, sdkappid, identifier, usersig, random, contenttype) and swaps only
  the origin. Everything else (request building, JSON encoding, session,
  result decoding) is the SDK's.
Neither SDK has calls for group counters, ban or (timsdk) the online count;
those go through timsdk's generic ``HttpClient.post(path, data=...)``, the
transport all its API methods use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import requests
import timsdk
from tencentcloud_im.tcim_client import GroupObj, MessageText, TCIMClient

from livecast.client import Client, text
from livecast.core import callbacks as cb
from tests.admin.conftest import fails, ok, rest
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory
from tests.webhooks.conftest import Backend, serve_callbacks

TENCENT_ORIGIN = "https://console.tim.qq.com"
G = "group_open_http_svc"
LOOPBACK = "127.0.0.1"


# ------------------------------------------------------------ fixtures
@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend()
    b.server = await serve_callbacks(b.handle)
    yield b
    b.release.set()
    await b.server.close()


@pytest.fixture
async def server(backend: Backend, live_factory: LiveFactory) -> Live:
    """A livecast server whose callbacks go to ``backend``."""
    return await live_factory(callback_url=backend.url, tip_interval=0.05)


class LoopbackHttpClient(timsdk.HttpClient):
    """timsdk's own HTTP client, sending to ``origin`` instead of Tencent's host."""

    def __init__(self, origin: str, app_id: int, identifier: str, signature: str) -> None:
        super().__init__(app_id, identifier, signature)
        self.origin = origin

    def get_url(self, path: str, random_id: int | None = None) -> str:
        url: str = (super().get_url(path) if random_id is None
                    else super().get_url(path, random_id))
        assert url.startswith(TENCENT_ORIGIN + "/"), url  # the SDK builds the rest
        return self.origin + url.removeprefix(TENCENT_ORIGIN)

    def close(self) -> None:
        self._http.close()


@pytest.fixture
async def tim(server: Live) -> AsyncIterator[timsdk.TimClient]:
    """timsdk's TimClient, its API objects pointed at ``server``."""
    client = timsdk.TimClient(SDKAPPID, KEY, "administrator")
    loopback = LoopbackHttpClient(server.url(""), SDKAPPID, client.identifier,
                                  client.signature)
    for api in (client.group_open_http_svc, client.im_open_login_svc, client.open_im,
                client.profile, client.sns, client.open_config_svr, client.open_msg_svc):
        api.set_client(loopback)
    yield client
    loopback.close()


@pytest.fixture
def tcim(server: Live) -> TCIMClient:
    return TCIMClient(SDKAPPID, KEY, "administrator", tencent_url=server.url("/v4"))


# ------------------------------------------------------------ helpers
async def sdk(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one synchronous SDK call in a thread; its answer as a dict."""
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if isinstance(result, requests.Response):  # tencentcloud-sdk-python-im
        assert result.status_code == 200, result.status_code
        result = result.json()
    assert isinstance(result, dict), result
    return result


async def tip(client: Client, kind: str) -> dict[str, Any]:
    """The next tip of ``kind`` pushed to ``client`` (tips of other kinds skipped)."""
    while True:
        for t in (await client.next_push("tips"))["tips"]:
            if t["type"] == kind:
                return t


async def message(client: Client) -> dict[str, Any]:
    (msg,) = (await client.next_push("msgs"))["msgs"]
    return dict(msg)


async def muted_until(live: Live, gid: str, user: str) -> int:
    """The end of ``user``'s mute as the current API name tells it."""
    r = ok(await rest(live, G, "get_group_muted_account", {"GroupId": gid}))
    (until,) = [m["MutedUntil"] for m in r["MutedAccountList"] if m["Member_Account"] == user]
    return int(until)


# ------------------------------------------------------------ timsdk
async def test_timsdk_runs_a_live_room_backend_flow(server: Live, backend: Backend,
                                                    tim: timsdk.TimClient) -> None:
    groups, login = tim.group_open_http_svc, tim.im_open_login_svc
    generic = groups.get_client().post
    ok(await sdk(login.account_import, "host", nick="Host"))
    r = ok(await sdk(groups.create_group, "Evening show", owner_account="host",
                     group_type=groups.TYPE_AV_CHAT_ROOM, notification="welcome"))
    gid = r["GroupId"]
    created = await backend.wait_count(cb.AFTER_CREATE, 1)
    assert created[0].q["ClientIP"] == LOOPBACK and created[0].body["GroupId"] == gid
    alice, bob = [await server.client(u, join=gid) for u in ("alice", "bob")]
    # send and system notification
    ok(await sdk(groups.send_group_msg, gid, text("hello"), msg_random=11))
    msg = await message(alice)
    assert msg["msgBody"] == text("hello") and msg["from"] == "administrator"
    ok(await sdk(groups.send_group_system_notification, gid, "doors close at 9"))
    assert (await tip(alice, "system"))["content"] == "doors close at 9"
    # mute by the older ShutUpTime, listed in the older shape
    ok(await sdk(groups.forbid_send_msg, gid, ["alice"], 3600))
    assert (await alice.send(gid, text("x")))["code"] == 10017
    r = ok(await sdk(groups.get_group_shut_uin, gid))
    assert r["ShuttedUinList"] == [{"Member_Account": "alice",
                                    "ShuttedUntil": await muted_until(server, gid, "alice")}]
    ok(await sdk(groups.forbid_send_msg, gid, ["alice"]))  # the SDK's default 0: unmute
    assert ok(await sdk(groups.get_group_shut_uin, gid))["ShuttedUinList"] == []
    assert (await alice.send(gid, text("back")))["code"] == 0
    # profile
    ok(await sdk(groups.modify_group_base_info, gid, name="Late show",
                 notification="starting", shut_up_all_member="On"))
    changes = (await tip(bob, "groupInfo"))["changes"]
    assert changes["Name"] == "Late show" and changes["Notification"] == "starting"
    (info,) = ok(await sdk(groups.get_group_info, [gid]))["GroupInfo"]
    assert info["ErrorCode"] == 0 and info["Name"] == "Late show"
    assert info["Notification"] == "starting" and info["MuteAllMember"] == "On"
    # counters and online count (no SDK method: its generic transport)
    r = ok(await sdk(generic, f"{G}/update_group_counter", data={
        "GroupId": gid, "Mode": "Increase", "GroupCounter": [{"Key": "like", "Value": 3}]}))
    assert r["GroupCounter"] == [{"Key": "like", "Value": 3}]
    assert (await tip(alice, "counters"))["counters"] == [{"Key": "like", "Value": 3}]
    r = ok(await sdk(generic, f"{G}/get_online_member_num", data={"GroupId": gid}))
    assert r["OnlineMemberNum"] == 2
    # ban: the exit callback carries the REST caller's address
    ok(await sdk(generic, f"{G}/ban_group_member", data={
        "GroupId": gid, "Members_Account": ["bob"], "Duration": 60}))
    assert await bob.wait_closed() == 4004
    (exit_,) = await backend.wait_count(cb.AFTER_EXIT, 1, ExitType="Kicked")
    assert exit_.q["ClientIP"] == LOOPBACK and exit_.q["OptPlatform"] == "RESTAPI"
    assert exit_.body["ExitMemberList"] == [{"Member_Account": "bob"}]
    # kick by the older Identifier
    ok(await sdk(login.kick, "alice"))
    assert (await alice.next_push("kicked"))["reason"] == "adminKick"
    assert await alice.wait_closed() == 4003
    # destroy
    carol = await server.client("carol", join=gid)
    ok(await sdk(groups.destroy_group, gid))
    assert (await carol.next_push("kicked"))["reason"] == "groupDestroyed"
    fails(await sdk(groups.get_group_shut_uin, gid), 10010)
    destroyed = await backend.wait_count(cb.AFTER_DESTROYED, 1)
    assert destroyed[0].q["ClientIP"] == LOOPBACK


async def test_timsdk_get_calls_get_a_readable_envelope(server: Live,
                                                        tim: timsdk.TimClient) -> None:
    """timsdk sends two calls with GET; each gets the JSON envelope, not an HTTP error."""
    await server.room("r1")
    for r in (await sdk(tim.group_open_http_svc.get_app_id_group_list),
              await sdk(tim.im_open_login_svc.account_check, ["alice"])):
        assert r == {"ActionStatus": "FAIL", "ErrorCode": 60002,
                     "ErrorInfo": "REST requests must use POST, not GET"}


# ------------------------------------------------------------ tencentcloud-sdk-python-im
async def test_tencentcloud_sdk_runs_a_live_room_backend_flow(
        server: Live, backend: Backend, tcim: TCIMClient) -> None:
    group = GroupObj("host", "AVChatRoom", "Morning show", notification="hi",
                     group_id="tcim-room-1")
    gid = ok(await sdk(tcim.create_group, group))["GroupId"]
    assert gid == "tcim-room-1"
    alice, bob = [await server.client(u, join=gid) for u in ("alice", "bob")]
    # the SDK's default GroupType "" lists every room
    r = ok(await sdk(tcim.get_group))
    assert r["GroupIdList"] == [{"GroupId": gid}] and r["TotalCount"] == 1
    # send and system notification
    ok(await sdk(tcim.send_group_message, gid, [MessageText("hello")], from_account="host"))
    msg = await message(alice)
    assert msg["msgBody"] == text("hello") and msg["from"] == "host"
    ok(await sdk(tcim.send_system_message_in_group, gid, "doors close at 9"))
    assert (await tip(bob, "system"))["content"] == "doors close at 9"
    # mute by ShutUpTime, listed as ShuttedUinList
    ok(await sdk(tcim.forbid_send_msg, gid, ["alice"], 4294967295))
    assert (await alice.send(gid, text("x")))["code"] == 10017
    r = ok(await sdk(tcim.get_group_shutup_list, gid))
    assert r["GroupId"] == gid
    assert r["ShuttedUinList"] == [{"Member_Account": "alice", "ShuttedUntil": 4294967295}]
    ok(await sdk(tcim.forbid_send_msg, gid, ["alice"], 0))
    assert ok(await sdk(tcim.get_group_shutup_list, gid))["ShuttedUinList"] == []
    # profile
    ok(await sdk(tcim.update_group_baseinfo, gid, group_name="Noon show",
                 introduction="daily", shutUpFlag="On"))
    changes = (await tip(alice, "groupInfo"))["changes"]
    assert changes["Name"] == "Noon show" and changes["Introduction"] == "daily"
    (info,) = ok(await sdk(tcim.get_group_detail, [gid]))["GroupInfo"]
    assert info["Name"] == "Noon show" and info["MuteAllMember"] == "On"
    assert info["Owner_Account"] == "host" and info["Type"] == "AVChatRoom"
    # online count
    assert ok(await sdk(tcim.get_online_member_num, gid))["OnlineMemberNum"] == 2
    # kick (UserID)
    ok(await sdk(tcim.abolition_user_sig, "bob"))
    assert (await bob.next_push("kicked"))["reason"] == "adminKick"
    assert await bob.wait_closed() == 4003
    # destroy
    ok(await sdk(tcim.delete_group, gid))
    assert (await alice.next_push("kicked"))["reason"] == "groupDestroyed"
    fails(await sdk(tcim.get_online_member_num, gid), 10010)
    assert ok(await sdk(tcim.get_group))["GroupIdList"] == []
    (destroyed,) = await backend.wait_count(cb.AFTER_DESTROYED, 1)
    assert destroyed.q["ClientIP"] == LOOPBACK and destroyed.body["GroupId"] == gid


# ------------------------------------------------------------ other methods
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_a_rest_call_without_post_gets_the_envelope(live: Live, method: str) -> None:
    url = live.url(f"/v4/{G}/get_online_member_num")
    params = {"sdkappid": str(SDKAPPID), "identifier": "administrator", "usersig": "x",
              "random": "1", "contenttype": "json"}
    async with aiohttp.ClientSession() as http, http.request(method, url, params=params,
                                                             json={"GroupId": "r1"}) as resp:
        assert resp.status == 200 and resp.headers["Allow"] == "POST"
        assert resp.content_type == "application/json"
        assert await resp.json() == {"ActionStatus": "FAIL", "ErrorCode": 60002,
                                     "ErrorInfo": f"REST requests must use POST, not {method}"}
    async with aiohttp.ClientSession() as http, http.get(live.url("/v4/profile/portrait_get")
                                                         ) as resp:
        assert (await resp.json())["ErrorDisplay"] == ""  # as every profile answer
    # the server keeps serving POST
    gid = await live.room("r1")
    assert ok(await rest(live, G, "get_online_member_num", {"GroupId": gid}))[
        "OnlineMemberNum"] == 0
