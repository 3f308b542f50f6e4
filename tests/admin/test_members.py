"""Mute, ban, online count and list, and the member APIs an AVChatRoom
refuses (livecast/admin/members.py), over real HTTP with real members."""

from __future__ import annotations

import math
from typing import Any

import pytest

from livecast.admin import state
from livecast.client import text
from livecast.gateway.keys import ADMIN
from tests.admin.conftest import ManualClock, fails, ok, rest
from tests.conftest import Live

G = "group_open_http_svc"
AVC = "group_open_avchatroom_http_svc"
FOREVER = 4294967295


async def call(live: Live, command: str, body: Any, service: str = G) -> dict[str, Any]:
    return await rest(live, service, command, body)


# ------------------------------------------------------------ mute
async def test_mute_unmute_and_list(clocked: Live, clock: ManualClock) -> None:
    live = clocked
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "forbid_send_msg",
                  {"GroupId": gid, "Members_Account": ["alice", "bob"], "MuteTime": 60}))
    tip = await alice.next_push("tips")
    until = math.ceil(clock.now + 60)
    assert {"type": "mute", "member": "alice", "until": until} in tip["tips"]
    assert (await alice.send(gid, text("x")))["code"] == 10017
    r = ok(await call(live, "get_group_muted_account", {"GroupId": gid}))
    assert r["GroupId"] == gid
    assert r["MutedAccountList"] == [{"Member_Account": "alice", "MutedUntil": until},
                                     {"Member_Account": "bob", "MutedUntil": until}]
    r = ok(await call(live, "get_group_shutted_uin", {"GroupId": gid}))
    assert r == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "GroupId": gid,
                 "ShuttedUinList": [{"Member_Account": "alice", "ShuttedUntil": until},
                                    {"Member_Account": "bob", "ShuttedUntil": until}]}
    ok(await call(live, "forbid_send_msg",
                  {"GroupId": gid, "Members_Account": ["bob"], "MuteTime": FOREVER}))
    ok(await call(live, "forbid_send_msg",
                  {"GroupId": gid, "Members_Account": ["alice"], "MuteTime": 0}))
    assert (await alice.send(gid, text("x")))["code"] == 0
    clock.advance(3000)
    r = ok(await call(live, "get_group_muted_account", {"GroupId": gid}))
    assert r["MutedAccountList"] == [{"Member_Account": "bob", "MutedUntil": FOREVER}]


async def test_the_older_shut_up_time_mutes_and_unmutes(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "forbid_send_msg",
                  {"GroupId": gid, "Members_Account": ["alice"], "ShutUpTime": FOREVER}))
    assert (await alice.send(gid, text("x")))["code"] == 10017
    r = ok(await call(live, "get_group_shutted_uin", {"GroupId": gid}))
    assert r["ShuttedUinList"] == [{"Member_Account": "alice", "ShuttedUntil": FOREVER}]
    # MuteTime wins when both are given, as MuteAllMember over ShutUpAllMember.
    ok(await call(live, "forbid_send_msg", {"GroupId": gid, "Members_Account": ["alice"],
                                            "MuteTime": 0, "ShutUpTime": 60}))
    assert (await alice.send(gid, text("x")))["code"] == 0
    for bad_time in (-1, FOREVER + 1, "60", None, True):
        fails(await call(live, "forbid_send_msg", {"GroupId": gid, "Members_Account": ["a"],
                                                   "ShutUpTime": bad_time}), 10004)
    r = fails(await call(live, "forbid_send_msg", {"GroupId": gid, "Members_Account": ["a"]}),
              10004)
    assert "MuteTime" in r["ErrorInfo"]
    r = ok(await call(live, "get_group_shutted_uin", {"GroupId": gid}))
    assert r["ShuttedUinList"] == []
    fails(await call(live, "get_group_shutted_uin", {"GroupId": "nope"}), 10010)


async def test_mute_errors_change_nothing(live: Live) -> None:
    gid = await live.room("r1")
    base = {"GroupId": gid, "Members_Account": ["a"], "MuteTime": 60}
    for change in ({"Members_Account": []}, {"Members_Account": "a"},
                   {"Members_Account": ["a", ""]}, {"Members_Account": ["a", 5]},
                   {"MuteTime": -1}, {"MuteTime": FOREVER + 1}, {"MuteTime": "60"},
                   {"MuteTime": 1.5}):
        fails(await call(live, "forbid_send_msg", {**base, **change}), 10004)
    fails(await call(live, "forbid_send_msg",
                     {**base, "Members_Account": [f"u{i}" for i in range(501)]}), 10005)
    fails(await call(live, "forbid_send_msg", {**base, "GroupId": "nope"}), 10010)
    r = ok(await call(live, "get_group_muted_account", {"GroupId": gid}))
    assert r["MutedAccountList"] == []
    ok(await call(live, "forbid_send_msg",
                  {**base, "Members_Account": [f"u{i}" for i in range(500)]}))


# ------------------------------------------------------------ online count / list
async def test_online_member_num_counts_connections(live: Live) -> None:
    gid = await live.room("r1")
    assert ok(await call(live, "get_online_member_num", {"GroupId": gid}))["OnlineMemberNum"] == 0
    await live.client("alice", join=gid)
    await live.client(None, join=gid)
    assert ok(await call(live, "get_online_member_num", {"GroupId": gid}))["OnlineMemberNum"] == 2
    fails(await call(live, "get_online_member_num", {"GroupId": "nope"}), 10010)


async def test_get_members_lists_logged_in_members_newest_first(live: Live) -> None:
    gid = await live.room("r1")
    ok(await rest(live, "profile", "portrait_set", {"From_Account": "bob", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "Bob"}]}))
    await live.client("alice", join=gid)
    await live.client("bob", join=gid)
    await live.client(None, join=gid)  # a guest is not listed
    r = ok(await call(live, "get_members", {"GroupId": gid, "Timestamp": 0}, AVC))
    assert [m["Member_Account"] for m in r["MemberList"]] == ["bob", "alice"]
    bob = r["MemberList"][0]
    assert bob["NickName"] == "Bob" and bob["Avatar"] == ""
    assert abs(bob["JoinTime"] - live.node.clock()) < 60 and r["NextTimestamp"] == 0
    again = ok(await call(live, "get_members", {"GroupId": gid, "Mark": 1000}, AVC))
    assert [m["JoinTime"] for m in again["MemberList"]] == [m["JoinTime"] for m in r["MemberList"]]


async def test_get_members_pages(live: Live) -> None:
    gid = await live.room("r1")
    for name in ("a", "b", "c"):
        await live.client(name, join=gid)
    live.server.app[ADMIN].members_page = 2
    first = ok(await call(live, "get_members", {"GroupId": gid}, AVC))
    second = ok(await call(live, "get_members",
                           {"GroupId": gid, "Timestamp": first["NextTimestamp"]}, AVC))
    assert [m["Member_Account"] for m in first["MemberList"]] == ["c", "b"]
    assert [m["Member_Account"] for m in second["MemberList"]] == ["a"]
    assert first["NextTimestamp"] != 0 and second["NextTimestamp"] == 0


async def test_the_pages_of_a_listing_come_from_one_snapshot(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member joining between two pages does not shift the second (a
    listing serves its pages for ``LISTING_TTL`` s: long here)."""
    monkeypatch.setattr(state, "LISTING_TTL", 600.0)
    gid = await live.room("r1")
    for name in ("a", "b", "c"):
        await live.client(name, join=gid)
    live.server.app[ADMIN].members_page = 2
    first = ok(await call(live, "get_members", {"GroupId": gid}, AVC))
    await live.client("d", join=gid)
    second = ok(await call(live, "get_members",
                           {"GroupId": gid, "Timestamp": first["NextTimestamp"]}, AVC))
    assert [m["Member_Account"] for m in first["MemberList"] + second["MemberList"]] == [
        "c", "b", "a"]


async def test_check_members(live: Live) -> None:
    gid = await live.room("r1")
    await live.client("alice", join=gid)
    await live.client("carol")  # online, not in the room
    r = ok(await call(live, "check_members",
                      {"GroupId": gid, "Member_Account": ["carol", "alice", "zed", "alice"]}, AVC))
    assert r["Member_Account"] == ["alice"]
    for body in ({"GroupId": gid}, {"GroupId": gid, "Member_Account": []},
                 {"GroupId": gid, "Member_Account": [3]}):
        fails(await call(live, "check_members", body, AVC), 10004)
    fails(await call(live, "check_members",
                     {"GroupId": gid, "Member_Account": [f"u{i}" for i in range(501)]}, AVC), 10005)
    fails(await call(live, "get_members", {"GroupId": gid, "Timestamp": -1}, AVC), 10004)
    fails(await call(live, "get_members", {"GroupId": "nope"}, AVC), 10010)


# ------------------------------------------------------------ ban
async def test_ban_kicks_with_4004_and_blocks_rejoin_until_it_ends(clocked: Live,
                                                                    clock: ManualClock) -> None:
    live = clocked
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    ok(await call(live, "ban_group_member", {"GroupId": gid, "Members_Account": ["alice"],
                                             "Duration": 60, "Description": "spam"}))
    assert (await alice.next_push("kicked"))["reason"] == "banned"
    assert await alice.wait_closed() == 4004
    assert (await bob.ping())["code"] == 0  # others stay
    again = await live.client("alice")
    assert (await again.join(gid))["code"] == 10007
    r = ok(await call(live, "get_group_ban_member", {"GroupId": gid}))
    assert r == {**r, "BannedAccountList": [{"Member_Account": "alice",
                                             "BannedUntil": math.ceil(clock.now + 60)}],
                 "NextOffset": 0}
    clock.advance(61)
    assert (await again.join(gid))["code"] == 0


async def test_unban_lets_the_member_rejoin(live: Live) -> None:
    gid = await live.room("r1")
    ok(await call(live, "ban_group_member", {"GroupId": gid, "Members_Account": ["alice", "bob"],
                                             "Duration": FOREVER}))
    ok(await call(live, "unban_group_member", {"GroupId": gid, "Members_Account": ["alice"]}))
    alice = await live.client("alice")
    assert (await alice.join(gid))["code"] == 0
    r = ok(await call(live, "get_group_ban_member", {"GroupId": gid, "Limit": 100, "Offset": 0}))
    assert r["BannedAccountList"] == [{"Member_Account": "bob", "BannedUntil": FOREVER}]


async def test_ban_list_pages(live: Live) -> None:
    gid = await live.room("r1")
    ok(await call(live, "ban_group_member", {"GroupId": gid, "Duration": 60,
                                             "Members_Account": [f"u{i}" for i in range(5)]}))
    first = ok(await call(live, "get_group_ban_member", {"GroupId": gid, "Limit": 2}))
    assert first["NextOffset"] == 2 and len(first["BannedAccountList"]) == 2
    last = ok(await call(live, "get_group_ban_member", {"GroupId": gid, "Limit": 2, "Offset": 4}))
    assert last["NextOffset"] == 0 and last["BannedAccountList"][0]["Member_Account"] == "u4"


async def test_ban_errors_change_nothing(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    base = {"GroupId": gid, "Members_Account": ["alice"], "Duration": 60}
    for change in ({"Duration": 0}, {"Duration": -1}, {"Duration": "60"}, {"Members_Account": []},
                   {"Members_Account": ["alice", ""]}, {"Description": "x" * 1001},
                   {"Description": 5}):
        fails(await call(live, "ban_group_member", {**base, **change}), 10004)
    for body in ({k: v for k, v in base.items() if k != "Duration"},
                 {k: v for k, v in base.items() if k != "Members_Account"}):
        fails(await call(live, "ban_group_member", body), 10004)
    twenty_one = [f"u{i}" for i in range(20)] + ["alice"]
    fails(await call(live, "ban_group_member", {**base, "Members_Account": twenty_one}), 10005)
    fails(await call(live, "unban_group_member", {**base, "Members_Account": twenty_one}), 10005)
    assert (await alice.ping())["code"] == 0
    r = ok(await call(live, "get_group_ban_member", {"GroupId": gid}))
    assert r["BannedAccountList"] == []
    for body in ({"Limit": 0}, {"Limit": 101}, {"Offset": -1}):
        fails(await call(live, "get_group_ban_member", {"GroupId": gid, **body}), 10004)


# ------------------------------------------------------------ AVChatRoom refusals
async def test_member_apis_an_avchatroom_refuses(live: Live) -> None:
    gid = await live.room("r1")
    members = [{"Member_Account": "a"}]
    fails(await call(live, "add_group_member", {"GroupId": gid, "MemberList": members}), 10007)
    fails(await call(live, "import_group_member", {"GroupId": gid, "MemberList": members}), 10007)
    fails(await call(live, "delete_group_member", {"GroupId": gid, "MemberToDel_Account": ["a"]}),
          10004)
    fails(await call(live, "add_group_member", {"GroupId": "nope"}), 10010)
