"""A join's ``lastSeq`` and recovery in a cluster (node/history.py), two
processes on a real redis-server with the history kept in Redis: the answer
holds when the room's stream expired, when history is off, when the ring is
dropped while a join waits, and after a lost pub/sub connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from livecast.backplane.redis_broker import RedisBroker
from livecast.node.history import RedisHistoryStore
from livecast.node.node import Node
from livecast.settings import Settings
from livecast.store.redis import RedisStore
from tests.node.test_cluster_bundles import GID, outgoing
from tests.node.test_cluster_fates import until
from tests.node.test_cluster_resync import back, cut_off, gate
from tests.node.test_fanout import Member, logged_in, member, members
from tests.redis_fixtures import RedisServer

__all__ = ["gate", "members"]

WAIT = 10.0


async def history_node(url: str, name: str, **settings: Any) -> Node:
    """A cluster member whose rooms and history are in Redis."""
    s = Settings(room_rate=1000, room_burst=1000, allow_guests=False, **settings)
    n = Node(s, store=await RedisStore.open(url))
    n.join_cluster(RedisBroker(url, name))
    n.history.store = RedisHistoryStore(url, s)
    await n.start()
    return n


async def two(url: str, **settings: Any) -> tuple[Node, Node]:
    """a owns the room, b is another process; both keep history in Redis."""
    a = await history_node(url, "a", **settings)
    await a.create_group("administrator", {"Name": GID}, GID)
    b = await history_node(url, "b", **settings)
    assert GID in b.rooms  # read from the store at its start
    await b.link.sweep()
    return a, b


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    a, b = await two(redis.url)
    yield a, b
    await close(a, b)


async def close(*nodes: Node) -> None:
    for n in reversed(nodes):
        await n.close_collaborators()
        await n.store.close()


async def send(node: Node, n: int) -> list[int]:
    """``n`` REST sends through ``node``, one after the other: their seqs."""
    seqs = []
    for i in range(n):
        msg, answer = outgoing(node, i)
        node.submit(GID, msg)
        seqs.append((await asyncio.wait_for(answer, WAIT))["MsgSeq"])
    return seqs


async def test_a_room_whose_stream_expired_still_answers_its_last_seq(
        pair: tuple[Node, Node], redis: RedisServer, members: list[Member]) -> None:
    """The stream expired (LIVECAST_HISTORY_TTL after its last batch; deleted
    here), the room's seq did not: a join seeds its ring at that seq, so
    nothing missed is recovered and a missed message is not."""
    a, b = pair
    assert await send(a, 3) == [1, 2, 3]
    client = aioredis.Redis.from_url(redis.url)
    assert await client.delete(f"lc:{{g:{GID}}}:history") == 1
    await client.aclose()
    m = await logged_in(b, members, "viewer")
    r = await b.enter(m.conn, GID, {"groupId": GID, "sinceSeq": 3})
    assert (r["lastSeq"], r["recovered"], r["msgs"]) == (3, True, [])
    r = await b.enter(m.conn, GID, {"groupId": GID, "sinceSeq": 1})
    assert (r["lastSeq"], r["recovered"], r["msgs"]) == (3, False, [])
    assert (await b.read_history(GID, 5))[1] == 3


async def test_with_history_off_a_cluster_join_still_answers_the_room_s_last_seq(
        redis: RedisServer, members: list[Member]) -> None:
    a, b = await two(redis.url, history_size=0)
    try:
        assert await send(a, 2) == [1, 2]
        m = await logged_in(b, members, "viewer")
        r = await b.enter(m.conn, GID, {"groupId": GID, "sinceSeq": 0})
        assert (r["lastSeq"], r["recovered"]) == (2, False)
        assert await send(a, 1) == [3]
        await until(lambda: b.history.last_seq(GID) == 3, "the batch followed")
        r = await b.enter(m.conn, GID, {"groupId": GID, "sinceSeq": 3})
        assert (r["lastSeq"], r["recovered"]) == (3, True)
    finally:
        await close(a, b)


@pytest.mark.parametrize("meanwhile", ["rest read", "refused join"])
async def test_a_ring_is_not_dropped_under_a_join_that_waits_for_it(
        pair: tuple[Node, Node], redis: RedisServer, members: list[Member],
        meanwhile: str) -> None:
    """A REST history read, or a refused join, on a process with no member in
    the room drops the room's ring when it ends; a join waiting on the same
    read meanwhile is still answered from the ring, with the room's epoch."""
    a, b = pair
    assert await send(a, 3) == [1, 2, 3]
    client = aioredis.Redis.from_url(redis.url)
    epoch = int(await client.get(f"lc:{{g:{GID}}}:hepoch"))
    await client.aclose()
    viewer = await logged_in(b, members, "viewer")
    if meanwhile == "rest read":
        first = asyncio.ensure_future(b.read_history(GID, 5))
    else:
        guest = await member(members)  # not logged in, guests off: refused
        b.attach(guest.conn)
        first = asyncio.ensure_future(b.enter(guest.conn, GID, {"groupId": GID}))
    r = await b.enter(viewer.conn, GID, {"groupId": GID, "sinceSeq": 1,
                                        "historyEpoch": epoch, "history": 2})
    await asyncio.gather(first, return_exceptions=True)
    assert (r["historyEpoch"], r["lastSeq"], r["recovered"]) == (epoch, 3, True)
    assert [m["seq"] for m in _decoded(r["msgs"])] == [2, 3]
    assert b.history.last_seq(GID) == 3  # followed while the member is here


async def test_a_ring_that_may_have_missed_a_batch_is_read_again(
        pair: tuple[Node, Node], gate: asyncio.Event, members: list[Member]) -> None:
    """b's pub/sub connection is cut while a batch goes out: once it is back,
    b's ring is read again, so a rejoin on b is not answered from the stale
    ring (recovered, but without the message it missed)."""
    a, b = pair
    viewer = await logged_in(b, members, "viewer")
    await b.enter(viewer.conn, GID, {"groupId": GID, "history": 1})
    await until(lambda: GID in b.link.following, "b subscribed")
    assert await send(a, 3) == [1, 2, 3]
    await until(lambda: b.history.last_seq(GID) == 3, "b's ring followed")
    await cut_off(b, gate)
    assert await send(a, 1) == [4]  # b does not hear it
    resyncs = b.link.resyncs
    await back(b, gate)
    await until(lambda: b.link.resyncs > resyncs, "the resync done")
    r = await b.enter(viewer.conn, GID, {"groupId": GID, "sinceSeq": 3})
    assert (r["lastSeq"], r["recovered"]) == (4, True)
    assert [m["seq"] for m in _decoded(r["msgs"])] == [4]


def _decoded(msgs: list[Any]) -> list[dict[str, Any]]:
    """A join reply's messages (``orjson.Fragment``s) as the client reads them."""
    import orjson
    decoded: list[dict[str, Any]] = orjson.loads(orjson.dumps(msgs))
    return decoded


async def test_a_room_created_again_after_a_destroy_has_none_of_the_old_history(
        pair: tuple[Node, Node], members: list[Member]) -> None:
    """As on one process: the destroyed room's messages went with it."""
    a, b = pair
    assert await send(a, 3) == [1, 2, 3]
    await a.destroy_group(GID)
    await until(lambda: GID not in b.rooms, "the destroy announced")
    await a.create_group("administrator", {"Name": GID}, GID)
    new = await send(a, 1)
    m = await logged_in(b, members, "viewer")
    r = await b.enter(m.conn, GID, {"groupId": GID, "history": 20})
    assert [x["seq"] for x in _decoded(r["msgs"])] == new
    import orjson
    assert [orjson.loads(x)["seq"] for x in (await a.read_history(GID, 20))[2]] == new


async def test_after_redis_lost_its_data_a_new_owner_numbers_on_from_what_it_saw(
        pair: tuple[Node, Node], redis: RedisServer, members: list[Member]) -> None:
    """Redis restarted empty has no last seq: a process with a member in the
    room (its history ring) that takes it goes on from the last seq it saw,
    not from 1 (no seq given twice)."""
    a, b = pair
    m = await logged_in(b, members, "viewer")
    await b.enter(m.conn, GID, {"groupId": GID})  # b follows the room
    assert await send(a, 3) == [1, 2, 3]
    await until(lambda: b.history.last_seq(GID) == 3, "the batches followed")
    client = aioredis.Redis.from_url(redis.url)
    try:
        await client.flushall()  # Redis lost its data
    finally:
        await client.aclose()
    a.link.lost(GID)
    taken = await b.link.broker.acquire_lease(GID, "b", 3.0)
    assert isinstance(taken, int)
    await b.link._answered(GID, taken)
    assert b.rooms[GID].sched.next_seq == 4
