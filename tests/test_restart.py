"""A restart loses nothing: ``livecast serve`` stopped (SIGTERM, and SIGKILL) and
started again with the same settings, on each engine: SQLite in a data
directory (the default) and a real redis-server.

Before the stop, over REST and WebSocket as an operator and viewers would:
rooms with a profile, custom data, counters, attributes, a mute, a ban,
mute-all, a room rate, a kicked user, likes counted in-process, users'
profiles.  After the
start, every one of them is back, members rejoin with code 0, the banned and
the kicked are still refused, and the room's seq visibly starts a new epoch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import orjson
import pytest

from livecast.client import Client, custom
from livecast.core.usersig import mint
from tests.redis_fixtures import RedisServer, free_port, redis_server

__all__ = ["redis_server"]

SDKAPPID = 1400000000
KEY = "restart-test-key-0123456789abcdef0123456789"
READY_TIMEOUT = 30.0


def sig(user: str, at: float | None = None) -> str:
    return mint(SDKAPPID, KEY, user, time.time() if at is None else at, 3600)


async def start_ready(command: str, env: dict[str, str],
                      ready_url: str) -> asyncio.subprocess.Process:
    """``livecast <command>`` as a process, once ``ready_url`` answers 200."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", command, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.returncode is None, f"livecast {command} exited at start"
            try:
                async with http.get(ready_url) as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, f"livecast {command} never became ready"
            await asyncio.sleep(0.05)  # polling a process for readiness, not a sync stand-in


def cluster_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a cluster member on ``redis_url`` (no caller's LIVECAST_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_SHUTDOWN_GRACE="1",
               LIVECAST_REDIS_URL=redis_url, LIVECAST_DATA_DIR=str(tmp_path / "unused"),
               **extra)
    return env


async def start_servers(env: dict[str, str], n: int, started: list[Server]) -> None:
    """``n`` servers on free ports, appended to ``started`` as each is ready."""
    for _ in range(n):
        port = free_port()
        s = Server(dict(env, LIVECAST_PORT=str(port)), port)
        await s.start()
        started.append(s)


async def kill_servers(servers: list[Server]) -> None:
    for s in servers:
        if s.proc is not None:
            await s.stop(signal.SIGKILL)


@dataclass
class Process:
    """One ``livecast <command>`` process on a fixed port and settings
    (restartable), ready once ``ready`` answers 200."""

    env: dict[str, str]
    port: int
    proc: asyncio.subprocess.Process | None = None
    command: ClassVar[str] = "serve"
    ready: ClassVar[str] = "/readyz"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await start_ready(self.command, self.env, self.base + self.ready)

    async def stop(self, how: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(how)
        await asyncio.wait_for(self.proc.wait(), 20)
        self.proc = None


@dataclass
class Server(Process):
    """One ``livecast serve`` process."""

    async def rest(self, service: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        params = {"sdkappid": str(SDKAPPID), "identifier": "administrator",
                  "usersig": sig("administrator"), "random": "1", "contenttype": "json"}
        async with aiohttp.ClientSession() as http, http.post(
                f"{self.base}/v4/{service}/{command}", params=params,
                data=orjson.dumps(body)) as resp:
            result: dict[str, Any] = await resp.json(content_type=None)
            return result

    async def ok(self, service: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.rest(service, command, body)
        assert r["ErrorCode"] == 0, (command, r)
        return r

    async def client(self, user: str, user_sig: str | None = None) -> tuple[Client, int]:
        c = Client(f"ws://127.0.0.1:{self.port}/v1/ws")
        await c.connect()
        r = await c.login(SDKAPPID, user, user_sig or sig(user))
        return c, int(r["code"])


@pytest.fixture(params=["sqlite", "redis"])
def engine_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_SHUTDOWN_GRACE="1",
               LIVECAST_COUNTER_MIN_S="1", LIVECAST_COUNTER_MAX_S="1.5",
               LIVECAST_DATA_DIR=str(tmp_path / "data"))
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        env["LIVECAST_REDIS_URL"] = server.url
    yield env


@pytest.fixture
async def server(engine_env: dict[str, str]) -> AsyncIterator[Server]:
    s = Server(dict(engine_env, LIVECAST_PORT=str(free_port())), 0)
    s.port = int(s.env["LIVECAST_PORT"])
    await s.start()
    yield s
    if s.proc is not None:
        await s.stop(signal.SIGKILL)


async def until(condition: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)  # polling the server's REST answer, bounded by ``within``


async def group_info(s: Server, gid: str) -> dict[str, Any]:
    r = await s.ok("group_open_http_svc", "get_group_info", {"GroupIdList": [gid]})
    info: dict[str, Any] = r["GroupInfo"][0]
    return info


def app_data(info: dict[str, Any]) -> dict[str, str]:
    return {i["Key"]: i["Value"] for i in info.get("AppDefinedData", [])}


async def populate(s: Server) -> dict[str, Any]:
    """Everything an operator sets on a room, and likes counted into it."""
    await s.ok("group_open_http_svc", "create_group", {
        "Type": "AVChatRoom", "GroupId": "live-1", "Name": "Spring sale",
        "Introduction": "intro", "Notification": "welcome", "FaceUrl": "https://x.test/f.png",
        "AppDefinedData": [{"Key": "stage", "Value": "opening"}]})
    await s.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": "quiet", "Name": "Quiet room"})
    await s.ok("group_open_http_svc", "modify_group_base_info",
               {"GroupId": "quiet", "MuteAllMember": "On"})
    await s.ok("group_open_http_svc", "update_group_counter",
               {"GroupId": "live-1", "GroupCounter": [{"Key": "visits", "Value": 7}]})
    await s.ok("group_open_http_svc", "modify_group_attr",
               {"GroupId": "live-1", "GroupAttr": [{"key": "pinned", "value": "50% off"}]})
    await s.ok("group_open_http_svc", "forbid_send_msg",
               {"GroupId": "live-1", "Members_Account": ["alice"], "MuteTime": 600})
    await s.ok("group_open_http_svc", "ban_group_member",
               {"GroupId": "live-1", "Members_Account": ["bob"], "Duration": 600})
    await s.ok("livecast_ext", "set_room_rate", {"GroupId": "live-1", "Rate": 7, "Burst": 9})
    carol_old = sig("carol", time.time() - 10)
    await s.ok("im_open_login_svc", "kick", {"UserID": "carol"})
    await s.ok("profile", "portrait_set", {"From_Account": "erin", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "Erin"},
        {"Tag": "Tag_Profile_IM_Image", "Value": "https://x.test/erin.png"},
        {"Tag": "Tag_Profile_Custom_Level", "Value": 5}]})
    dave, code = await s.client("dave")
    assert code == 0
    assert (await dave.request("setMyProfile", nick="Dave D"))["code"] == 0
    joined = await dave.join("live-1")
    assert joined["code"] == 0
    for _ in range(3):
        r = await dave.send("live-1", custom('{"type":"like","count":5}', "like"), "Low")
        assert r["code"] == 0
    first = await s.ok("group_open_http_svc", "send_group_msg", {
        "GroupId": "live-1", "From_Account": "administrator", "Random": 4242,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "once"}}]})
    assert first["MsgSeq"] > 0
    await until(lambda: _likes_are(s, "15"), "the like total written back")
    await dave.close()
    return {"carol_old": carol_old, "epoch": joined["epoch"],
            "info": await group_info(s, "live-1")}


async def _likes_are(s: Server, total: str) -> bool:
    return app_data(await group_info(s, "live-1")).get("likes") == total


async def check_restored(s: Server, before: dict[str, Any]) -> None:
    info = await group_info(s, "live-1")
    for key in ("Name", "Introduction", "Notification", "FaceUrl", "Owner_Account"):
        assert info[key] == before["info"][key], key
    assert app_data(info) == {"stage": "opening", "likes": "15"}
    counters = await s.ok("group_open_http_svc", "get_group_counter", {"GroupId": "live-1"})
    assert {c["Key"]: c["Value"] for c in counters["GroupCounter"]} == {"visits": 7}
    attrs = await s.ok("group_open_attr_http_svc", "get_group_attr", {"GroupId": "live-1"})
    assert attrs["GroupAttrAry"] == [{"key": "pinned", "value": "50% off"}]
    rate = await s.ok("livecast_ext", "get_room_rate", {"GroupId": "live-1"})
    assert (rate["Rate"], rate["Burst"], rate["Custom"]) == (7, 9, True)
    quiet = await group_info(s, "quiet")
    assert quiet["MuteAllMember"] == "On"
    muted = await s.ok("group_open_http_svc", "get_group_muted_account", {"GroupId": "live-1"})
    [entry] = muted["MutedAccountList"]
    assert entry["Member_Account"] == "alice" and entry["MutedUntil"] > time.time() + 500
    # a REST send repeated with the same Random within 5 minutes is not delivered again
    again = await s.ok("group_open_http_svc", "send_group_msg", {
        "GroupId": "live-1", "From_Account": "administrator", "Random": 4242,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "once"}}]})
    assert (again["MsgSeq"], again["MsgDropReason"]) == (0, "Duplicate")
    # profiles, set over REST and by a member himself
    got = await s.ok("profile", "portrait_get", {"To_Account": ["erin"], "TagList": [
        "Tag_Profile_IM_Nick", "Tag_Profile_IM_Image", "Tag_Profile_Custom_Level"]})
    assert {i["Tag"]: i["Value"] for i in got["UserProfileItem"][0]["ProfileItem"]} == {
        "Tag_Profile_IM_Nick": "Erin", "Tag_Profile_IM_Image": "https://x.test/erin.png",
        "Tag_Profile_Custom_Level": 5}
    dave, code = await s.client("dave")
    assert code == 0
    assert (await dave.request("getMyProfile"))["nick"] == "Dave D"
    await dave.close()
    # members rejoin; the muted may not speak, the banned may not join
    alice, code = await s.client("alice")
    assert code == 0
    joined = await alice.join("live-1")
    assert joined["code"] == 0 and joined["epoch"] > before["epoch"]  # a new seq epoch
    r = await alice.send("live-1", custom('{"type":"text"}', "hi"))
    assert r["code"] == 10017
    bob, code = await s.client("bob")
    assert code == 0 and (await bob.join("live-1"))["code"] == 10007
    # the kicked user's earlier UserSig is still refused; a new one works
    old_carol, code = await s.client("carol", before["carol_old"])
    await old_carol.close()
    assert code == 70001
    carol, code = await s.client("carol", sig("carol", time.time() + 2))
    assert code == 0
    for c in (alice, bob, carol):
        await c.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_a_restart_keeps_every_room_and_rule(server: Server, how: signal.Signals) -> None:
    before = await populate(server)
    await server.stop(how)
    await server.start()
    await check_restored(server, before)


async def test_a_room_destroyed_before_the_restart_stays_destroyed(server: Server) -> None:
    await server.ok("group_open_http_svc", "create_group",
                    {"Type": "AVChatRoom", "GroupId": "gone", "Name": "Gone"})
    await server.ok("group_open_http_svc", "destroy_group", {"GroupId": "gone"})
    await server.stop(signal.SIGKILL)
    await server.start()
    r = await server.rest("group_open_http_svc", "get_group_info", {"GroupIdList": ["gone"]})
    assert r["GroupInfo"][0]["ErrorCode"] == 10010
