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
