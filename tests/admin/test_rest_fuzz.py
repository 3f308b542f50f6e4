"""Random bodies to every REST command (livecast/admin/rest.py and the handlers).

Property: whatever the body (random JSON, plausible fields with wrong types,
bytes that are not JSON or not UTF-8), the answer is HTTP 200 with the
envelope and an integer ErrorCode, never 10002 (a handler bug), and the server
keeps working afterwards: the second test, on the same server, creates a
room, sends through REST and sees a real member receive the message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.admin.rest import COMMANDS
from livecast.client import Client, ClientClosed, text
from tests.admin.conftest import ok, rest
from tests.conftest import SDKAPPID, Live, base_settings, sig, start_live
from tests.strategies import json_trees

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOM = "fuzz"
FIELDS = sorted({
    "GroupId", "Type", "Name", "Owner_Account", "Introduction", "Notification", "FaceUrl",
    "MaxMemberCount", "MaxMemberNum", "ApplyJoinOption", "AppDefinedData", "MemberList",
    "GroupIdList", "ResponseFilter", "MuteAllMember", "ShutUpAllMember", "Limit", "Next",
    "GroupType", "From_Account", "Random", "MsgPriority", "MsgBody", "CloudCustomData",
    "ForbidCallbackControl", "SendMsgControl", "OnlineOnlyFlag", "OfflinePushInfo", "To_Account",
    "GroupAtInfo", "ToMembers_Account", "Content", "Members_Account", "MuteTime", "Duration",
    "Description", "Offset", "GroupCounter", "GroupCounterKeys", "Mode", "Timestamp", "Mark",
    "Member_Account", "UserID", "Identifier", "Nick", "Accounts", "AccountList", "ProfileItem",
    "TagList", "Rate", "Burst"})
PLAUSIBLE: list[Any] = [
    ROOM, "alice", "AVChatRoom", "High", "Lowest", "Set", "Increase", "On", "", 0, 1, 60,
    4294967295, 2**63, -1, True, None, [], [ROOM], ["alice"], text("x"),
    [{"Key": "k", "Value": "v"}], [{"Key": "k", "Value": 1}], {"GroupBaseInfoFilter": ["Name"]},
    [{"Tag": "Tag_Profile_IM_Nick", "Value": "N"}], [{"UserID": "u", "Nick": "n"}]]

scalars = (st.none() | st.booleans() | st.integers(-2**65, 2**65) | st.text(max_size=12)
           | st.floats(allow_nan=False, allow_infinity=False))
json_values = json_trees(scalars, max_leaves=10)
values = st.sampled_from(PLAUSIBLE) | json_values
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=6)
raw_bodies = bodies.map(lambda b: json.dumps(b).encode()) | json_values.map(
    lambda v: json.dumps(v).encode()) | st.binary(max_size=64)
commands = st.sampled_from([*sorted(COMMANDS), ("group_open_http_svc", "nope"), ("nope", "x")])
NICK = "Tag_Profile_IM_Nick"
# A valid body per command; the fuzz mutates these to reach deep validation paths.
TEMPLATES: dict[str, dict[str, Any]] = {
    "create_group": {"Type": "AVChatRoom", "Name": "n", "GroupId": "g1",
                     "AppDefinedData": [{"Key": "k", "Value": "v"}]},
    "get_group_info": {"GroupIdList": [ROOM], "ResponseFilter": {"GroupBaseInfoFilter": ["Name"]}},
    "modify_group_base_info": {"GroupId": ROOM, "Name": "n", "MuteAllMember": "Off",
                               "AppDefinedData": [{"Key": "k", "Value": "v"}]},
    "get_appid_group_list": {"Limit": 2, "Next": 0, "GroupType": "AVChatRoom"},
    "send_group_msg": {"GroupId": ROOM, "Random": 1, "MsgBody": text("x"), "MsgPriority": "High",
                       "From_Account": "bob", "CloudCustomData": "c"},
    "send_group_system_notification": {"GroupId": ROOM, "Content": "c"},
    "send_broadcast_msg": {"Random": 1, "MsgBody": text("x")},
    "forbid_send_msg": {"GroupId": ROOM, "Members_Account": ["bob"], "MuteTime": 60},
    "update_group_counter": {"GroupId": ROOM, "GroupCounter": [{"Key": "k", "Value": 1}],
                             "Mode": "Increase"},
    "get_group_counter": {"GroupId": ROOM, "GroupCounterKeys": ["k"]},
    "delete_group_counter": {"GroupId": ROOM, "GroupCounterKeys": ["k"]},
    "ban_group_member": {"GroupId": ROOM, "Members_Account": ["bob"], "Duration": 60},
    "unban_group_member": {"GroupId": ROOM, "Members_Account": ["bob"]},
    "get_group_ban_member": {"GroupId": ROOM, "Limit": 10, "Offset": 0},
    "get_members": {"GroupId": ROOM, "Timestamp": 0},
    "check_members": {"GroupId": ROOM, "Member_Account": ["alice"]},
    "account_import": {"UserID": "u", "Nick": "n", "FaceUrl": "f"},
    "multiaccount_import": {"AccountList": [{"UserID": "u", "Nick": "n"}]},
    "kick": {"UserID": "bob"},
    "portrait_set": {"From_Account": "u", "ProfileItem": [{"Tag": NICK, "Value": "n"}]},
    "portrait_get": {"To_Account": ["u"], "TagList": [NICK]},
    "set_room_rate": {"GroupId": ROOM, "Rate": 40, "Burst": 40},
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[tuple[str, str], bytes]:
    """A command with its valid body, changed in up to three places."""
    command = draw(commands)
    body = dict(TEMPLATES.get(command[1], {"GroupId": ROOM}))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        if action == "drop" and body:
            del body[draw(st.sampled_from(sorted(body)))]
        elif action == "set" and body:
            body[draw(st.sampled_from(sorted(body)))] = draw(values)
        else:
            body[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = draw(values)
    return command, json.dumps(body).encode()


requests = mutated() | st.tuples(commands, raw_bodies)


class Fuzz:
    """The fuzzed server, its HTTP session, and a WebSocket member of the room."""

    def __init__(self, live: Live, http: aiohttp.ClientSession) -> None:
        self.live = live
        self.http = http
        self.calls = 0
        self.member: Client | None = None
        self.name = ""

    async def ensure_room(self) -> None:
        """The room exists (again) with a live member (a fresh one after a kick or ban)."""
        node = self.live.node
        if ROOM not in node.rooms:
            await node.create_group("", {"Name": ROOM}, ROOM)
        if self.member is None or self.member.close_code is not None:
            self.name = f"m{self.calls}"
            self.member = await self.live.client(self.name)
        if any(c.user == self.name for c in node.hub.members(ROOM)):
            return
        try:
            joined = await self.member.join(ROOM)
        except ClientClosed:
            joined = {"code": -1}
        if joined["code"] != 0:
            self.member = None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz() -> AsyncIterator[Fuzz]:
    s = base_settings(max_wait=(0.05, 0.05, 0.05, 0.05))
    live = await start_live(s)
    async with aiohttp.ClientSession() as http:
        yield Fuzz(live, http)
    for c in live.clients:
        await c.close()
    await live.server.close()


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests)
async def test_random_bodies_get_an_envelope(fuzz: Fuzz,
                                             request: tuple[tuple[str, str], bytes]) -> None:
    await fuzz.ensure_room()
    command, raw = request
    answer = await rest(fuzz.live, *command, raw, http=fuzz.http)
    fuzz.calls += 1
    assert isinstance(answer["ErrorCode"], int) and answer["ErrorCode"] != 10002, answer
    assert answer["ActionStatus"] == ("OK" if answer["ErrorCode"] == 0 else "FAIL")
    assert isinstance(answer["ErrorInfo"], str)


async def test_the_server_still_works_after_the_fuzz(fuzz: Fuzz) -> None:
    live = fuzz.live
    assert fuzz.calls >= 100
    gid = ok(await rest(live, "group_open_http_svc", "create_group",
                        {"Type": "AVChatRoom", "Name": "after"}))["GroupId"]
    viewer = Client(live.ws_url)
    await viewer.connect()
    try:
        assert (await viewer.login(SDKAPPID, "viewer", sig("viewer")))["code"] == 0
        assert (await viewer.join(gid))["code"] == 0
        r = ok(await rest(live, "group_open_http_svc", "send_group_msg",
                          {"GroupId": gid, "Random": 1, "MsgBody": text("still here")}))
        assert r["MsgSeq"] == 1
        (msg,) = (await viewer.next_push("msgs"))["msgs"]
        assert msg["msgBody"] == text("still here")
    finally:
        await viewer.close()
