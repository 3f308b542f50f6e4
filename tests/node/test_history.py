"""Recent messages on join and seq-based recovery (livecast/node/history.py),
against a real server over loopback with the Python client."""

from __future__ import annotations

import asyncio
from typing import Any

from livecast.client import Client, text
from livecast.errors import Code
from livecast.node.history import HistoryBook, MemoryHistoryStore
from tests.conftest import SDKAPPID, Live, LiveFactory, base_settings, sig
from tests.gateway.test_ws_closes import RawWs, login_raw, metric

ROOM = "hist-1"


async def send_n(sender: Client, n: int, start: int = 0, priority: str = "Normal") -> None:
    for i in range(start, start + n):
        r = await sender.send(ROOM, text(f"m{i}"), priority=priority)
        assert r["code"] == 0, r


async def seqs_until(c: Client, last: int) -> list[int]:
    """Every seq pushed to ``c`` until ``last`` (msgs pushes, recovered ones included)."""
    got: list[int] = []
    while not got or got[-1] < last:
        push = await c.next_push("msgs")
        got.extend(m["seq"] for m in push["msgs"])
    return got


def texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["msgBody"][0]["MsgContent"]["Text"] for m in msgs]


async def test_join_with_history_answers_the_last_n_in_order(live: Live) -> None:
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 30)
    c = await live.client("bob")
    r = await c.join(ROOM, history=5)
    assert r["code"] == 0
    assert [m["seq"] for m in r["msgs"]] == [26, 27, 28, 29, 30]
    assert texts(r["msgs"]) == ["m25", "m26", "m27", "m28", "m29"]
    first = r["msgs"][0]
    assert first["from"] == "alice" and first["priority"] == "Normal" and first["time"] > 0
    assert r["lastSeq"] == 30 and r["historyEpoch"] == r["epoch"]
    # at most LIVECAST_JOIN_HISTORY_MAX (20)
    other = await live.client("carol")
    assert len((await other.join(ROOM, history=1000))["msgs"]) == 20


async def test_a_plain_join_carries_no_messages(live: Live) -> None:
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 3)
    r = await (await live.client("bob")).join(ROOM)
    assert "msgs" not in r and r["lastSeq"] == 3


async def test_rejoin_since_seq_recovers_what_was_missed_then_live(live: Live) -> None:
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    viewer = await live.client("bob", ROOM)
    await send_n(sender, 5)
    assert await seqs_until(viewer, 5) == [1, 2, 3, 4, 5]
    viewer.drop()  # the network goes away
    await viewer.wait_closed()
    await send_n(sender, 7, start=5)  # 6..12, while bob is away
    replies = await viewer.reconnect(SDKAPPID, "bob", sig("bob"))
    assert replies[ROOM]["recovered"] is True and replies[ROOM]["lastSeq"] == 12
    await send_n(sender, 3, start=12)  # 13..15, live
    assert await seqs_until(viewer, 15) == list(range(6, 16))


async def test_recovery_beyond_the_history_says_not_recovered(live_factory: LiveFactory) -> None:
    live = await live_factory(history_size=5)
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 12)
    c = await live.client("bob")
    r = await c.join(ROOM, since_seq=3, history_epoch=live.node.epoch)
    assert r["recovered"] is False and r["lastSeq"] == 12 and r["msgs"] == []
    r = await c.join(ROOM, since_seq=7, history_epoch=live.node.epoch)  # 8..12 held
    assert r["recovered"] is True and [m["seq"] for m in r["msgs"]] == [8, 9, 10, 11, 12]


async def test_recovery_from_another_epoch_is_not_recovered(live: Live) -> None:
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 4)
    c = await live.client("bob")
    r = await c.join(ROOM, since_seq=2, history_epoch=live.node.epoch - 1)  # an earlier run
    assert r["recovered"] is False and r["lastSeq"] == 4 and r["msgs"] == []


async def test_history_off(live_factory: LiveFactory) -> None:
    live = await live_factory(history_size=0)
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 4)
    c = await live.client("bob")
    r = await c.join(ROOM, history=5, since_seq=2, history_epoch=live.node.epoch)
    assert r["code"] == 0 and r["recovered"] is False and r["msgs"] == [] and r["lastSeq"] == 4
    assert live.node.history.rings == {}
    # a member last saw nothing (seq 0): it missed 4 messages, none held
    r = await c.join(ROOM, since_seq=0, history_epoch=live.node.epoch)
    assert (r["recovered"], r["lastSeq"]) == (False, 4)
    # nothing missed: recovered, with nothing to give
    r = await c.join(ROOM, since_seq=4, history_epoch=live.node.epoch)
    assert (r["recovered"], r["msgs"], r["lastSeq"]) == (True, [], 4)


async def test_room_switch_turns_join_history_off_but_not_recovery(live: Live) -> None:
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    await send_n(sender, 4)
    r = await live.rest("livecast_ext", "set_room_history", {"GroupId": ROOM,
                                                           "JoinHistory": "Off"})
    assert r["ErrorCode"] == 0 and r["JoinHistory"] == "Off", r
    c = await live.client("bob")
    assert (await c.join(ROOM, history=5))["msgs"] == []
    r = await c.join(ROOM, since_seq=2, history_epoch=live.node.epoch)
    assert r["recovered"] is True and [m["seq"] for m in r["msgs"]] == [3, 4]
    got = await live.rest("livecast_ext", "get_room_history", {"GroupId": ROOM})
    assert got["JoinHistory"] == "Off" and [m["seq"] for m in got["MsgList"]] == [1, 2, 3, 4]


async def test_bad_history_fields_are_refused_and_the_server_goes_on(live: Live) -> None:
    await live.room(ROOM)
    c = await live.client("bob")
    for bad in ({"history": "5"}, {"history": -1}, {"sinceSeq": 1.5}, {"historyEpoch": True}):
        r = await c.request("join", groupId=ROOM, **bad)
        assert r["code"] == Code.BAD_PARAMETER, (bad, r)
    assert (await c.join(ROOM, history=1))["code"] == 0


async def test_a_recovery_storm_under_load_has_no_gap_and_no_duplicate(live: Live) -> None:
    """Members rejoin with sinceSeq while messages keep coming: each sees every
    seq exactly once, in order (the join reply's messages, then live)."""
    await live.room(ROOM)
    sender = await live.client("alice", ROOM)
    viewers = [await live.client(f"v{i}", ROOM) for i in range(20)]
    await send_n(sender, 3)
    for v in viewers:
        assert await seqs_until(v, 3) == [1, 2, 3]
    for v in viewers:
        v.drop()
    flood = asyncio.create_task(send_n(sender, 40, start=3))  # 4..43, during the rejoins
    for v in viewers:
        await v.wait_closed()
        r = await v.reconnect(SDKAPPID, v_user(viewers, v), sig(v_user(viewers, v)))
        assert r[ROOM]["recovered"] is True
    await flood
    for v in viewers:
        assert await seqs_until(v, 43) == list(range(4, 44))


def v_user(viewers: list[Client], v: Client) -> str:
    return f"v{viewers.index(v)}"


# ------------------------------------------------------------------ a cluster's book
async def test_a_cluster_book_seeds_once_per_room_and_follows_batches() -> None:
    """Concurrent readiness waits share one store read (single flight), and the
    batches received meanwhile are merged after what was stored."""
    store = MemoryHistoryStore(100)
    book = HistoryBook(base_settings(), lambda: 1000.0, epoch=7, store=store)
    for seq in (1, 2):
        assert await store.append(ROOM, 1, _payload(seq))
    gate = asyncio.Event()

    async def subscribe(gid: str) -> None:
        await gate.wait()

    async def unsubscribe(gid: str) -> None:
        return None
    book.subscribe, book.unsubscribe = subscribe, unsubscribe
    waiters = [asyncio.create_task(book.ready(ROOM)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert book.reads == 1
    book.on_batch(ROOM, _frame(3))
    rec = book.since(ROOM, 1, book.epoch_of(ROOM), 3)
    assert rec.recovered and rec.last_seq == 3 and len(rec.msgs) == 2
    book.on_batch(ROOM, _frame(5))  # 4 was lost: the ring is dropped, read again later
    assert book.needs_read(ROOM)


def _payload(seq: int) -> bytes:
    import orjson
    return orjson.dumps({"op": "msgs", "groupId": ROOM,
                         "msgs": [{"seq": seq, "time": 1000, "from": "a"}]})


def _frame(seq: int) -> bytes:
    from livecast.core.wsframe import frame
    return frame(_payload(seq))


async def test_one_process_book_needs_no_read() -> None:
    """One process keeps no store: its book is the history."""
    book = HistoryBook(base_settings(), lambda: 1000.0, epoch=7)
    assert not book.needs_read(ROOM)
    assert book.since(ROOM, 0, 7, 0).recovered  # nothing sent, nothing missed
    assert not book.since(ROOM, 0, 8, 0).recovered  # another epoch
    assert not book.since(ROOM, 0, 7, 2).recovered  # two sent, none held


async def test_messages_a_lagging_member_was_not_sent_are_recoverable(
        live_factory: LiveFactory) -> None:
    """A member that stops reading gets the lite frames (no Low messages); once
    it reads again it sees the gaps, and a join with ``sinceSeq`` (while still
    a member) brings back the Low messages it was not sent."""
    live = await live_factory(outbox_soft_bytes=64 * 1024, outbox_hard_bytes=64 << 20,
                              room_rate=400, room_burst=400, req_rate=10_000,
                              req_burst=10_000, history_size=5000, history_bytes=64 << 20,
                              stall_timeout=600.0)
    await live.room(ROOM)
    sender = await live.client("sender", ROOM)
    slow = await RawWs.connect(live, rcvbuf=4096)
    try:
        await login_raw(slow, "slow")
        assert (await slow.request("join", "j", groupId=ROOM))["code"] == 0
        last = last_normal = 0
        while not await metric(live, "livecast_frames_degraded_total"):  # it reads nothing
            assert last < 5000, "the member was never degraded"
            low, normal = await asyncio.gather(sender.send(ROOM, text("z" * 12_000), "Low"),
                                               sender.send(ROOM, text("n"), "Normal"))
            assert low["code"] == 0 and normal["code"] == 0
            last, last_normal = max(low["msgSeq"], normal["msgSeq"]), normal["msgSeq"]
        seen: list[int] = []
        while last_normal not in seen:  # now it reads (a Low one may be left out)
            frame = await asyncio.wait_for(slow.recv_json(), 10)
            if frame["op"] == "msgs":
                seen.extend(m["seq"] for m in frame["msgs"])
        missing = sorted(set(range(1, last + 1)) - set(seen))
        assert missing, "a degraded member misses Low messages"
        r = await slow.request("join", "again", groupId=ROOM, sinceSeq=missing[0] - 1,
                               historyEpoch=live.node.epoch)
        assert r["code"] == 0 and r["recovered"] is True
        got = {m["seq"]: m for m in r["msgs"]}
        assert set(missing) <= set(got)
        assert all(got[s]["priority"] == "Low" for s in missing)
    finally:
        slow.close()


async def test_a_recovery_costs_the_request_budget_by_its_size(
        live_factory: LiveFactory) -> None:
    """One token more per whole 4 KiB of messages a join answers with:
    a client repeating a large recovery, a guest too, soon waits for the
    budget (10023) instead of pulling the room's history as fast as it asks;
    a small one costs no more than any request."""
    live = await live_factory(req_rate=1, req_burst=20, room_rate=1000, room_burst=1000)
    await live.room(ROOM)
    for i in range(30):  # about 120 KiB held: 30 tokens' worth
        r = await live.rest("group_open_http_svc", "send_group_msg", {
            "GroupId": ROOM, "Random": i, "MsgBody": text(f"{i:04d}" + "x" * 4000)})
        assert r["ErrorCode"] == 0, r
    guest = await live.client()
    small = await guest.join(ROOM, since_seq=29, history_epoch=live.node.epoch)
    assert small["recovered"] is True and len(small["msgs"]) == 1
    assert (await guest.ping())["code"] == 0  # one message: a token more than its own
    whole = await guest.join(ROOM, since_seq=0, history_epoch=live.node.epoch)
    assert whole["recovered"] is True and len(whole["msgs"]) == 30
    refused = await guest.ping()
    assert refused["code"] == Code.FREQ_LIMIT, refused
