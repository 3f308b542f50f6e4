"""Big rooms are written chunk by chunk, and frames never overtake each other."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from livecast.client import Client, text
from tests.conftest import SDKAPPID, LiveFactory, sig


async def seqs_until(c: Client, last: int) -> list[int]:
    seen: list[int] = []
    while not seen or seen[-1] < last:
        push = await c.next_push("msgs")
        seen += [m["seq"] for m in push["msgs"]]
    return seen


async def test_every_member_gets_every_frame_in_order_across_chunks(
        live_factory: LiveFactory) -> None:
    live = await live_factory(fanout_chunk=2, tick_ms=5, room_rate=2000, room_burst=2000,
                              max_wait=(30.0, 30.0, 30.0, 30.0))
    gid = await live.room()
    members = [await live.client(f"m{i}", join=gid) for i in range(7)]
    senders = members[:3]
    replies = await asyncio.gather(*[s.send(gid, text(f"{i}")) for i in range(40)
                                     for s in senders])
    assert sorted(r["msgSeq"] for r in replies) == list(range(1, 121))
    for m in members:
        assert await seqs_until(m, 120) == list(range(1, 121))


async def test_a_chunked_fanout_is_in_progress_between_loop_iterations(
        live_factory: LiveFactory) -> None:
    live = await live_factory(fanout_chunk=2)
    gid = await live.room()
    members = [await live.client(f"m{i}", join=gid) for i in range(5)]
    room = live.node.hub.rooms[gid]
    live.node.system_notification(gid, "hello")
    assert len(room.fanq) == 1 and room.fanq[0].pos == 2  # first chunk written, rest queued
    for m in members:
        push = await m.next_push("tips")
        tips = [t for t in push["tips"] if t["type"] == "system"]
        while not tips:
            push = await m.next_push("tips")
            tips = [t for t in push["tips"] if t["type"] == "system"]
        assert tips[0]["content"] == "hello"
    assert not room.fanq


def test_a_waiting_job_absorbs_later_frames_in_order() -> None:
    from livecast.node.fanout import FanJob

    job = FanJob(b"A", None, [])
    job.absorb(b"B", None)
    assert (job.full, job.lite) == (b"AB", None)
    job.absorb(b"C", b"c")
    assert (job.full, job.lite) == (b"ABC", b"ABc")
    job.absorb(b"D", b"")
    assert (job.full, job.lite) == (b"ABCD", b"ABc")


async def test_destroying_a_big_room_tells_every_member(live_factory: LiveFactory) -> None:
    live = await live_factory(fanout_chunk=1)
    gid = await live.room()
    members = [await live.client(f"m{i}", join=gid) for i in range(4)]
    live.node.system_notification(gid, "in flight")  # a chunked job still running
    await live.node.destroy_group(gid)
    for m in members:
        ops = []
        while not ops or ops[-1] != "kicked":
            push = await m.next_push()
            ops.append(push["op"] if push["op"] != "tips" else push["tips"][0]["type"])
        assert ops[-2:] == ["destroyed", "kicked"]


async def test_a_joiner_never_gets_a_batch_of_its_join_reply_again(
        live_factory: LiveFactory) -> None:
    from livecast.core.scheduler import Priority
    from livecast.node.room import Outgoing

    live = await live_factory(fanout_chunk=1)
    gid = await live.room()
    for i in range(3):
        await live.client(f"m{i}", join=gid)
    late = await live.client("late")
    owner, room = live.node.room(gid), live.node.hub.rooms[gid]

    def publish(what: str) -> None:
        live.node.submit(gid, Outgoing("m0", "", "", Priority.NORMAL, 0, text(what), ""))
        owner.dispatch()

    publish("one")
    publish("two")  # its frame waits behind the first one's, chunk by chunk
    assert len(room.fanq) == 2
    conn = next(iter(live.node.hub.sessions["late"]))
    reply = live.node.join(conn, gid, {"groupId": gid, "history": 20})
    history = orjson.loads(orjson.dumps(reply["msgs"]))  # the kept batches, as sent
    assert reply["lastSeq"] == 2 and [m["seq"] for m in history] == [1, 2]
    publish("three")
    assert await seqs_until(late, 3) == [3]  # 2 was in the reply: not pushed again


async def test_joins_between_frames_keep_the_queue_bounded_and_in_order(
        live_factory: LiveFactory) -> None:
    from livecast.core.scheduler import Priority
    from livecast.node.hub import MAX_WAITING
    from livecast.node.room import Outgoing

    live = await live_factory(fanout_chunk=1)
    gid = await live.room()
    members = [await live.client(f"m{i}", join=gid) for i in range(3)]
    late = [await live.client(f"late{i}") for i in range(6)]
    owner, room = live.node.room(gid), live.node.hub.rooms[gid]
    longest = 0
    for i in range(len(late)):  # a frame, then a join, while the fan-out is behind
        live.node.submit(gid, Outgoing("m0", "", "", Priority.NORMAL, 0, text(f"{i}"), ""))
        owner.dispatch()
        longest = max(longest, len(room.fanq))
        live.node.join(next(iter(live.node.hub.sessions[f"late{i}"])), gid)
    assert longest == MAX_WAITING + 1  # the queue grew to its bound and no further
    for m in members:
        assert await seqs_until(m, len(late)) == list(range(1, len(late) + 1))


async def test_a_sender_past_the_first_chunk_gets_its_echo_before_its_reply(
        live_factory: LiveFactory) -> None:
    """docs/protocol.md: the echo of a delivered message arrives before its
    reply, in a room written chunk by chunk too (the sender joined last, so
    its frame goes out in the last chunk)."""
    live = await live_factory(fanout_chunk=1)
    gid = await live.room()
    others = [await live.client(f"m{i}", join=gid) for i in range(3)]
    async with aiohttp.ClientSession() as http, http.ws_connect(live.ws_url) as ws:
        await ws.send_json({"op": "login", "id": 1, "sdkAppId": SDKAPPID,
                            "userId": "sender", "userSig": sig("sender")})
        await ws.send_json({"op": "join", "id": 2, "groupId": gid})
        while (await ws.receive_json()).get("id") != 2:
            pass
        for n in range(3):
            await ws.send_json({"op": "send", "id": 10 + n, "groupId": gid,
                                "msgBody": text(f"m{n}")})
            seen: list[str] = []
            while True:
                got = await ws.receive_json()
                if got["op"] == "msgs":
                    seen += [f"echo {m['seq']}" for m in got["msgs"]]
                elif got["op"] == "reply" and got["id"] == 10 + n:
                    seen.append(f"reply {got['msgSeq']}")
                    break
            assert seen[-2:] == [f"echo {n + 1}", f"reply {n + 1}"]
    for c in others:
        assert await seqs_until(c, 3) == [1, 2, 3]
