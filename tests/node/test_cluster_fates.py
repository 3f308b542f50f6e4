"""Delivered fates riding on the tick's batch (cluster.py, invariant 13), on a
real redis-server: a process that follows the room gets its forwarded sends'
answers with the batch, with no ``FateNotice`` sent back; it stays subscribed
until they are answered even when its last member leaves meanwhile; a batch
that is not published answers its riders 10002 through ``FateNotice``; a
process that does not follow the room gets ``FateNotice`` as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import redis.asyncio as aioredis

from livecast.bench.path import CountingTransport
from livecast.core.fate import Address
from livecast.core.scheduler import Priority
from livecast.node.cluster import RETRY_INFO
from livecast.node.connection import Connection
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.store.memory import MemoryStore
from tests.backplane.conftest import until_true
from tests.node.test_cluster_bundles import (
    BODY,
    GID,
    WAIT,
    all_refused,
    outgoing,
    owner_and_other,
)
from tests.redis_fixtures import RedisServer

SENDS = 5
B_CTL = b"lc:{n:b}:ctl"



@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    """a owns the room, b is another process on the same Redis."""
    a, b = await owner_and_other(redis.url, MemoryStore())
    yield a, b
    await b.close_collaborators()
    await a.close_collaborators()


@pytest.fixture
async def tap(redis: RedisServer) -> AsyncIterator[ControlTap]:
    control = ControlTap(redis.url)
    await control.start()
    yield control
    await control.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """State set by a task with no event to wait on: asked again until true."""
    async def probe() -> bool:
        return condition()
    try:
        await until_true(probe, WAIT)
    except TimeoutError:
        pytest.fail(f"never: {what}")


async def follow(node: Node) -> None:
    """``node`` has a member in the room now (as the hub's first join tells it)."""
    node.link.watch(GID, True)
    await until(lambda: GID in node.link.following, "the subscription confirmed")


class ControlTap:
    """What Redis carries on b's control channel, in order."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()

    async def start(self) -> None:
        await self.pubsub.subscribe(B_CTL)
        await self.pubsub.get_message(timeout=WAIT)  # the confirmation

    async def kinds_until_marker(self) -> list[str]:
        """Every control message kind sent to b so far: a marker published
        now comes after all of them (one channel keeps its order)."""
        await self.client.publish(B_CTL, b'{"o":"tap","k":"marker"}')
        kinds: list[str] = []
        async with asyncio.timeout(WAIT):
            while True:
                m = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
                if m is None:
                    continue
                doc = orjson.loads(m["data"])
                docs = doc.get("b", [doc])
                if docs[0]["k"] == "marker":
                    return kinds
                kinds += [d["k"] for d in docs]

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()


async def test_a_following_process_gets_its_answers_on_the_batch_with_no_fate_notice(
        pair: tuple[Node, Node], tap: ControlTap) -> None:
    a, b = pair
    await follow(b)
    sends = [outgoing(b, i) for i in range(SENDS)]
    for msg, _answer in sends:
        b.submit(GID, msg)
    answers = await asyncio.wait_for(asyncio.gather(*(f for _m, f in sends)), WAIT)
    seqs = [r["MsgSeq"] for r in answers]
    assert seqs == list(range(seqs[0], seqs[0] + SENDS))  # each once, in order
    assert await tap.kinds_until_marker() == []  # no FateNotice crossed to b
    assert not b.link.forwarded and not b.link.riding and not a.link.riders
    assert sum(a.metrics.hot.delivered) == SENDS  # counted on the owner all the same


async def test_a_process_whose_last_member_leaves_stays_subscribed_for_its_answers(
        pair: tuple[Node, Node], tap: ControlTap) -> None:
    _a, b = pair
    await follow(b)
    msg, answer = outgoing(b, 1)
    b.submit(GID, msg)
    b.link.watch(GID, False)  # the last member leaves before the fate comes
    result = await asyncio.wait_for(answer, WAIT)
    assert result["MsgSeq"] > 0
    assert await tap.kinds_until_marker() == []  # it came on the batch
    await until(lambda: GID not in b.link.broker.refs, "unsubscribed once answered")
    assert not b.link.riding and GID not in b.link.following
    msg, answer = outgoing(b, 2)  # no member now: the fate comes as a FateNotice
    b.submit(GID, msg)
    assert not b.link.riding
    assert (await asyncio.wait_for(answer, WAIT))["MsgSeq"] == result["MsgSeq"] + 1
    assert await tap.kinds_until_marker() == ["fate"]


async def test_a_member_back_before_the_answer_keeps_the_one_subscription(
        pair: tuple[Node, Node]) -> None:
    _a, b = pair
    await follow(b)
    msg, answer = outgoing(b, 1)
    b.submit(GID, msg)
    b.link.watch(GID, False)
    b.link.watch(GID, True)  # back: the subscription held for the rider is kept
    await asyncio.wait_for(answer, WAIT)
    assert b.link.broker.refs.counts[GID] == 1 and GID in b.link.following
    msg, answer = outgoing(b, 2)
    b.submit(GID, msg)
    assert b.link.riding == {GID: 1}  # still riding
    await asyncio.wait_for(answer, WAIT)


async def test_the_riders_of_a_batch_that_is_not_published_get_10002(
        redis: RedisServer, pair: tuple[Node, Node]) -> None:
    a, b = pair
    client = aioredis.Redis.from_url(redis.url)
    try:
        await follow(b)
        await client.incr(f"lc:{{g:{GID}}}:fence")  # a is deposed: its publish is refused
        sends = [outgoing(b, i) for i in range(SENDS)]
        for msg, _answer in sends:
            b.submit(GID, msg)
        await all_refused(sends, RETRY_INFO)
        assert not b.link.forwarded and not b.link.riding and not a.link.riders
    finally:
        await client.aclose()


def _own_sender(node: Node) -> tuple[Outgoing, CountingTransport]:
    """A WebSocket sender on ``node`` (a real Connection over the bench's
    counting transport): its reply is what the transport is written."""
    transport = CountingTransport()
    conn = Connection(transport, "127.0.0.1")
    node.hub.attach(conn)
    return Outgoing("own", "", "", Priority.NORMAL, 1, BODY, "",
                    Address(conn.id, 7, 0, node.link.node_id)), transport


async def test_an_own_sender_s_fate_rides_its_batch_back_here(pair: tuple[Node, Node]) -> None:
    a, _b = pair
    await follow(a)
    msg, transport = _own_sender(a)
    a.submit(GID, msg)
    await until(lambda: transport.frames == 1, "the reply written")
    assert not a.link.own_rides and a.link.late_rides == 0  # by the batch, not the grace


async def test_own_sends_that_reuse_a_request_id_are_each_answered(
        pair: tuple[Node, Node]) -> None:
    a, _b = pair
    await follow(a)
    msg, transport = _own_sender(a)
    again = Outgoing("own", "", "", Priority.NORMAL, 2, BODY, "", msg.reply_to)
    a.submit(GID, msg)
    a.submit(GID, again)  # the same connection and id: one batch or two
    await until(lambda: transport.frames == 2, "both replies written")
    assert not a.link.own_rides and a.link.late_rides == 0


async def test_an_own_sender_whose_batch_never_comes_back_is_answered_all_the_same(
        pair: tuple[Node, Node]) -> None:
    a, _b = pair
    await follow(a)
    msg, transport = _own_sender(a)
    await a.link.broker.unsubscribe(GID)  # the batch will not come back here
    a.submit(GID, msg)
    await until(lambda: msg.reply_to in a.link.own_rides, "its fate riding")
    assert transport.frames == 0
    await until(lambda: transport.frames == 1, "answered after OWN_RIDE_GRACE")
    assert not a.link.own_rides and a.link.late_rides == 1
