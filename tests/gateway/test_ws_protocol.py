"""Every op of spec/websocket.md, the sending semantics of spec/rooms.md under
overload, and the server's pushes (tips), against a real server over loopback.

Room events (profile changes, counters, mutes, system notifications, destroy)
are driven through the ``Node`` object; the REST API has tests of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from livecast.client import Client, custom, text
from livecast.core.usersig import mint
from livecast.errors import Code
from livecast.gateway.ws import OPS
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory, sig
from tests.gateway.test_ws_closes import OP_TEXT, RawWs, metric

PRIORITIES = ("High", "Normal", "Low", "Lowest")


def drain(c: Client) -> list[dict[str, Any]]:
    """The pushes already received by ``c``, without waiting."""
    out = []
    while not c._pushes.empty():
        push = c._pushes.get_nowait()
        assert push is not None, "connection closed"
        out.append(push)
    return out


async def next_tip(c: Client, kind: str) -> dict[str, Any]:
    """The next tip of ``kind`` pushed to ``c`` (other tips are skipped)."""
    while True:
        push = await c.next_push("tips")
        for tip in push["tips"]:
            if tip["type"] == kind:
                return tip


async def _no_tips(raw: RawWs) -> dict[str, Any]:
    """The next frame that is not a tips push."""
    while (frame := await raw.recv_json())["op"] == "tips":
        pass
    return frame


# ------------------------------------------------------------------ login
async def test_login_replies_server_time(live: Live) -> None:
    c = Client(live.ws_url)
    live.clients.append(c)
    await c.connect()
    before = int(time.time() * 1000)
    r = await c.login(SDKAPPID, "alice", sig("alice"))
    after = int(time.time() * 1000)
    assert r["code"] == 0 and r["info"] == ""
    assert before <= r["serverTime"] <= after


def _expired(user: str) -> str:
    return mint(SDKAPPID, KEY, user, time.time() - 100, expire=10)


LOGIN_FAILURES = {
    "expired": (SDKAPPID, lambda: _expired("alice"), 70001),
    "empty": (SDKAPPID, lambda: "", 70002),
    "garbage": (SDKAPPID, lambda: "not*a*usersig", 70003),
    "forged": (SDKAPPID, lambda: sig("alice", key="another-key"), 70009),
    "other user": (SDKAPPID, lambda: sig("bob"), 70013),
    "sig of another app": (SDKAPPID, lambda: sig("alice", sdkappid=1400000001), 70014),
    "request for another app": (1400000001, lambda: sig("alice", sdkappid=1400000001), 70014),
}


@pytest.mark.parametrize("case", LOGIN_FAILURES)
async def test_login_failure_replies_then_closes_4001(live: Live, case: str) -> None:
    sdkappid, make_sig, code = LOGIN_FAILURES[case]
    c = await live.client()
    r = await c.login(sdkappid, "alice", make_sig())
    assert r["code"] == code and r["info"]
    assert await c.wait_closed() == 4001


async def test_login_bad_user_id_and_second_login_are_answered_not_closed(live: Live) -> None:
    c = await live.client()
    assert (await c.login(SDKAPPID, "a" * 33, sig("a" * 33)))["code"] == Code.BAD_PARAMETER
    assert (await c.login(SDKAPPID, "alice", sig("alice")))["code"] == 0
    assert (await c.login(SDKAPPID, "alice", sig("alice")))["code"] == Code.BAD_PARAMETER
    assert (await c.ping())["code"] == 0


# ------------------------------------------------------------------ join / quit
async def test_join_returns_profile_counters_and_online_count(live: Live) -> None:
    gid = await live.room("live-1", Introduction="intro", Notification="note", FaceUrl="http://f",
                    AppDefinedData=[{"Key": "likes", "Value": "3"}])
    await live.node.update_counters(gid, [{"Key": "likes", "Value": 9}], "Set")
    alice = await live.client("alice")
    r = await alice.join(gid)
    assert r["code"] == 0
    assert r["group"] == {"Name": "live-1", "Introduction": "intro", "Notification": "note",
                          "FaceUrl": "http://f",
                          "AppDefinedData": [{"Key": "likes", "Value": "3"}],
                          "MuteAllMember": "Off"}
    assert r["counters"] == [{"Key": "likes", "Value": 9}]
    assert r["onlineMemberNum"] == 1
    bob = await live.client("bob")
    assert (await bob.join(gid))["onlineMemberNum"] == 2
    assert (await bob.join(gid))["onlineMemberNum"] == 2   # joining twice is one membership


@pytest.mark.parametrize(("gid", "code"), [("no-such-room", 10010), ("x" * 49, 10015),
                                           ("", 10015), ("caf\u00e9", 10015)])
async def test_join_refusals(live: Live, gid: str, code: int) -> None:
    await live.room()
    c = await live.client("alice")
    assert (await c.join(gid))["code"] == code


async def test_guest_receives_but_cannot_send(live: Live) -> None:
    gid = await live.room()
    guest = await live.client(None, join=gid)
    alice = await live.client("alice", join=gid)
    r = await alice.send(gid, text("for everyone"))
    (msg,) = (await guest.next_push("msgs"))["msgs"]
    assert msg["seq"] == r["msgSeq"] and msg["from"] == "alice"
    assert (await guest.send(gid, text("me too")))["code"] == 10007
    assert (await guest.set_my_profile(nick="g"))["code"] == 10007
    assert (await guest.get_online_member_num(gid))["onlineMemberNum"] == 2


async def test_guest_join_refused_when_guests_are_off(live_factory: LiveFactory) -> None:
    live = await live_factory(allow_guests=False)
    gid = await live.room()
    c = await live.client()
    assert (await c.join(gid))["code"] == 10007
    assert (await c.login(SDKAPPID, "alice", sig("alice")))["code"] == 0
    assert (await c.join(gid))["code"] == 0


async def test_quit_stops_receiving(live: Live) -> None:
    one, two = await live.room("one"), await live.room("two")
    alice = await live.client("alice", join=one)
    bob = await live.client("bob", join=one)
    assert (await bob.join(two))["code"] == 0
    assert (await bob.quit(one))["code"] == 0
    assert (await alice.get_online_member_num(one))["onlineMemberNum"] == 1
    await alice.send(one, text("bob has left"))      # delivered (replied) before the next send
    assert (await alice.join(two))["code"] == 0
    r = await alice.send(two, text("in two"))
    push = await bob.next_push("msgs")               # a msgs frame from "one" would come first
    assert push["groupId"] == two and push["msgs"][0]["seq"] == r["msgSeq"]
    assert (await bob.send(one, text("x")))["code"] == 10007
    assert (await bob.quit(one))["code"] == 0        # quitting again is harmless
    assert (await bob.quit("no-such-room"))["code"] == 10010


# ------------------------------------------------------------------ send
async def test_send_reply_and_delivered_message(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    body = custom('{"like":1}', "like")
    r = await alice.send(gid, body, priority="Low", random=4242, cloud_custom_data="ccd")
    assert r["code"] == 0 and r["info"] == "" and r["dropReason"] == ""
    assert r["msgSeq"] == 1 and r["msgTime"] > 0
    for c in (alice, bob):                           # the sender gets its own echo
        push = await c.next_push("msgs")
        assert push["groupId"] == gid
        assert push["msgs"] == [{"seq": 1, "time": r["msgTime"], "from": "alice", "nick": "",
                                 "avatar": "", "priority": "Low", "random": 4242,
                                 "msgBody": body, "cloudCustomData": "ccd"}]
    r2 = await bob.send(gid, text("second"))
    assert r2["msgSeq"] == 2 and r2["msgTime"] >= r["msgTime"]


@pytest.mark.parametrize("priority", PRIORITIES)
async def test_priority_is_carried(live: Live, priority: str) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    await alice.send(gid, text("p"), priority=priority)
    assert (await alice.next_push("msgs"))["msgs"][0]["priority"] == priority


async def test_send_defaults_and_no_reply_without_id(live: Live) -> None:
    gid = await live.room()
    raw = await RawWs.connect(live)
    try:
        await raw.request("login", 1, sdkAppId=SDKAPPID, userId="alice", userSig=sig("alice"))
        await raw.request("join", 2, groupId=gid)
        await raw.send_json({"op": "send", "groupId": gid, "msgBody": text("no id")})
        push = await raw.recv_json()
        assert push["op"] == "msgs"
        (msg,) = push["msgs"]
        assert (msg["priority"], msg["random"], msg["cloudCustomData"]) == ("Normal", 0, "")
        await raw.send_json({"op": "ping"})
        await raw.send_json({"op": "ping", "id": "p"})
        assert await raw.recv_json() == {"op": "reply", "id": "p", "code": 0, "info": ""}
    finally:
        raw.close()


async def test_send_refusals(live: Live) -> None:
    gid = await live.room()
    await live.room("other")
    alice = await live.client("alice", join=gid)
    assert (await alice.send("other", text("x")))["code"] == 10007
    assert (await alice.send("nowhere", text("x")))["code"] == 10010
    assert (await alice.send(gid, text("x"), priority="Urgent"))["code"] == 10004
    assert (await alice.send(gid, text("x"), random=2**32))["code"] == 10004
    assert (await alice.request("send", groupId=gid, msgBody=[]))["code"] == 10004
    bogus = [{"MsgType": "TIMBogusElem", "MsgContent": {}}]
    assert (await alice.request("send", groupId=gid, msgBody=bogus))["code"] == 10004
    no_text = [{"MsgType": "TIMTextElem", "MsgContent": {}}]
    assert (await alice.request("send", groupId=gid, msgBody=no_text))["code"] == 10004
    assert (await alice.request("send", groupId=gid, msgBody="hello"))["code"] == 10004
    assert (await alice.request("send", groupId=gid))["code"] == 10004
    r = await alice.send(gid, text("still fine"))
    assert r["code"] == 0 and r["msgSeq"] == 1      # refused sends took no seq


async def test_message_size_limit_is_12k(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    base = len(orjson.dumps(text(""))) + len("ccd")
    fits = text("y" * (12288 - base))
    assert len(orjson.dumps(fits)) + 3 == 12288
    assert (await alice.send(gid, fits, cloud_custom_data="ccd"))["msgSeq"] == 1
    over = text("y" * (12289 - base))
    assert (await alice.send(gid, over, cloud_custom_data="ccd"))["code"] == 80002
    wide = text("\u00e9" * 6200)                     # under 12 KB in characters, over in bytes
    assert (await alice.send(gid, wide))["code"] == 80002


# ------------------------------------------------------------------ info ops
async def test_get_group_info_and_online_member_num(live: Live) -> None:
    gid = await live.room(Introduction="i")
    await live.node.update_counters(gid, [{"Key": "a", "Value": 1}, {"Key": "b", "Value": 2}],
                                    "Set")
    alice = await live.client("alice")                    # members and non-members alike
    r = await alice.get_group_info(gid)
    assert r["code"] == 0
    assert r["group"]["Name"] == gid and r["group"]["Introduction"] == "i"
    assert sorted(r["counters"], key=lambda kv: kv["Key"]) == [{"Key": "a", "Value": 1},
                                                               {"Key": "b", "Value": 2}]
    assert (await alice.get_online_member_num(gid))["onlineMemberNum"] == 0
    await alice.join(gid)
    await live.client(None, join=gid)
    assert (await alice.get_online_member_num(gid))["onlineMemberNum"] == 2
    assert (await alice.get_group_info("nowhere"))["code"] == 10010
    assert (await alice.get_online_member_num("x" * 49))["code"] == 10015


async def test_profile_is_stamped_on_later_messages(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    got = await alice.get_my_profile()
    assert (got["code"], got["nick"], got["avatar"]) == (0, "", "")
    await alice.send(gid, text("before"))
    assert (await alice.set_my_profile(nick="Alice", avatar="http://a.png"))["code"] == 0
    await alice.send(gid, text("after"))
    for c in (alice, bob):
        before = (await c.next_push("msgs"))["msgs"][0]
        after = (await c.next_push("msgs"))["msgs"][0]
        assert (before["nick"], before["avatar"]) == ("", "")
        assert (after["nick"], after["avatar"]) == ("Alice", "http://a.png")
    assert (await alice.set_my_profile(nick="Al"))["code"] == 0   # avatar is kept
    got = await alice.get_my_profile()
    assert (got["nick"], got["avatar"]) == ("Al", "http://a.png")
    assert (await alice.set_my_profile(nick="n" * 65))["code"] == 10004
    assert (await alice.get_my_profile())["nick"] == "Al"
    again = await live.client("carol")
    assert (await again.get_my_profile())["nick"] == ""


async def test_ping_echoes_the_id(live: Live) -> None:
    c = await live.client()
    assert await c.request("ping") == {"op": "reply", "id": 1, "code": 0, "info": ""}
    raw = await RawWs.connect(live)
    try:
        assert await raw.request("ping", "s-1") == {"op": "reply", "id": "s-1", "code": 0,
                                                    "info": ""}
    finally:
        raw.close()


# ------------------------------------------------------------------ overload
def _rate_ok(times_ms: list[int], rate: int, burst: int) -> bool:
    """rooms.md invariant 1 over the server's own dispatch times."""
    times = sorted(times_ms)
    for i, j in itertools.combinations(range(len(times)), 2):
        allowed = burst + rate * (times[j] - times[i] + 2) / 1000
        if j - i + 1 > allowed + 1e-6:
            return False
    return True


async def _collect_seqs(c: Client, last: int) -> list[dict[str, Any]]:
    frames = []
    while not frames or frames[-1]["msgs"][-1]["seq"] < last:
        frames.append(await c.next_push("msgs"))
    return frames


async def test_overload_every_send_has_one_fate(live_factory: LiveFactory) -> None:
    rate = burst = 5
    live = await live_factory(room_rate=rate, room_burst=burst, max_wait=(5.0, 1.0, 0.5, 0.5))
    gid = await live.room()
    receiver = await live.client("receiver", join=gid)
    senders = [await live.client(f"s{i}", join=gid) for i in range(3)]
    rng = random.Random(7)
    plan = ["High"] * 4 + ["Normal"] * 16 + ["Low"] * 20 + ["Lowest"] * 20
    rng.shuffle(plan)                                 # 60 sends: 12x the rate, High fits
    jobs = [senders[i % 3].send(gid, text(f"m{i}"), priority=p) for i, p in enumerate(plan)]
    replies = await asyncio.gather(*jobs)

    for r in replies:
        assert r["code"] == 0
        assert (r["msgSeq"] > 0 and r["dropReason"] == "") or (
            r["msgSeq"] == 0 and r["dropReason"] == "MsgFreqCtrl")
    for s in senders:                                 # no second reply to any send
        assert (await s.ping())["code"] == 0
        assert [p for p in drain(s) if p["op"] == "reply"] == []
    seqs = sorted(r["msgSeq"] for r in replies if r["msgSeq"])
    assert seqs == list(range(1, len(seqs) + 1))
    assert 0 < len(seqs) < len(plan)

    frames = await _collect_seqs(receiver, seqs[-1])
    seen = [m["seq"] for f in frames for m in f["msgs"]]
    assert seen == seqs                               # contiguous, in order, nothing extra
    for f in frames:                                  # a tick delivers higher priority first
        ranks = [PRIORITIES.index(m["priority"]) for m in f["msgs"]]
        assert ranks == sorted(ranks)
    assert _rate_ok([r["msgTime"] for r in replies if r["msgSeq"]], rate, burst)

    fate = Counter((p, r["msgSeq"] > 0) for p, r in zip(plan, replies, strict=True))
    assert fate[("High", False)] == 0                 # High alone fits: never dropped
    sent = Counter(plan)
    for p in PRIORITIES:
        admitted = await metric(live, "livecast_messages_admitted_total", priority=p)
        delivered = await metric(live, "livecast_messages_delivered_total", priority=p)
        dropped = await metric(live, "livecast_messages_dropped_total", priority=p,
                               reason="MsgFreqCtrl")
        assert admitted == sent[p] == delivered + dropped
        assert (delivered, dropped) == (fate[(p, True)], fate[(p, False)])


async def test_a_full_room_makes_room_for_high_by_dropping_lowest(live: Live) -> None:
    """Drop order (rooms.md invariant 3) in a paused room that holds 3 messages;
    a send is answered only once its fate is known."""
    gid = await live.room()
    await live.node.set_rate(gid, 0, 3)                     # paused: capacity 3, nothing delivered
    flooder = await live.client("flooder", join=gid)
    vip = await RawWs.connect(live)
    try:
        await vip.request("login", "l", sdkAppId=SDKAPPID, userId="vip", userSig=sig("vip"))
        await vip.request("join", "j", groupId=gid)
        lows = [asyncio.ensure_future(flooder.send(gid, text(f"l{i}"), priority="Lowest"))
                for i in range(4)]
        assert (await flooder.ping())["code"] == 0    # the four sends have been offered
        assert (await lows[3])["dropReason"] == "MsgFreqCtrl"   # the room was full
        await vip.send_json({"op": "send", "id": "h", "groupId": gid, "msgBody": text("h"),
                             "priority": "High"})
        await vip.send_json({"op": "ping", "id": "p"})
        assert await _no_tips(vip) == {"op": "reply", "id": "p", "code": 0,
                                       "info": ""}    # no reply to "h" before it
        assert (await lows[2])["dropReason"] == "MsgFreqCtrl"  # the newest Lowest made room
        await live.node.set_rate(gid, 10, 10)
        push = await _no_tips(vip)
        assert [m["msgBody"] for m in push["msgs"]] == [text("h"), text("l0"), text("l1")]
        high = await _no_tips(vip)
        assert (high["id"], high["msgSeq"], high["dropReason"]) == ("h", 1, "")
        assert [(await f)["msgSeq"] for f in lows[:2]] == [2, 3]
    finally:
        vip.close()


# ------------------------------------------------------------------ tips
async def test_join_storm_becomes_one_aggregated_tip(live_factory: LiveFactory) -> None:
    cap, count = 5, 20
    live = await live_factory(tip_member_cap=cap, tip_interval=0.5)
    gid = await live.room()
    observer = await live.client("observer", join=gid)
    first = await next_tip(observer, "memberJoin")
    assert first == {"type": "memberJoin", "members": ["observer"], "total": 1}
    names = [f"viewer{i}" for i in range(count)]
    viewers = [await live.client(n) for n in names]
    joined = await asyncio.gather(*(v.join(gid) for v in viewers))
    assert all(r["code"] == 0 for r in joined)
    push = await observer.next_push("tips")
    tip, online = push["tips"]
    assert tip["type"] == "memberJoin" and tip["total"] == count
    assert online == {"type": "online", "onlineMemberNum": count + 1}
    assert len(tip["members"]) == cap and set(tip["members"]) <= set(names)
    await asyncio.gather(*(v.close() for v in viewers))
    tip = await next_tip(observer, "memberQuit")
    assert tip["total"] == count and len(tip["members"]) == cap


async def test_group_info_and_counter_tips(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    changes = await live.node.modify_group(gid, {"Notification": "tonight",
                                           "AppDefinedData": [{"Key": "likes", "Value": "12"}]})
    tip = await next_tip(alice, "groupInfo")
    assert tip["changes"] == changes == {"Notification": "tonight",
                                         "AppDefinedData": [{"Key": "likes", "Value": "12"}]}
    assert (await alice.get_group_info(gid))["group"]["Notification"] == "tonight"
    await live.node.update_counters(gid, [{"Key": "likes", "Value": 5}], "Set")
    assert (await next_tip(alice, "counters"))["counters"] == [{"Key": "likes", "Value": 5}]
    await live.node.update_counters(gid, [{"Key": "likes", "Value": 3}], "Increase")
    assert (await next_tip(alice, "counters"))["counters"] == [{"Key": "likes", "Value": 8}]
    bob = await live.client("bob")
    r = await bob.join(gid)
    assert r["counters"] == [{"Key": "likes", "Value": 8}]
    assert r["group"]["AppDefinedData"] == [{"Key": "likes", "Value": "12"}]
    await live.node.delete_counters(gid, ["likes"])
    tip = await next_tip(bob, "counters")
    assert tip["counters"] == [] and tip["deleted"] == ["likes"]
    assert (await bob.get_group_info(gid))["counters"] == []


async def test_mute_tip_and_mute_survives_rejoin(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    before = int(time.time())
    await live.node.mute(gid, ["bob"], 60)
    for c in (alice, bob):
        tip = await next_tip(c, "mute")
        assert tip["member"] == "bob" and before + 60 <= tip["until"] <= int(time.time()) + 61
    assert (await bob.send(gid, text("let me talk")))["code"] == 10017
    await bob.quit(gid)
    await bob.join(gid)
    assert (await bob.send(gid, text("now?")))["code"] == 10017
    assert (await alice.send(gid, text("alice may")))["msgSeq"] == 1
    await live.node.mute(gid, ["bob"], 0)
    assert (await next_tip(bob, "mute"))["until"] == 0
    assert (await bob.send(gid, text("thanks")))["msgSeq"] == 2


async def test_mute_all_spares_the_owner_and_admins(live: Live) -> None:
    gid = await live.room()                                 # owned by "administrator", an app admin
    alice = await live.client("alice", join=gid)
    admin = await live.client("administrator", join=gid)
    await live.node.modify_group(gid, {"MuteAllMember": "On"})
    assert (await next_tip(alice, "groupInfo"))["changes"] == {"MuteAllMember": "On"}
    assert (await alice.send(gid, text("hello?")))["code"] == 10017
    assert (await admin.send(gid, text("quiet please")))["msgSeq"] == 1
    await live.node.modify_group(gid, {"MuteAllMember": "Off"})
    assert (await next_tip(alice, "groupInfo"))["changes"] == {"MuteAllMember": "Off"}
    assert (await alice.send(gid, text("hello!")))["msgSeq"] == 2


async def test_system_notification_tip(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    guest = await live.client(None, join=gid)
    live.node.system_notification(gid, "the show starts at 8")
    for c in (alice, guest):
        assert await next_tip(c, "system") == {"type": "system",
                                               "content": "the show starts at 8"}


async def test_destroy_tips_kicks_and_closes(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    bystander = await live.client("carol")
    await live.node.destroy_group(gid)
    assert await next_tip(alice, "destroyed") == {"type": "destroyed"}
    assert await alice.next_push("kicked") == {"op": "kicked", "reason": "groupDestroyed"}
    assert await alice.wait_closed() == 1000
    assert (await bystander.join(gid))["code"] == 10010


async def test_logging_in_after_a_guest_join_leaves_the_room(live: Live) -> None:
    gid = await live.room()
    await live.node.ban(gid, ["mallory"], 3600)
    c = await live.client(None, join=gid)  # a guest, who may watch
    assert (await c.login(SDKAPPID, "mallory", sig("mallory")))["code"] == 0
    assert (await c.send(gid, text("let me in")))["code"] == 10007
    assert (await c.join(gid))["code"] == 10007  # banned: the user's join is checked
    assert (await c.get_online_member_num(gid))["onlineMemberNum"] == 0
    alice = await live.client(None, join=gid)
    assert (await alice.login(SDKAPPID, "alice", sig("alice")))["code"] == 0
    assert (await alice.join(gid))["code"] == 0
    assert (await alice.send(gid, text("hi")))["msgSeq"] == 1


async def test_a_message_waiting_when_its_room_is_destroyed_ends_with_10010(
        live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    await live.node.set_rate(gid, 0, 1)  # paused: the message waits in its queue
    waiting = asyncio.ensure_future(alice.send(gid, text("too late")))
    await alice.ping()  # the send was read before the ping: it is queued now
    assert live.node.rooms[gid].sched.pending == 1
    await live.node.destroy_group(gid)
    r = await waiting
    assert r["code"] == 10010 and "msgSeq" not in r


async def test_refused_sends_are_counted_by_code(live: Live) -> None:
    gid = await live.room()
    guest = await live.client(None, join=gid)
    assert (await guest.send(gid, text("may I?")))["code"] == 10007
    await live.node.mute(gid, ["bob"], 60)
    bob = await live.client("bob", join=gid)
    assert (await bob.send(gid, text("and I?")))["code"] == 10017
    sample = live.node.metrics.registry.get_sample_value
    assert sample("livecast_messages_rejected_total", {"code": "10007"}) == 1
    assert sample("livecast_messages_rejected_total", {"code": "10017"}) == 1


async def test_pipelined_requests_take_effect_in_order_without_webhooks(live: Live) -> None:
    """join, 3 sends, a read, quit, a read, sent at once: carried out in order."""
    gid = await live.room("r1")
    alice = await live.client("alice")
    frames: list[dict[str, Any]] = [{"op": "join", "id": "join", "groupId": gid}]
    frames += [{"op": "send", "id": f"send{i}", "groupId": gid, "msgBody": text(str(i)),
                "random": i} for i in range(3)]
    frames += [{"op": "getOnlineMemberNum", "id": "in", "groupId": gid},
               {"op": "quit", "id": "quit", "groupId": gid},
               {"op": "getOnlineMemberNum", "id": "out", "groupId": gid}]
    for f in frames:
        await alice.send_frame(f)
    got: dict[str, dict[str, Any]] = {}
    while len(got) < len(frames):
        push = await alice.next_push("reply")
        got[push["id"]] = push
    assert all(r["code"] == 0 for r in got.values()), got
    assert [got[f"send{i}"]["msgSeq"] for i in range(3)] == [1, 2, 3]
    assert (got["in"]["onlineMemberNum"], got["out"]["onlineMemberNum"]) == (1, 0)


def test_every_op_is_one_row_with_its_kind_handlers_and_needs() -> None:
    """The op table: each op carried out on the reader, off it, or both (with
    webhooks on; a login off the reader when its user's profile must be
    read, a read of a room a cluster's process does not know yet when it
    must be looked up), in the order rules of its kind (docs/protocol.md)."""
    table = {name: (row.kind.value, row.handler is not None, row.hooked is not None,
                    row.needs.value) for name, row in OPS.items()}
    assert table == {
        "login": ("change", True, True, "no login"),
        "join": ("change", True, True, "any"),
        "quit": ("change", True, False, "any"),
        "send": ("send", True, True, "any"),
        "getGroupInfo": ("read", True, True, "reader"),
        "getOnlineMemberNum": ("read", True, True, "reader"),
        "setMyProfile": ("change", False, True, "login"),
        "getMyProfile": ("read", True, False, "login"),
        "getGroupAttributes": ("read", True, True, "any"),
        "setGroupAttributes": ("change", False, True, "any"),
        "initGroupAttributes": ("change", False, True, "any"),
        "deleteGroupAttributes": ("change", False, True, "any"),
        "ping": ("free", True, False, "any"),
    }


async def test_what_an_op_needs_is_checked_when_it_is_carried_out_not_received(
        live: Live) -> None:
    """A store write goes off the reader, the login after it waits for it, and
    the profile read after the login waits for the login: received before
    the connection is logged in, the read is carried out after, and answered."""
    gid = await live.room("r1")
    guest = await live.client()
    frames: list[dict[str, Any]] = [
        {"op": "setGroupAttributes", "id": "attrs", "groupId": gid,
         "groupAttributes": {"k": "v"}, "attrSeq": 0},
        {"op": "login", "id": "login", "sdkAppId": SDKAPPID, "userId": "alice",
         "userSig": sig("alice")},
        {"op": "getMyProfile", "id": "profile"},
        {"op": "login", "id": "again", "sdkAppId": SDKAPPID, "userId": "alice",
         "userSig": sig("alice")},
    ]
    for f in frames:
        await guest.send_frame(f)
    got: dict[str, dict[str, Any]] = {}
    while len(got) < len(frames):
        push = await guest.next_push("reply")
        got[push["id"]] = push
    assert got["attrs"]["code"] != 0  # not a member: refused, but in its turn
    assert (got["login"]["code"], got["profile"]["code"]) == (0, 0)
    assert (got["again"]["code"], got["again"]["info"]) == (Code.BAD_PARAMETER,
                                                            "already logged in")


async def test_a_lone_surrogate_in_a_field_gets_a_10004_reply(live: Live) -> None:
    raw = await RawWs.connect(live)
    try:
        await raw.request("login", 1, sdkAppId=SDKAPPID, userId="alice", userSig=sig("alice"))
        await raw.send_frame(OP_TEXT, b'{"op":"setMyProfile","id":41,"nick":"\\ud800"}')
        r = await raw.recv_json()
        assert (r["id"], r["code"]) == (41, 10004) and "surrogate" in r["info"]
        assert (await raw.request("ping", 42))["code"] == 0  # the connection goes on
    finally:
        raw.close()


async def test_room_reads_need_a_login_when_guests_are_not_allowed(
        live_factory: LiveFactory) -> None:
    live = await live_factory(allow_guests=False)
    gid = await live.room()
    anonymous = await live.client()
    for op in ("getGroupInfo", "getOnlineMemberNum"):
        r = await anonymous.request(op, groupId=gid)
        assert r["code"] == 10007 and "login" in r["info"]
    alice = await live.client("alice")
    assert (await alice.request("getGroupInfo", groupId=gid))["code"] == 0
    assert (await alice.request("getOnlineMemberNum", groupId=gid))["code"] == 0


async def test_a_login_whose_profile_is_not_cached_reads_it_first(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cache's size (here 1) the profiles of users with no session
    are forgotten; such a user's login reads its profile from the store off
    the reader, and its messages carry it."""
    monkeypatch.setattr("livecast.node.hub.MAX_PROFILES", 1)
    for user, nick in (("erin", "Erin"), ("fred", "Fred")):
        r = await live.rest("profile", "portrait_set", {
            "From_Account": user, "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": nick}]})
        assert r["ErrorCode"] == 0, r
    assert not live.node.profile_known("erin")  # forgotten here, still stored
    gid = await live.room("r1")
    erin = await live.client("erin", gid)
    assert (await erin.request("getMyProfile"))["nick"] == "Erin"
    r = await erin.send(gid, text("hi"))
    assert r["code"] == 0
    push = await erin.next_push("msgs")
    assert push["msgs"][0]["nick"] == "Erin"
