"""Control messages in bundles (cluster.py, invariant 11), on a real
redis-server: the sends a non-owner process forwards in one loop iteration
cross Redis as one message, the owner answers a tick's fates as one message,
and each send still gets exactly one answer; forwarded to an owner that is
gone, or while Redis is away, every send of a bundle is answered 10002."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from livecast.backplane.redis_broker import RedisBroker
from livecast.core.fate import AWAY_UNSURE_INFO, UNSURE_INFO, Address
from livecast.core.scheduler import Priority, RoomScheduler
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.settings import Settings
from livecast.store.memory import MemoryStore
from tests.backplane.conftest import until_true
from tests.redis_fixtures import RedisServer

GID = "bundled"
BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
WAIT = 10.0
SENDS = 5



async def cluster_node(url: str, name: str, store: MemoryStore, **settings: Any) -> Node:
    """A cluster member on ``url`` whose membership loop the test runs by hand."""
    n = Node(Settings(**{"room_rate": 1000, "room_burst": 1000, **settings}), store=store)
    n.join_cluster(RedisBroker(url, name))
    await n.link.broker.start(n.link)
    return n


class Wire:
    """Every control message Redis carries to nodes a and b, as published."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.seen: list[tuple[bytes, dict[str, Any]]] = []

    async def start(self) -> None:
        await self.pubsub.subscribe(b"lc:{n:a}:ctl", b"lc:{n:b}:ctl")
        for _ in range(2):
            await self.pubsub.get_message(timeout=WAIT)  # the two confirmations

    async def until(self, count: int) -> list[tuple[bytes, dict[str, Any]]]:
        async with asyncio.timeout(WAIT):
            while len(self.seen) < count:
                m = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
                if m is not None:
                    self.seen.append((m["channel"], orjson.loads(m["data"])))
        return self.seen

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()


def outgoing(node: Node, i: int) -> tuple[Outgoing, asyncio.Future[dict[str, Any]]]:
    """A REST send of ``node``'s, and the future its answer comes to."""
    waiter, answer = node.rest_waiter()
    return Outgoing(f"s{i}", "", "", Priority.NORMAL, i, BODY, "",
                    Address(rest=waiter, node=node.link.node_id)), answer


async def owner_and_other(url: str, store: MemoryStore) -> tuple[Node, Node]:
    a = await cluster_node(url, "a", store)
    await a.create_group("administrator", {"Name": GID}, GID)
    assert a.link.owns(GID)
    b = await cluster_node(url, "b", store)
    assert await b.link.find(GID)
    await b.link.sweep()  # b learns the room's owner
    assert b.link.owners[GID] == "a"
    return a, b


async def all_refused(sends: list[tuple[Outgoing, asyncio.Future[dict[str, Any]]]],
                      info: str) -> None:
    """Every send in ``sends`` is answered 10002 with ``info`` (a retry)."""
    for _msg, answer in sends:
        with pytest.raises(LivecastError) as err:
            await asyncio.wait_for(answer, WAIT)
        assert err.value.code == Code.INTERNAL and err.value.info == info

async def test_forwards_and_fates_cross_redis_in_one_bundle_each(redis: RedisServer) -> None:
    store = MemoryStore()
    a, b = await owner_and_other(redis.url, store)
    wire = Wire(redis.url)
    await wire.start()
    try:
        sends = [outgoing(b, i) for i in range(SENDS)]
        for msg, _answer in sends:
            b.submit(GID, msg)  # one loop iteration: one bundle
        answers = await asyncio.wait_for(asyncio.gather(*(f for _m, f in sends)), WAIT)
        seqs = [r["MsgSeq"] for r in answers]
        assert seqs == list(range(seqs[0], seqs[0] + SENDS))  # each answered once, in order
        seen = await wire.until(2)
        assert [ch for ch, _doc in seen] == [b"lc:{n:a}:ctl", b"lc:{n:b}:ctl"]
        forwards, fates = seen[0][1], seen[1][1]
        assert forwards["o"] == "b" and [d["k"] for d in forwards["b"]] == ["send"] * SENDS
        assert fates["o"] == "a" and [d["k"] for d in fates["b"]] == ["fate"] * SENDS
        assert [d["f"][1] for d in fates["b"]] == seqs
        assert not b.link.forwarded  # nothing left waiting
    finally:
        await wire.close()
        await b.close_collaborators()
        await a.close_collaborators()


async def test_a_bundle_to_an_owner_that_is_gone_is_answered_10002_each(
        redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("livecast.node.cluster.FORWARD_GRACE", 0.2)
    store = MemoryStore()
    a, b = await owner_and_other(redis.url, store)
    await a.link.broker.close()  # the owner is gone; its lease stays in Redis a while
    b.settings = Settings(room_rate=1000, room_burst=1000, max_wait=(0.1, 0.1, 0.1, 0.1))
    try:
        sends = [outgoing(b, i) for i in range(SENDS)]
        for msg, _answer in sends:
            b.submit(GID, msg)
        await all_refused(sends, UNSURE_INFO)
        assert not b.link.forwarded and not b.rest_waiters
    finally:
        await b.close_collaborators()


async def test_a_bundle_that_cannot_cross_is_answered_10002_each(redis: RedisServer) -> None:
    store = MemoryStore()
    a, b = await owner_and_other(redis.url, store)
    await a.link.broker.close()
    redis.stop()  # Redis away: the bundle's PUBLISH fails
    try:
        sends = [outgoing(b, i) for i in range(SENDS)]
        for msg, _answer in sends:
            b.link.forward(GID, msg)  # straight to the outbox, as a send admitted just before
        await all_refused(sends, AWAY_UNSURE_INFO)
        assert not b.link.forwarded and not b.link.redis_ok
    finally:
        await b.close_collaborators()


async def test_a_send_answered_while_its_owner_is_looked_up_is_not_forwarded(
        redis: RedisServer) -> None:
    store = MemoryStore()
    a = await cluster_node(redis.url, "a", store)
    await a.create_group("administrator", {"Name": GID}, GID)
    b = await cluster_node(redis.url, "b", store)
    assert await b.link.find(GID) and GID not in b.link.owners  # the owner not known yet
    wire = Wire(redis.url)
    await wire.start()
    try:
        first = outgoing(b, 1)
        b.submit(GID, first[0])  # the owner is looked up meanwhile (a round trip)
        b.link.redis_away()  # a call to Redis failed: the send is answered 10002 now
        await all_refused([first], AWAY_UNSURE_INFO)
        await b.link.sweep()  # available again; the lookup has ended
        assert b.link.owners[GID] == "a"
        second = outgoing(b, 2)
        b.submit(GID, second[0])
        assert (await asyncio.wait_for(second[1], WAIT))["MsgSeq"] == 1  # the room's first
        [(channel, forwards), _fates] = await wire.until(2)
        sent = forwards.get("b", [forwards])  # a bundle, or one message alone
        assert channel == b"lc:{n:a}:ctl" and [(d["k"], d["m"]["r"]) for d in sent] == [
            ("send", 2)]  # the first send never crossed
    finally:
        await wire.close()
        await b.close_collaborators()
        await a.close_collaborators()


async def test_a_token_is_taken_once_however_many_answers_bring_it(
        redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    a = await cluster_node(redis.url, "a", store)
    try:
        await a.create_group("administrator", {"Name": GID}, GID)
        first = a.link.tokens[GID]
        a.link.lost(GID)
        assert await a.link.broker.release_lease(GID, "a", first)
        token = await a.link.broker.acquire_lease(GID, "a", 3.0)
        assert token is not None and token != first
        made: list[object] = []

        class Counted(RoomScheduler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                made.append(self)

        monkeypatch.setattr("livecast.node.cluster.RoomScheduler", Counted)
        # the sweep's acquire and a send's lookup answer the same token at once
        await asyncio.gather(a.link._answered(GID, token), a.link._answered(GID, token))
        await a.link._answered(GID, token)  # and once more, later: ours already
        assert a.link.tokens[GID] == token and made == [a.rooms[GID].sched]
    finally:
        await a.close_collaborators()


async def test_sends_to_a_room_whose_owner_is_unknown_share_one_lookup(
        redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    a = await cluster_node(redis.url, "a", store)
    await a.create_group("administrator", {"Name": GID}, GID)
    b = await cluster_node(redis.url, "b", store)
    try:
        assert await b.link.find(GID) and GID not in b.link.owners

        async def available() -> bool:
            return b.link.available()
        await until_true(available)  # b's subscriptions are up
        asked: list[str] = []
        acquire = b.link.broker.acquire_lease

        async def counted(gid: str, node_id: str, ttl: float) -> int | None:
            asked.append(gid)
            return await acquire(gid, node_id, ttl)

        monkeypatch.setattr(b.link.broker, "acquire_lease", counted)
        sends = [outgoing(b, i) for i in range(SENDS)]
        for msg, _answer in sends:
            b.submit(GID, msg)  # the owner not known: looked up once for all
        answers = await asyncio.wait_for(asyncio.gather(*(f for _m, f in sends)), WAIT)
        assert sorted(r["MsgSeq"] for r in answers) == list(range(1, SENDS + 1))
        assert asked == [GID]
    finally:
        await b.close_collaborators()
        await a.close_collaborators()


async def test_a_room_taken_over_starts_with_an_empty_bucket_and_its_seq(
        redis: RedisServer) -> None:
    """rooms.md: the rate holds for the room as a whole, across owners: the
    one before may have spent its burst just now, so a room taken from it
    starts empty; one taken again by the same process keeps what it held;
    a new room starts full."""
    store = MemoryStore()
    a = await cluster_node(redis.url, "a", store, room_rate=10, room_burst=5)
    b = await cluster_node(redis.url, "b", store, room_rate=10, room_burst=5)
    try:
        await a.create_group("administrator", {"Name": GID}, GID)
        assert a.rooms[GID].sched.tokens == 5  # new: full
        assert await b.link.find(GID)
        await b.link.sweep()  # b learns the room's owner, as its members' sends do
        assert b.link.owners[GID] == "a"
        sends = [outgoing(a, i) for i in range(5)]
        for msg, _answer in sends:
            a.submit(GID, msg)
        seqs = [(await asyncio.wait_for(answer, WAIT))["MsgSeq"] for _m, answer in sends]
        assert seqs == [1, 2, 3, 4, 5]
        token = a.link.tokens[GID]
        a.link.lost(GID)  # and taken again by a: what it spent stays spent
        assert await a.link.broker.release_lease(GID, "a", token)
        again = await a.link.broker.acquire_lease(GID, "a", 3.0)
        assert isinstance(again, int)
        await a.link._answered(GID, again)
        assert a.rooms[GID].sched.tokens_at(a.timers.time()) < 1
        a.link.lost(GID)  # then taken by b
        assert await a.link.broker.release_lease(GID, "a", again)
        taken = await b.link.broker.acquire_lease(GID, "b", 3.0)
        assert isinstance(taken, int)
        await b.link._answered(GID, taken)
        sched = b.rooms[GID].sched
        assert (sched.next_seq, sched.tokens) == (6, 0)  # the burst is not given again
    finally:
        await b.close_collaborators()
        await a.close_collaborators()

