"""livecast_ext set_room_rate / get_room_rate (livecast/admin/extension.py)."""

from __future__ import annotations

from tests.admin.conftest import fails, ok, rest
from tests.conftest import Live

EXT = "livecast_ext"


async def test_get_set_and_get_again(live: Live) -> None:
    gid = await live.room("r1")
    r = ok(await rest(live, EXT, "get_room_rate", {"GroupId": gid}))
    assert (r["Rate"], r["Burst"], r["Custom"]) == (40, 40, False)
    assert (r["DefaultRate"], r["DefaultBurst"]) == (40, 40)
    assert ok(await rest(live, EXT, "set_room_rate", {"GroupId": gid, "Rate": 5, "Burst": 2})) \
        == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "Rate": 5, "Burst": 2}
    r = ok(await rest(live, EXT, "get_room_rate", {"GroupId": gid}))
    assert (r["Rate"], r["Burst"], r["Custom"]) == (5, 2, True)
    ok(await rest(live, EXT, "set_room_rate", {"GroupId": gid, "Rate": 0}))
    r = ok(await rest(live, EXT, "get_room_rate", {"GroupId": gid}))
    assert (r["Rate"], r["Burst"]) == (0, 1)


async def test_errors(live: Live) -> None:
    gid = await live.room("r1")
    for body in ({"GroupId": gid}, {"GroupId": gid, "Rate": -1}, {"GroupId": gid, "Rate": 100001},
                 {"GroupId": gid, "Rate": "5"}, {"GroupId": gid, "Rate": 5, "Burst": 0},
                 {"GroupId": gid, "Rate": 5, "Burst": True}, {"Rate": 5}):
        fails(await rest(live, EXT, "set_room_rate", body), 10004)
    fails(await rest(live, EXT, "set_room_rate", {"GroupId": "nope", "Rate": 5}), 10010)
    fails(await rest(live, EXT, "get_room_rate", {"GroupId": "\u00e9"}), 10015)
    fails(await rest(live, EXT, "unknown", {}), 60009)
    r = ok(await rest(live, EXT, "get_room_rate", {"GroupId": gid}))
    assert (r["Rate"], r["Burst"], r["Custom"]) == (40, 40, False)


async def test_room_history_errors_and_the_stored_switch(live: Live) -> None:
    gid = await live.room("r1")
    for body in ({"GroupId": gid}, {"GroupId": gid, "JoinHistory": "off"},
                 {"GroupId": gid, "JoinHistory": True}, {"JoinHistory": "On"}):
        fails(await rest(live, EXT, "set_room_history", body), 10004)
    for body in ({"GroupId": gid, "Count": 0}, {"GroupId": gid, "Count": 101},
                 {"GroupId": gid, "Count": "3"}):
        fails(await rest(live, EXT, "get_room_history", body), 10004)
    fails(await rest(live, EXT, "get_room_history", {"GroupId": "nope"}), 10010)
    r = ok(await rest(live, EXT, "get_room_history", {"GroupId": gid}))
    assert (r["MsgList"], r["LastSeq"], r["JoinHistory"]) == ([], 0, "On")
    ok(await rest(live, EXT, "set_room_history", {"GroupId": gid, "JoinHistory": "Off"}))
    record = await live.node.store.load_group(gid)
    assert record is not None and record.join_history is False  # stored
    fails(await rest(live, "group_open_http_svc", "group_msg_get_simple",
                     {"GroupId": gid, "ReqMsgNumber": 5}), 10044)  # Tencent's stays refused
