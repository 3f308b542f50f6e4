"""send_group_msg, send_group_system_notification, send_broadcast_msg and
group_msg_get_simple (livecast/admin/messages.py), over real HTTP, with
real WebSocket members receiving what is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from livecast.client import Client, custom, text
from livecast.gateway.keys import ADMIN
from livecast.node.node import Node
from livecast.store.sqlite import SqliteStore
from tests.admin.conftest import ManualClock, fails, ok, rest, until
from tests.conftest import Live, base_settings, start_live

G = "group_open_http_svc"


async def send(live: Live, gid: str, msg: str = "hi", random: int = 1,
               **fields: Any) -> dict[str, Any]:
    body = {"GroupId": gid, "Random": random, "MsgBody": text(msg), **fields}
    return await rest(live, G, "send_group_msg", body)


async def messages_until(client: Client, marker: str) -> list[dict[str, Any]]:
    """Every message pushed to ``client`` up to the one whose text is ``marker``."""
    seen: list[dict[str, Any]] = []
    while not any(m["msgBody"][0]["MsgContent"].get("Text") == marker for m in seen):
        seen += (await client.next_push("msgs"))["msgs"]
    return seen


# ------------------------------------------------------------ send_group_msg
async def test_a_rest_message_reaches_members_with_the_senders_profile(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await rest(live, "profile", "portrait_set", {"From_Account": "host", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "Host"},
        {"Tag": "Tag_Profile_IM_Image", "Value": "http://a/h.png"}]}))
    r = ok(await send(live, gid, "gift", random=77, From_Account="host", MsgPriority="High",
                      CloudCustomData="ccd",
                      ForbidCallbackControl=["ForbidBeforeSendMsgCallback"],
                      SendMsgControl=["NoLastMsg"], OnlineOnlyFlag=0))
    assert r["MsgSeq"] == 1 and r["MsgDropReason"] == ""
    assert abs(r["MsgTime"] - live.node.clock()) < 60 and isinstance(r["MsgTime"], int)
    (msg,) = (await alice.next_push("msgs"))["msgs"]
    assert msg["seq"] == 1 and msg["from"] == "host" and msg["nick"] == "Host"
    assert msg["avatar"] == "http://a/h.png" and msg["priority"] == "High"
    assert msg["random"] == 77 and msg["cloudCustomData"] == "ccd"
    assert msg["msgBody"] == text("gift") and msg["time"] // 1000 == r["MsgTime"]


async def test_from_account_defaults_to_the_admin(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await send(live, gid))
    (msg,) = (await alice.next_push("msgs"))["msgs"]
    assert msg["from"] == "administrator" and msg["priority"] == "Normal"


async def test_rest_and_websocket_sends_share_one_seq_space(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    assert (await alice.send(gid, text("ws")))["msgSeq"] == 1
    assert ok(await send(live, gid, "rest", MsgPriority="Lowest"))["MsgSeq"] == 2
    assert (await alice.send(gid, text("ws2")))["msgSeq"] == 3
    seqs = [m["seq"] for m in await messages_until(alice, "ws2")]
    assert seqs == [1, 2, 3]


async def test_a_rate_limited_message_answers_msg_freq_ctrl(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 0, "Burst": 1}))
    # Room for one message: whichever arrives first, the Lowest one is the one dropped.
    first = asyncio.create_task(send(live, gid, "waits", random=1))
    dropped = ok(await send(live, gid, "dropped", random=2, MsgPriority="Lowest"))
    assert dropped["MsgSeq"] == 0 and dropped["MsgDropReason"] == "MsgFreqCtrl"
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 40}))
    delivered = ok(await first)
    assert delivered["MsgSeq"] == 1 and delivered["MsgDropReason"] == ""
    assert [m["random"] for m in await messages_until(alice, "waits")] == [1]


async def test_random_deduplicates_for_five_minutes(clocked: Live, clock: ManualClock) -> None:
    live = clocked
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    first = ok(await send(live, gid, "one", random=5))
    again = ok(await send(live, gid, "one again", random=5))
    assert again == first
    other_sender = ok(await send(live, gid, "two", random=5, From_Account="bob"))
    assert other_sender["MsgSeq"] == 2
    clock.advance(299)
    assert ok(await send(live, gid, "still dup", random=5)) == first
    clock.advance(2)
    later = ok(await send(live, gid, "three", random=5))
    assert later["MsgSeq"] == 3
    texts = [m["msgBody"][0]["MsgContent"]["Text"] for m in await messages_until(alice, "three")]
    assert texts == ["one", "two", "three"]


async def test_a_repeat_of_a_waiting_send_gets_the_same_answer(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 0}))
    first = asyncio.create_task(send(live, gid, "once", random=3))
    await until(lambda: live.node.rooms[gid].sched.pending == 1)
    assert live.server.app[ADMIN].sends.find((gid, "administrator", 3), live.node.clock())
    # The first waits in a paused room; the repeat, whenever it arrives, adds nothing.
    repeat = asyncio.create_task(send(live, gid, "once", random=3))
    assert ok(await rest(live, G, "get_online_member_num", {"GroupId": gid}))
    assert live.node.rooms[gid].sched.pending == 1 and not first.done()
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 40}))
    assert ok(await first) == ok(await repeat)
    ok(await send(live, gid, "marker", random=4))
    texts = [m["msgBody"][0]["MsgContent"]["Text"] for m in await messages_until(alice, "marker")]
    assert texts == ["once", "marker"]


async def test_a_send_that_fails_after_admission_may_be_retried_with_its_random(
        live: Live) -> None:
    gid = await live.room("r1")
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 0}))
    waiting = asyncio.create_task(send(live, gid, "again", random=5))
    await until(lambda: live.node.rooms[gid].sched.pending == 1)
    ok(await rest(live, G, "destroy_group", {"GroupId": gid}))
    fails(await waiting, 10010)  # admitted, then failed: the client is told so
    assert live.server.app[ADMIN].sends.find((gid, "administrator", 5), live.node.clock()) is None
    assert not await live.node.store.recent(f"send\0{gid}\0administrator\0{5}",
                                            live.node.clock())
    await live.room("r1")
    alice = await live.client("alice", join=gid)
    assert ok(await send(live, gid, "again", random=5))["MsgSeq"] > 0  # not "Duplicate"
    texts = [m["msgBody"][0]["MsgContent"]["Text"] for m in await messages_until(alice, "again")]
    assert texts == ["again"]


async def test_concurrent_repeats_on_a_real_store_are_delivered_once(tmp_path: Path) -> None:
    settings = base_settings()
    live = await start_live(settings, Node(settings, store=await SqliteStore.open(tmp_path)))
    try:
        gid = await live.room("r1")
        alice = await live.client("alice", join=gid)
        answers = await asyncio.gather(*(send(live, gid, "once?", random=11) for _ in range(4)))
        assert answers[0]["MsgSeq"] > 0 and all(a == answers[0] for a in answers)
        ok(await send(live, gid, "marker", random=12))
        got = await messages_until(alice, "marker")
        assert [m["msgBody"][0]["MsgContent"]["Text"] for m in got] == ["once?", "marker"]
    finally:
        for c in live.clients:
            await c.close()
        await live.server.close()


async def test_a_refused_send_does_not_consume_its_random(live: Live) -> None:
    gid = await live.room("r1")
    ok(await rest(live, G, "forbid_send_msg", {"GroupId": gid, "Members_Account": ["bob"],
                                               "MuteTime": 60}))
    fails(await send(live, gid, random=9, From_Account="bob"), 10017)
    ok(await rest(live, G, "forbid_send_msg", {"GroupId": gid, "Members_Account": ["bob"],
                                               "MuteTime": 0}))
    assert ok(await send(live, gid, random=9, From_Account="bob"))["MsgSeq"] == 1


async def test_the_admin_speaks_under_mute_all(live: Live) -> None:
    gid = await live.room("r1")
    ok(await rest(live, G, "modify_group_base_info", {"GroupId": gid, "MuteAllMember": "On"}))
    assert ok(await send(live, gid, From_Account="alice"))["MsgSeq"] == 1


async def test_send_errors(live: Live) -> None:
    gid = await live.room("r1")
    body = {"GroupId": gid, "Random": 1, "MsgBody": text("x")}
    bad: list[dict[str, Any]] = [
        {"Random": None}, {"Random": -1}, {"Random": 2**32}, {"Random": "1"}, {"Random": True},
        {"MsgBody": []}, {"MsgBody": "x"}, {"MsgBody": [{"MsgType": "TIMTextElem"}]},
        {"MsgBody": custom("a") + custom("b")},
        {"MsgBody": [{"MsgType": "TIMRelayElem", "MsgContent": {}}]},
        {"MsgPriority": "high"}, {"MsgPriority": 1}, {"From_Account": ""},
        {"From_Account": "x" * 33}, {"CloudCustomData": 5}, {"To_Account": ["bob"]},
        {"ForbidCallbackControl": "ForbidBeforeSendMsgCallback"}, {"OfflinePushInfo": 5},
        {"OnlineOnlyFlag": 2}, {"GroupAtInfo": {}}, {"SendMsgControl": [1]},
    ]
    for change in bad:
        fails(await rest(live, G, "send_group_msg", {**body, **change}), 10004)
    for missing in ("Random", "MsgBody", "GroupId"):
        fails(await rest(live, G, "send_group_msg",
                         {k: v for k, v in body.items() if k != missing}), 10004)
    fails(await rest(live, G, "send_group_msg", {**body, "MsgBody": text("x" * 12288)}), 80002)
    fails(await rest(live, G, "send_group_msg", {**body, "CloudCustomData": "x" * 12288}), 80002)
    fails(await rest(live, G, "send_group_msg", {**body, "GroupId": "nope"}), 10010)
    assert live.node.rooms[gid].sched.next_seq == 1  # nothing was sent


async def test_a_message_of_exactly_12_kb_is_accepted(live: Live) -> None:
    gid = await live.room("r1")
    overhead = len(b'[{"MsgType":"TIMTextElem","MsgContent":{"Text":""}}]')
    body = {"GroupId": gid, "Random": 1, "MsgBody": text("x" * (12288 - overhead))}
    assert ok(await rest(live, G, "send_group_msg", body))["MsgSeq"] == 1


# ------------------------------------------------------------ system notification
async def test_a_system_notification_is_a_tip_that_bypasses_the_rate(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    guest = await live.client(None, join=gid)
    ok(await rest(live, "livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 0}))
    ok(await rest(live, G, "send_group_system_notification",
                  {"GroupId": gid, "Content": "closing soon", "ToMembers_Account": []}))
    for member in (alice, guest):
        tip = await member.next_push("tips")
        assert {"type": "system", "content": "closing soon"} in tip["tips"]
    assert live.node.rooms[gid].sched.next_seq == 1


async def test_system_notification_errors(live: Live) -> None:
    gid = await live.room("r1")
    n = "send_group_system_notification"
    fails(await rest(live, G, n, {"GroupId": gid, "Content": "x", "ToMembers_Account": ["a"]}),
          10004)
    fails(await rest(live, G, n, {"GroupId": gid}), 10004)
    fails(await rest(live, G, n, {"GroupId": gid, "Content": 5}), 10004)
    fails(await rest(live, G, n, {"GroupId": gid, "Content": "x", "ToMembers_Account": "a"}),
          10004)
    fails(await rest(live, G, n, {"GroupId": gid, "Content": "x" * 12289}), 80002)
    fails(await rest(live, G, n, {"GroupId": "nope", "Content": "x"}), 10010)


# ------------------------------------------------------------ broadcast
async def test_broadcast_reaches_every_room_once_per_second(clocked: Live,
                                                            clock: ManualClock) -> None:
    live = clocked
    a, b = await live.room("a"), await live.room("b")
    in_a = await live.client("alice", join=a)
    in_b = await live.client("bob", join=b)
    body = {"From_Account": "host", "Random": 1, "MsgBody": custom('{"type":1}'),
            "CloudCustomData": "c"}
    first = ok(await rest(live, G, "send_broadcast_msg", body))
    assert first["MsgSeq"] == 1
    for member, gid in ((in_a, a), (in_b, b)):
        push = await member.next_push("msgs")
        (msg,) = push["msgs"]
        assert push["groupId"] == gid and msg["broadcast"] is True
        assert msg["from"] == "host" and msg["priority"] == "High"
    assert ok(await rest(live, G, "send_broadcast_msg", body)) == first  # a repeat
    fails(await rest(live, G, "send_broadcast_msg", {**body, "Random": 2}), 10023)
    clock.advance(1)
    assert ok(await rest(live, G, "send_broadcast_msg", {**body, "Random": 2}))["MsgSeq"] == 2


async def test_broadcast_errors(live: Live) -> None:
    body = {"Random": 1, "MsgBody": text("x")}
    fails(await rest(live, G, "send_broadcast_msg", {**body, "MsgBody": []}), 10004)
    fails(await rest(live, G, "send_broadcast_msg", {"MsgBody": text("x")}), 10004)
    fails(await rest(live, G, "send_broadcast_msg", {**body, "MsgBody": text("x" * 11990)}),
          80002)
    ok(await rest(live, G, "send_broadcast_msg", body))  # no rooms: still fine


# ------------------------------------------------------------ no history
async def test_group_msg_get_simple_answers_10044(live: Live) -> None:
    gid = await live.room("r1")
    fails(await rest(live, G, "group_msg_get_simple", {"GroupId": gid, "ReqMsgNumber": 20}),
          10044)
    fails(await rest(live, G, "group_msg_get_simple", {"GroupId": "nope"}), 10010)
