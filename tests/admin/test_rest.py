"""The REST envelope, auth and the order of checks (livecast/admin/rest.py).

Auth is tested with UserSigs from Tencent's own library (TLSSigAPIv2) as well
as livecast's mint.
"""

from __future__ import annotations

import io
import logging
import time

import aiohttp
import pytest
import TLSSigAPIv2

from livecast.admin.rest import COMMANDS, MAX_BODY
from livecast.core.usersig import mint
from tests.admin.conftest import fails, ok, rest
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory, sig

GROUP = "group_open_http_svc"


def tencent_sig(user: str, key: str = KEY, sdkappid: int = SDKAPPID,
                expire: int = 3600) -> str:
    sig_: str = TLSSigAPIv2.TLSSigAPIv2(sdkappid, key).gen_sig(user, expire)
    return sig_


async def test_a_tencent_minted_admin_sig_is_accepted(live: Live) -> None:
    gid = await live.room("r1")
    r = ok(await rest(live, GROUP, "get_online_member_num", {"GroupId": gid},
                           usersig=tencent_sig("administrator")))
    assert r == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "OnlineMemberNum": 0}


async def test_bad_signatures_answer_their_70xxx_code(live: Live) -> None:
    gid = await live.room("r1")
    body = {"GroupId": gid}
    cases = [
        ("", 70002),
        ("not-a-usersig", 70003),
        (tencent_sig("administrator", key="another-key"), 70009),
        (tencent_sig("bob"), 70013),
        (tencent_sig("administrator", sdkappid=1400000001), 70014),
        (mint(SDKAPPID, KEY, "administrator", time.time() - 100, 10), 70001),
    ]
    for usersig, code in cases:
        fails(await rest(live, GROUP, "get_online_member_num", body, usersig=usersig), code)


async def test_a_valid_sig_of_a_non_admin_answers_60010(live: Live) -> None:
    gid = await live.room("r1")
    r = await rest(live, GROUP, "get_online_member_num", {"GroupId": gid}, identifier="bob",
                        usersig=tencent_sig("bob"))
    fails(r, 60010)


async def test_a_configured_second_admin_is_accepted(live_factory: LiveFactory) -> None:
    live = await live_factory(admins=("administrator", "ops"))
    gid = await live.room("r1")
    ok(await rest(live, GROUP, "get_online_member_num", {"GroupId": gid}, identifier="ops"))


async def test_a_wrong_or_missing_sdkappid_answers_60006(live: Live) -> None:
    fails(await rest(live, GROUP, "get_online_member_num", {}, sdkappid=1400000001), 60006)
    fails(await rest(live, GROUP, "get_online_member_num", {}, sdkappid=None), 60006)
    for spelled in (f"+{SDKAPPID}", f" {SDKAPPID}", f"{SDKAPPID} ", f"{SDKAPPID:_}", "",
                    f"{SDKAPPID}.0", "\u0661", "1" * 4301):  # int() takes 4, fails the last
        fails(await rest(live, GROUP, "get_online_member_num", {}, sdkappid=spelled), 60006)


async def test_unknown_commands(live: Live) -> None:
    fails(await rest(live, GROUP, "no_such_command", {}), 10003)
    fails(await rest(live, "group_open_avchatroom_http_svc", "nope", {}), 10003)
    fails(await rest(live, "no_such_service", "create_group", {}), 60009)
    # Auth comes first: an unknown command with a bad sig tells nothing about commands.
    fails(await rest(live, GROUP, "no_such_command", {}, usersig="junk"), 70003)
    fails(await rest(live, GROUP, "no_such_command", {}, identifier="bob",
                          usersig=sig("bob")), 60010)


async def test_auth_is_checked_before_the_body(live: Live) -> None:
    fails(await rest(live, GROUP, "create_group", b"not json", usersig="junk"), 70003)


async def test_bodies_that_are_not_a_json_object_answer_60003(live: Live) -> None:
    for raw in (b"", b"   ", b"{", b"[]", b"42", b'"x"', b"null", b'{"a":1}x',
                b'{"Name":"\xff\xfe"}', b'{"a":NaN}'):
        fails(await rest(live, GROUP, "get_appid_group_list", raw), 60003)
    ok(await rest(live, GROUP, "get_appid_group_list", b"{}"))


async def test_a_body_over_1_mib_answers_60002(live: Live) -> None:
    raw = io.BytesIO(b'{"pad":"' + b"x" * MAX_BODY + b'"}')
    fails(await rest(live, GROUP, "get_appid_group_list", raw), 60002)
    ok(await rest(live, GROUP, "get_appid_group_list", {}))


async def test_a_body_sent_in_chunks_is_read_whole(live: Live) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"GroupType":'
        yield b'"AVChatRoom"}'

    params = {"sdkappid": str(SDKAPPID), "identifier": "administrator",
              "usersig": sig("administrator"), "random": "7", "contenttype": "json"}
    async with aiohttp.ClientSession() as http, http.post(
            live.url(f"/v4/{GROUP}/get_appid_group_list"), params=params,
            data=chunks()) as resp:
        ok(await resp.json())


async def test_a_chunked_body_over_1_mib_answers_60002(live: Live) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"pad":"'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    params = {"sdkappid": str(SDKAPPID), "identifier": "administrator",
              "usersig": sig("administrator"), "random": "7", "contenttype": "json"}
    async with aiohttp.ClientSession() as http, http.post(
            live.url(f"/v4/{GROUP}/get_appid_group_list"), params=params,
            data=chunks()) as resp:
        assert resp.status == 200
        fails(await resp.json(), 60002)


async def test_every_answer_is_http_200_with_the_envelope(live: Live) -> None:
    for service, name in COMMANDS:
        r = await rest(live, service, name, {})
        assert isinstance(r["ErrorCode"], int) and r["ErrorCode"] != 10002, (name, r)
        if name != "get_appid_group_list":  # the only command with no required field
            fails(r, r["ErrorCode"])
            assert r["ErrorCode"] != 0


async def test_profile_answers_carry_error_display(live: Live) -> None:
    r = fails(await rest(live, "profile", "portrait_get", {}), 40001)
    assert r["ErrorDisplay"] == ""
    r = ok(await rest(live, "profile", "portrait_get", {"To_Account": ["a"], "TagList": []}))
    assert r["ErrorDisplay"] == ""


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_a_body_that_does_not_decode_answers_60003(
        live: Live, encoding: str, caplog: pytest.LogCaptureFixture) -> None:
    """A Content-Encoding the body is not in: a bad body (60003), not the
    server's error, and nothing logged as one."""
    params = {"sdkappid": str(SDKAPPID), "identifier": "administrator",
              "usersig": sig("administrator"), "random": "1", "contenttype": "json"}
    async with aiohttp.ClientSession() as http, http.post(
            live.url(f"/v4/{GROUP}/get_appid_group_list"), params=params,
            data=b"garbage", headers={"Content-Encoding": encoding}) as resp:
        answer = await resp.json(content_type=None)
    fails(answer, 60003)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    ok(await rest(live, GROUP, "get_appid_group_list", {}))
