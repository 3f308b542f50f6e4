"""create_group, destroy_group, get_group_info, modify_group_base_info,
get_appid_group_list (livecast/admin/groups.py), over real HTTP."""

from __future__ import annotations

from typing import Any

from tests.admin.conftest import fails, ok, rest
from tests.conftest import SDKAPPID, Live

G = "group_open_http_svc"


async def call(live: Live, command: str, body: Any) -> dict[str, Any]:
    return await rest(live, G, command, body)


async def info(live: Live, gid: str, **flt: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"GroupIdList": [gid]}
    if flt:
        body["ResponseFilter"] = flt
    (item,) = ok(await call(live, "get_group_info", body))["GroupInfo"]
    return dict(item)


# ------------------------------------------------------------ create_group
async def test_create_with_a_custom_id_and_app_data(live: Live) -> None:
    r = ok(await call(live, "create_group", {
        "Type": "AVChatRoom", "GroupId": "MyLiveRoom01", "Name": "Live", "Owner_Account": "leckie",
        "Introduction": "intro", "Notification": "notice", "FaceUrl": "http://f",
        "MaxMemberCount": 500, "ApplyJoinOption": "FreeAccess",
        "AppDefinedData": [{"Key": "Status", "Value": "live"}]}))
    assert r["GroupId"] == "MyLiveRoom01"
    item = await info(live, "MyLiveRoom01")
    assert item["ErrorCode"] == 0 and item["Type"] == "AVChatRoom" and item["Name"] == "Live"
    assert item["Owner_Account"] == "leckie" and item["Introduction"] == "intro"
    assert item["AppDefinedData"] == [{"Key": "Status", "Value": "live"}]
    assert item["Appid"] == SDKAPPID and item["MemberNum"] == 0


async def test_create_without_an_id_assigns_a_tgs_id(live: Live) -> None:
    a = ok(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "a"}))["GroupId"]
    b = ok(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "b"}))["GroupId"]
    assert a.startswith("@TGS#") and b.startswith("@TGS#") and a != b
    assert (await info(live, a))["Owner_Account"] == ""


async def test_create_refusals(live: Live) -> None:
    base = {"Type": "AVChatRoom", "Name": "n"}
    for kind in ("Public", "Private", "Work", "ChatRoom", "Meeting", "Community"):
        fails(await call(live, "create_group", {**base, "Type": kind}), 10007)
    fails(await call(live, "create_group", {**base, "MemberList": [{"Member_Account": "a"}]}),
          10007)
    for bad_body in ({"Name": "n"}, {**base, "Type": "Live"}, {**base, "Type": 3},
                     {"Type": "AVChatRoom"}, {**base, "Name": ""}, {**base, "Name": "x" * 31},
                     {**base, "Name": 5}, {**base, "Introduction": "x" * 241},
                     {**base, "Notification": "x" * 301}, {**base, "FaceUrl": "x" * 101},
                     {**base, "Owner_Account": ""}, {**base, "Owner_Account": 7},
                     {**base, "MaxMemberCount": "500"}, {**base, "ApplyJoinOption": "Open"},
                     {**base, "AppDefinedData": [{"Key": "bad key!", "Value": "v"}]},
                     {**base, "AppDefinedData": [{"Key": "k", "Value": "x" * 513}]},
                     {**base, "AppDefinedData": {"Key": "k"}}):
        fails(await call(live, "create_group", bad_body), 10004)
    for gid in ("@TGS#mine", "", "x" * 49, "caf\u00e9", 12, None):
        fails(await call(live, "create_group", {**base, "GroupId": gid}), 10015)
    listed = ok(await call(live, "get_appid_group_list", {}))
    assert listed["TotalCount"] == 0  # nothing was half-created


async def test_unknown_fields_are_ignored_whatever_their_type(live: Live) -> None:
    r = ok(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "n", "GroupId": "g",
                                             "Foo": [1, {"x": None}], "bar": None}))
    assert r["GroupId"] == "g"
    ok(await call(live, "modify_group_base_info", {"GroupId": "g", "Whatever": {"a": 1}}))
    assert (await info(live, "g"))["InfoSeq"] == 0


async def test_a_taken_id_answers_10025_or_10021(live: Live) -> None:
    ok(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "n", "GroupId": "g"}))
    fails(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "n", "GroupId": "g"}),
          10025)
    fails(await call(live, "create_group", {"Type": "AVChatRoom", "Name": "n", "GroupId": "g",
                                            "Owner_Account": "someone"}), 10021)


# ------------------------------------------------------------ destroy_group
async def test_destroy_tells_members_and_later_calls_get_10010(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "destroy_group", {"GroupId": gid}))
    tip = await alice.next_push("tips")
    assert {"type": "destroyed"} in tip["tips"]
    kicked = await alice.next_push("kicked")
    assert kicked["reason"] == "groupDestroyed"
    assert await alice.wait_closed() == 1000
    fails(await call(live, "destroy_group", {"GroupId": gid}), 10010)
    fails(await rest(live, G, "get_online_member_num", {"GroupId": gid}), 10010)
    assert (await info(live, gid))["ErrorCode"] == 10010


async def test_destroy_errors(live: Live) -> None:
    fails(await call(live, "destroy_group", {}), 10004)
    fails(await call(live, "destroy_group", {"GroupId": 5}), 10004)
    fails(await call(live, "destroy_group", {"GroupId": "\u00e9"}), 10015)
    fails(await call(live, "destroy_group", {"GroupId": "nope"}), 10010)


# ------------------------------------------------------------ get_group_info
async def test_info_per_group_error_codes(live: Live) -> None:
    gid = await live.room("r1")
    r = ok(await call(live, "get_group_info", {"GroupIdList": [gid, "nope", "\u00e9"]}))
    a, b, c = r["GroupInfo"]
    assert a["GroupId"] == gid and a["ErrorCode"] == 0 and a["MemberList"] == []
    assert (b["GroupId"], b["ErrorCode"]) == ("nope", 10010)
    assert (c["GroupId"], c["ErrorCode"]) == ("\u00e9", 10015)


async def test_info_filters(live: Live) -> None:
    gid = await live.room("r1", AppDefinedData=[{"Key": "A", "Value": "1"},
                                                {"Key": "B", "Value": "2"}])
    item = await info(live, gid, GroupBaseInfoFilter=["Name", "Type"])
    assert set(item) == {"GroupId", "ErrorCode", "ErrorInfo", "Name", "Type"}
    item = await info(live, gid, GroupBaseInfoFilter=["Name"], AppDefinedDataFilter_Group=["B"],
                      MemberInfoFilter=["Account"])
    assert item["AppDefinedData"] == [{"Key": "B", "Value": "2"}] and item["Name"] == "r1"


async def test_info_online_count_and_next_seq(live: Live) -> None:
    gid = await live.room("r1")
    await live.client("alice", join=gid)
    await live.client(None, join=gid)
    item = await info(live, gid)
    assert item["MemberNum"] == 2 and item["NextMsgSeq"] == 1


async def test_info_bad_requests(live: Live) -> None:
    for body in ({}, {"GroupIdList": []}, {"GroupIdList": "g"}, {"GroupIdList": [1]},
                 {"GroupIdList": ["g"] * 51}, {"GroupIdList": ["g"], "ResponseFilter": []},
                 {"GroupIdList": ["g"], "ResponseFilter": {"GroupBaseInfoFilter": "Name"}},
                 {"GroupIdList": ["g"], "ResponseFilter": {"AppDefinedDataFilter_Group": [1]}}):
        fails(await call(live, "get_group_info", body), 10004)
    ok(await call(live, "get_group_info", {"GroupIdList": ["g"] * 50}))


# ------------------------------------------------------------ modify_group_base_info
async def test_modify_pushes_changes_to_members(live: Live) -> None:
    gid = await live.room("r1", AppDefinedData=[{"Key": "Old", "Value": "x"}])
    alice = await live.client("alice", join=gid)
    ok(await call(live, "modify_group_base_info", {
        "GroupId": gid, "Name": "New", "Notification": "hi", "MaxMemberNum": 10,
        "AppDefinedData": [{"Key": "Likes", "Value": "12"}, {"Key": "Old", "Value": ""}]}))
    tip = await alice.next_push("tips")
    (change,) = [t for t in tip["tips"] if t["type"] == "groupInfo"]
    assert change["changes"]["Name"] == "New" and change["changes"]["Notification"] == "hi"
    assert change["changes"]["AppDefinedData"] == [{"Key": "Likes", "Value": "12"},
                                                   {"Key": "Old", "Value": ""}]
    item = await info(live, gid)
    assert item["Name"] == "New" and item["AppDefinedData"] == [{"Key": "Likes", "Value": "12"}]
    assert item["InfoSeq"] == 1


async def test_mute_all_and_its_old_name(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "modify_group_base_info", {"GroupId": gid, "MuteAllMember": "On"}))
    assert (await info(live, gid))["MuteAllMember"] == "On"
    r = await alice.send(gid, [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}}])
    assert r["code"] == 10017
    ok(await call(live, "modify_group_base_info", {"GroupId": gid, "ShutUpAllMember": "Off"}))
    assert (await info(live, gid))["MuteAllMember"] == "Off"
    fails(await call(live, "modify_group_base_info", {"GroupId": gid, "MuteAllMember": "on"}),
          10004)


async def test_a_refused_modify_changes_nothing(live: Live) -> None:
    gid = await live.room("r1")
    for body in ({"Name": "ok", "AppDefinedData": [{"Key": "k", "Value": 5}]},
                 {"Name": "ok", "MuteAllMember": True}, {"Name": "x" * 31},
                 {"Name": ""}, {"Name": "ok", "MaxMemberNum": -1},
                 {"Name": "ok", "ApplyJoinOption": 1}, {"Introduction": None},
                 {"Name": "ok", "AppDefinedData": [{"Key": f"k{i}", "Value": "v"}
                                                   for i in range(11)]}):
        fails(await call(live, "modify_group_base_info", {"GroupId": gid, **body}), 10004)
    item = await info(live, gid)
    assert item["Name"] == "r1" and item["InfoSeq"] == 0 and item["AppDefinedData"] == []
    fails(await call(live, "modify_group_base_info", {"GroupId": "nope", "Name": "x"}), 10010)


# ------------------------------------------------------------ get_appid_group_list
async def test_group_list_pages_with_limit_and_next(live: Live) -> None:
    gids = [await live.room(f"r{i}") for i in range(5)]
    seen: list[str] = []
    nxt = 0
    for _ in range(3):
        r = ok(await call(live, "get_appid_group_list", {"Limit": 2, "Next": nxt}))
        assert r["TotalCount"] == 5
        seen += [g["GroupId"] for g in r["GroupIdList"]]
        nxt = r["Next"]
        if nxt == 0:
            break
    assert seen == gids and nxt == 0


async def test_group_list_cursor_survives_destroy_and_create(live: Live) -> None:
    gids = [await live.room(f"r{i}") for i in range(4)]
    first = ok(await call(live, "get_appid_group_list", {"Limit": 2}))
    assert [g["GroupId"] for g in first["GroupIdList"]] == gids[:2]
    ok(await call(live, "destroy_group", {"GroupId": gids[0]}))
    await live.room("r0")  # re-created: a new room, listed after the others
    rest_ = ok(await call(live, "get_appid_group_list", {"Limit": 10, "Next": first["Next"]}))
    assert [g["GroupId"] for g in rest_["GroupIdList"]] == [gids[2], gids[3], "r0"]
    assert rest_["Next"] == 0 and rest_["TotalCount"] == 4


async def test_a_changed_room_keeps_its_place_in_the_list(live: Live) -> None:
    gids = [await live.room(f"r{i}") for i in range(4)]
    first = ok(await call(live, "get_appid_group_list", {"Limit": 2}))
    for gid in gids[:3]:  # changes to rooms listed and not yet listed
        ok(await call(live, "modify_group_base_info", {"GroupId": gid, "Name": "changed"}))
    ok(await call(live, "forbid_send_msg", {"GroupId": gids[0], "Members_Account": ["u1"],
                                            "MuteTime": 60}))
    rest_ = ok(await call(live, "get_appid_group_list", {"Limit": 10, "Next": first["Next"]}))
    listed = [g["GroupId"] for g in first["GroupIdList"] + rest_["GroupIdList"]]
    assert listed == gids  # each once, in creation order
    whole = ok(await call(live, "get_appid_group_list", {}))
    assert [g["GroupId"] for g in whole["GroupIdList"]] == gids


async def test_group_list_type_filter_and_errors(live: Live) -> None:
    await live.room("r1")
    r = ok(await call(live, "get_appid_group_list", {"GroupType": "AVChatRoom"}))
    assert r["GroupIdList"] == [{"GroupId": "r1"}] and r["Next"] == 0
    r = ok(await call(live, "get_appid_group_list", {"GroupType": "Public"}))
    assert r == {**r, "TotalCount": 0, "GroupIdList": [], "Next": 0}
    r = ok(await call(live, "get_appid_group_list", {"GroupType": ""}))  # no filter
    assert r["GroupIdList"] == [{"GroupId": "r1"}] and r["TotalCount"] == 1
    for body in ({"GroupType": "Live"}, {"GroupType": " "}, {"GroupType": None},
                 {"Limit": 10001}, {"Limit": -1}, {"Limit": "5"},
                 {"Next": -1}, {"Next": 1.5}):
        fails(await call(live, "get_appid_group_list", body), 10004)

