"""account_import, multiaccount_import, kick, portrait_set, portrait_get
(livecast/admin/accounts.py) over real HTTP, with real WebSocket sessions."""

from __future__ import annotations

from typing import Any

import TLSSigAPIv2

from livecast.client import Client, text
from livecast.core.usersig import decode, mint
from livecast.errors import Close, Code
from livecast.node.kicks import MemoryKickTimes
from livecast.node.node import Node
from tests.admin.conftest import ManualClock, fails, ok, rest
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory, base_settings, start_live

LOGIN = "im_open_login_svc"
NICK = "Tag_Profile_IM_Nick"
IMAGE = "Tag_Profile_IM_Image"


async def portrait(live: Live, user: str, *tags: str) -> list[dict[str, Any]]:
    r = ok(await rest(live, "profile", "portrait_get",
                      {"To_Account": [user], "TagList": list(tags or (NICK, IMAGE))}))
    (item,) = r["UserProfileItem"]
    assert item["To_Account"] == user and item["ResultCode"] == 0
    return list(item["ProfileItem"])


# ------------------------------------------------------------ import
async def test_account_import_sets_the_profile(live: Live) -> None:
    ok(await rest(live, LOGIN, "account_import",
                  {"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://a"}))
    ok(await rest(live, LOGIN, "account_import", {"Identifier": "bob", "Nick": "Bob"}))
    ok(await rest(live, LOGIN, "account_import", {"UserID": "carol"}))
    assert await portrait(live, "alice") == [{"Tag": NICK, "Value": "Alice"},
                                             {"Tag": IMAGE, "Value": "http://a"}]
    assert await portrait(live, "bob", NICK) == [{"Tag": NICK, "Value": "Bob"}]
    assert await portrait(live, "carol") == [{"Tag": NICK, "Value": ""},
                                             {"Tag": IMAGE, "Value": ""}]


async def test_account_import_errors_answer_70402(live: Live) -> None:
    for body in ({}, {"UserID": ""}, {"UserID": "x" * 33}, {"UserID": 5},
                 {"UserID": "a", "Nick": 5}, {"UserID": "a", "Nick": "x" * 65},
                 {"UserID": "a", "FaceUrl": "x" * 501}):
        fails(await rest(live, LOGIN, "account_import", body), 70402)
    assert await portrait(live, "a") == [{"Tag": NICK, "Value": ""}, {"Tag": IMAGE, "Value": ""}]


async def test_multiaccount_import_both_shapes(live: Live) -> None:
    r = ok(await rest(live, LOGIN, "multiaccount_import", {"Accounts": ["a", "", "b"]}))
    assert r["FailAccounts"] == [""]
    r = ok(await rest(live, LOGIN, "multiaccount_import", {"AccountList": [
        {"UserID": "c", "Nick": "C"}, {"UserID": "x" * 33}, {"UserID": "d", "FaceUrl": "u"}]}))
    assert r["FailAccounts"] == ["x" * 33]
    assert await portrait(live, "c", NICK) == [{"Tag": NICK, "Value": "C"}]
    assert await portrait(live, "d", IMAGE) == [{"Tag": IMAGE, "Value": "u"}]


async def test_a_malformed_multiaccount_import_imports_nothing(live: Live) -> None:
    for body in ({}, {"Accounts": "a"}, {"Accounts": []}, {"Accounts": ["a", 5]},
                 {"AccountList": [{"UserID": "e", "Nick": "E"}, "f"]},
                 {"AccountList": [{"UserID": "e", "Nick": "E"}, {"Nick": "F"}]},
                 {"AccountList": [{"UserID": "e", "Nick": "E"}, {"UserID": "f", "Nick": 1}]}):
        fails(await rest(live, LOGIN, "multiaccount_import", body), 70402)
    for key in ("Accounts", "AccountList"):  # over 100: Tencent's "bad batch size"
        many = [f"u{i}" if key == "Accounts" else {"UserID": f"u{i}"} for i in range(101)]
        fails(await rest(live, LOGIN, "multiaccount_import", {key: many}), 70206)
    assert await portrait(live, "e", NICK) == [{"Tag": NICK, "Value": ""}]
    assert await portrait(live, "u0", NICK) == [{"Tag": NICK, "Value": ""}]


# ------------------------------------------------------------ kick
async def test_kick_closes_every_connection_of_the_user(live_factory: LiveFactory) -> None:
    live = await live_factory(multi_login=True)
    gid = await live.room("r1")
    one = await live.client("alice", join=gid)
    two = await live.client("alice")
    bob = await live.client("bob", join=gid)
    ok(await rest(live, LOGIN, "kick", {"UserID": "alice"}))
    for conn in (one, two):
        assert (await conn.next_push("kicked"))["reason"] == "adminKick"
        assert await conn.wait_closed() == 4003
    assert (await bob.ping())["code"] == 0
    ok(await rest(live, LOGIN, "kick", {"UserID": "nobody-online"}))
    for body in ({}, {"UserID": ""}, {"UserID": ["alice"]}):
        fails(await rest(live, LOGIN, "kick", body), 70402)


async def login(live: Live, user: str, usersig: str) -> tuple[Client, dict[str, Any]]:
    c = Client(live.ws_url)
    await c.connect()
    live.clients.append(c)
    return c, await c.login(SDKAPPID, user, usersig)


async def refused(live: Live, user: str, usersig: str) -> None:
    """A login with ``usersig`` is answered 70001 and closed 4001."""
    c, r = await login(live, user, usersig)
    assert (r["code"], r["info"]) == (Code.SIG_EXPIRED, "login failed: UserSig refused"), r
    assert await c.wait_closed() == Close.LOGIN_FAILED


def issued(usersig: str) -> int:
    doc = decode(usersig)
    assert doc is not None and isinstance(doc["TLS.time"], int)
    return doc["TLS.time"]


async def test_a_kick_revokes_the_usersigs_issued_until_its_second(
        clocked: Live, clock: ManualClock) -> None:
    live, t = clocked, clock.now  # a whole second
    gid = await live.room("r1")
    old = mint(SDKAPPID, KEY, "alice", t, 3600)
    alice, r = await login(live, "alice", old)
    assert r["code"] == 0
    clock.advance(0.5)
    ok(await rest(live, LOGIN, "kick", {"UserID": "alice"}))
    assert await alice.wait_closed() == Close.MULTI_LOGIN
    await refused(live, "alice", old)
    await refused(live, "alice", mint(SDKAPPID, KEY, "alice", t + 0.9, 3600))  # the same second
    clock.advance(0.5)
    again, r = await login(live, "alice", mint(SDKAPPID, KEY, "alice", t + 1, 3600))
    assert r["code"] == 0
    assert (await again.join(gid))["code"] == 0
    assert (await again.send(gid, text("back")))["msgSeq"] == 1
    _, r = await login(live, "bob", mint(SDKAPPID, KEY, "bob", t, 3600))  # others: unaffected
    assert r["code"] == 0


async def test_a_kick_revokes_usersigs_of_tencents_library(
        clocked: Live, clock: ManualClock) -> None:
    live = clocked
    usersig = TLSSigAPIv2.TLSSigAPIv2(SDKAPPID, KEY).gen_sig("alice", 3600)
    t = issued(usersig)
    clock.now = t - 0.5  # a kick before the sig was issued leaves it valid
    ok(await rest(live, LOGIN, "kick", {"UserID": "alice"}))
    alice, r = await login(live, "alice", usersig)
    assert r["code"] == 0
    clock.now = float(t)  # a kick at the sig's very second revokes it
    ok(await rest(live, LOGIN, "kick", {"UserID": "alice"}))
    assert await alice.wait_closed() == Close.MULTI_LOGIN
    await refused(live, "alice", usersig)


async def test_a_kick_revokes_an_admins_rest_usersigs(clocked: Live, clock: ManualClock) -> None:
    live = clocked
    admin = TLSSigAPIv2.TLSSigAPIv2(SDKAPPID, KEY).gen_sig("administrator", 3600)
    t = issued(admin)
    clock.now = t + 0.5
    ok(await rest(live, LOGIN, "kick", {"UserID": "administrator"}, usersig=admin))
    r = fails(await rest(live, LOGIN, "account_import", {"UserID": "u"}, usersig=admin),
              Code.SIG_EXPIRED)
    assert r["ErrorInfo"] == "UserSig verification failed"
    fresh = mint(SDKAPPID, KEY, "administrator", t + 1, 3600)
    ok(await rest(live, LOGIN, "account_import", {"UserID": "u"}, usersig=fresh))


async def test_kick_times_kept_by_the_node_outlive_its_server(clock: ManualClock) -> None:
    """The node's kick times are its own state: handed to the next server, as
    durable state would be on a restart, they still revoke."""
    kicks = MemoryKickTimes()
    t = clock.now
    old = mint(SDKAPPID, KEY, "alice", t, 3600)
    for _ in range(2):
        live = await start_live(base_settings(), Node(base_settings(), clock=clock, kicks=kicks))
        try:
            if kicks.kicked_at("alice") is None:
                clock.advance(0.5)
                ok(await rest(live, LOGIN, "kick", {"UserID": "alice"}))
            assert kicks.kicked_at("alice") == t + 0.5
            await refused(live, "alice", old)
        finally:
            for c in live.clients:
                await c.close()
            await live.server.close()


# ------------------------------------------------------------ portrait
async def test_portrait_set_changes_the_nick_on_later_messages(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await rest(live, "profile", "portrait_set", {"From_Account": "alice", "ProfileItem": [
        {"Tag": NICK, "Value": "Alice"}, {"Tag": IMAGE, "Value": "http://a.png"},
        {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
        {"Tag": "Tag_Profile_Custom_Level", "Value": 7}]}))
    assert (await alice.get_my_profile())["nick"] == "Alice"
    await alice.send(gid, text("hello"))
    (msg,) = (await alice.next_push("msgs"))["msgs"]
    assert msg["nick"] == "Alice" and msg["avatar"] == "http://a.png"
    items = await portrait(live, "alice", IMAGE, "Tag_Profile_IM_Gender",
                           "Tag_Profile_Custom_Level", "Tag_Profile_IM_Location")
    assert items == [{"Tag": IMAGE, "Value": "http://a.png"},
                     {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
                     {"Tag": "Tag_Profile_Custom_Level", "Value": 7}]


async def test_portrait_set_errors_answer_40001_and_change_nothing(live: Live) -> None:
    good = {"Tag": NICK, "Value": "ok"}
    for body in ({}, {"From_Account": "a"}, {"From_Account": "a", "ProfileItem": []},
                 {"From_Account": "", "ProfileItem": [good]},
                 {"From_Account": "a", "ProfileItem": [good, {"Tag": NICK}]},
                 {"From_Account": "a", "ProfileItem": [good, {"Tag": "Nick", "Value": "x"}]},
                 {"From_Account": "a", "ProfileItem": [good, {"Tag": IMAGE, "Value": 5}]},
                 {"From_Account": "a", "ProfileItem": [good, {"Tag": NICK, "Value": "x" * 65}]},
                 {"From_Account": "a", "ProfileItem": [
                     good, {"Tag": "Tag_Profile_Custom_X", "Value": "x" * 501}]},
                 {"From_Account": "a", "ProfileItem": [
                     good, {"Tag": "Tag_Profile_Custom_X", "Value": -1}]}):
        r = fails(await rest(live, "profile", "portrait_set", body), 40001)
        assert r["ErrorDisplay"] == ""
    assert await portrait(live, "a", NICK) == [{"Tag": NICK, "Value": ""}]


async def test_portrait_get_errors(live: Live) -> None:
    for body in ({"TagList": [NICK]}, {"To_Account": [], "TagList": [NICK]},
                 {"To_Account": ["a"]}, {"To_Account": ["a"], "TagList": NICK},
                 {"To_Account": [""], "TagList": [NICK]},
                 {"To_Account": [f"u{i}" for i in range(101)], "TagList": [NICK]}):
        fails(await rest(live, "profile", "portrait_get", body), 40001)
