"""History and recovery in a cluster (docs/design.md, "History and recovery"):
three ``livecast serve`` processes on a real redis-server (and on a real Redis
Cluster): a member that lost its socket rejoins on another process, after the
room's owner was killed, and gets every message it missed, then live ones,
with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
import redis

from livecast.backplane.redis_broker import RedisBroker
from livecast.client import Client, text
from livecast.core.wsframe import frame
from livecast.node.history import HistoryBook, RedisHistoryStore
from livecast.settings import Settings
from tests.conftest import SDKAPPID
from tests.node.test_cluster import GID, cluster, member, redis_url, seqs_of
from tests.redis_fixtures import redis_cluster
from tests.test_restart import Server, sig, until

__all__ = ["cluster", "redis_cluster", "redis_url"]


async def send_ok(sender: Client, n: int, tag: str) -> list[int]:
    out = []
    for i in range(n):
        r = await sender.send(GID, text(f"{tag}{i}"))
        assert r["code"] == 0, r
        out.append(r["msgSeq"])
    return out


@pytest.mark.parametrize("redis_url", ["server", "cluster"], indirect=True)
async def test_recovery_on_another_process_after_the_owner_is_killed(
        cluster: list[Server], redis_url: str) -> None:
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "history"})  # a owns it
    viewer = await member(b, "viewer")
    sender = await member(c, "sender")
    before = await send_ok(sender, 4, "before")
    got = [s for s, _t in await seqs_of(viewer, 4)]
    assert got == before
    viewer.drop()  # the viewer's network goes away
    await viewer.wait_closed()
    away = await send_ok(sender, 3, "away")
    await a.stop(signal.SIGKILL)  # and the room's owner dies
    later: list[int] = []

    async def delivered_again() -> bool:
        r = await sender.send(GID, text("after-failover"))
        assert r["code"] in (0, 10002), r
        if r["code"] == 0:
            later.append(r["msgSeq"])
        return bool(r["code"] == 0)

    await until(delivered_again, "the room going on elsewhere", within=15)
    viewer.url = f"ws://127.0.0.1:{c.port}/v1/ws"  # back on another process
    replies = await viewer.reconnect(SDKAPPID, "viewer", sig("viewer"))
    assert replies.get(GID, {}).get("recovered") is True, replies
    more = await send_ok(sender, 2, "live")
    expected = [*away, *later, *more]
    assert expected == list(range(before[-1] + 1, before[-1] + 1 + len(expected)))
    assert [s for s, _t in await seqs_of(viewer, len(expected))] == expected
    # a new member asks for the last three, on the third process
    fresh, code = await b.client("fresh")
    assert code == 0
    r = await fresh.join(GID, history=3)
    assert [m["seq"] for m in r["msgs"]] == expected[-3:]
    for x in (viewer, sender, fresh):
        await x.close()


async def test_the_stream_is_trimmed_and_written_once_per_tick(
        cluster: list[Server], redis_url: str) -> None:
    """The owner writes one stream entry per tick batch, not per member, and
    trims it to LIVECAST_HISTORY_SIZE entries; the REST extension reads it."""
    a, b, _c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "stream"})
    members = [await member(s, f"m{i}") for i, s in enumerate(cluster)]
    sender = await member(b, "sender")
    sent = await send_ok(sender, 6, "t")
    for m in members:
        assert [s for s, _t in await seqs_of(m, 6)] == sent
    r = redis.Redis.from_url(redis_url)
    entries = r.xrange(f"lc:{{g:{GID}}}:history")
    seqs = [m["seq"] for _id, f in entries for m in _msgs(f[b"p"])]
    assert seqs == sent  # each message once, whatever the three processes' members
    assert len(entries) <= len(sent)
    r.close()
    got = await b.ok("livecast_ext", "get_room_history", {"GroupId": GID, "Count": 4})
    assert [m["seq"] for m in got["MsgList"]] == sent[-4:] and got["LastSeq"] == sent[-1]
    for x in (*members, sender):
        await x.close()


def _msgs(payload: bytes) -> list[dict[str, Any]]:
    import orjson
    msgs: list[dict[str, Any]] = orjson.loads(payload)["msgs"]
    return msgs


async def test_concurrent_rejoins_on_one_process_share_one_read(cluster: list[Server]) -> None:
    """Twenty members rejoin at once on a process that does not follow the
    room yet: every one is recovered."""
    a, b, _c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "storm"})
    sender = await member(a, "sender")
    sent = await send_ok(sender, 5, "s")
    viewers = []
    for i in range(20):
        v, code = await b.client(f"v{i}")
        assert code == 0
        viewers.append(v)
    replies = await asyncio.gather(*(v.join(GID, since_seq=sent[1]) for v in viewers))
    for r in replies:
        assert r["recovered"] is True and [m["seq"] for m in r["msgs"]] == sent[2:], r
    for x in (*viewers, sender):
        await x.close()


@pytest.mark.parametrize("redis_url", ["server", "cluster"], indirect=True)
async def test_a_seed_reads_only_the_batches_already_published(redis_url: str) -> None:
    """The owner writes a batch to the stream, then publishes it: a seed read
    in between leaves that batch out (it comes live), so a join answered
    from the ring never counts in ``lastSeq`` a message it is still to get."""
    broker = RedisBroker(redis_url, "a")
    store = RedisHistoryStore(redis_url, Settings())
    try:
        token = await broker.acquire_lease(GID, "a", 30)
        assert token is not None
        one, two = (orjson.dumps({"op": "msgs", "groupId": GID, "msgs": [
            {"seq": seq, "time": 1, "from": "s", "msgBody": []}]}) for seq in (1, 2))
        assert await store.append(GID, token, one)
        assert await broker.publish(GID, frame(one), None, 1, token)
        assert await store.append(GID, token, two)  # written, not published yet
        _epoch, batches, published = await store.read(GID, 7)
        assert batches == [one] and published == 1
        assert await broker.publish(GID, frame(two), None, 2, token, prev=1)
        _epoch, batches, published = await store.read(GID, 7)
        assert batches == [one, two] and published == 2
    finally:
        await store.close()
        await broker.close()


@pytest.mark.parametrize("redis_url", ["server", "cluster"], indirect=True)
async def test_the_publish_appends_the_stream_in_the_same_step(redis_url: str) -> None:
    """The owner's tick is one script: the batch reaches the room's stream
    exactly when it is published (backplane/broker.py, invariant 7); a publish
    refused (a stale token, a batch not following the last) appends nothing."""
    settings = Settings(history_size=3)
    broker = RedisBroker(redis_url, "a")
    store = RedisHistoryStore(redis_url, settings)
    book = HistoryBook(settings, lambda: 0.0, 0, store)
    try:
        assert broker.streams and store.in_broker
        token = await broker.acquire_lease(GID, "a", 30)
        assert token is not None
        batches = [orjson.dumps({"op": "msgs", "groupId": GID, "msgs": [
            {"seq": seq, "time": 1, "from": "s", "msgBody": []}]}) for seq in range(1, 6)]

        async def publish(seq: int, *, prev: int, tok: int | None = None) -> bool:
            full = frame(batches[seq - 1])
            return await broker.publish(GID, full, None, seq, tok if tok is not None else token,
                                        prev, stream=book.riding(GID, full))

        assert await publish(1, prev=-1)
        epoch, held, _published = await store.read(GID, 7)
        assert held == batches[:1] and epoch != 7  # the first append gave the stream its epoch
        assert not await publish(2, prev=1, tok=token - 1)  # a deposed owner
        assert not await publish(3, prev=2)  # does not follow seq 1
        assert (await store.read(GID, 7))[1] == batches[:1]
        for seq in range(2, 6):
            assert await publish(seq, prev=seq - 1)
        again, held, published = await store.read(GID, 7)
        assert again == epoch and held == batches[2:]  # trimmed to history_size
        assert published == 5
    finally:
        await store.close()
        await broker.close()

