"""Nothing announced is missed for good (cluster.py, invariant 14), on a real
redis-server: a change made while another process's pub/sub connection was
down (a mute, a destroy) never reaches that process as an announcement;
once the connection is back, the next sweep reads its rooms from the store
again and the change holds there too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from livecast.backplane import redis_pubsub
from livecast.backplane.redis_broker import RedisBroker
from livecast.node.node import Node
from livecast.store.memory import MemoryStore
from tests.node.test_cluster_bundles import GID
from tests.node.test_cluster_fates import pair, until

__all__ = ["pair"]


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """While cleared, no pub/sub connection is (re)made: a cut one stays cut."""
    opened = asyncio.Event()
    opened.set()
    real = redis_pubsub.open_wire

    async def gated(*args: Any, **kwargs: Any) -> Any:
        await opened.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(redis_pubsub, "open_wire", gated)
    return opened


async def cut_off(node: Node, gate: asyncio.Event) -> None:
    """``node``'s pub/sub connections are cut and stay cut until ``gate`` is set."""
    broker = node.link.broker
    assert isinstance(broker, RedisBroker)
    shards = list(broker._shards.values())
    gate.clear()
    for shard in shards:
        assert shard._wire is not None
        shard._wire.fail(ConnectionError("cut by the test"))
    await until(lambda: not any(s.up for s in shards), "the subscriptions down")


@pytest.fixture
async def cut(pair: tuple[Node, Node], gate: asyncio.Event) -> AsyncIterator[tuple[Node, Node]]:
    """b's pub/sub connections are cut and stay cut until ``gate`` is set."""
    a, b = pair
    await cut_off(b, gate)
    yield a, b
    gate.set()


async def back(b: Node, gate: asyncio.Event) -> None:
    broker = b.link.broker
    assert isinstance(broker, RedisBroker)
    gate.set()
    await until(lambda: broker.connected(), "b's subscriptions back")
    assert broker.reconnects() >= 1
    await b.link.sweep()


async def test_a_mute_announced_while_the_subscription_was_down_holds_after(
        cut: tuple[Node, Node], gate: asyncio.Event) -> None:
    a, b = cut
    await a.mute(GID, ["carol"], 600)
    assert "carol" in a.rooms[GID].group.mutes
    assert "carol" not in b.rooms[GID].group.mutes  # the announcement was missed
    await back(b, gate)
    await until(lambda: "carol" in b.rooms[GID].group.mutes, "the mute read from the store")


async def test_a_room_destroyed_while_the_subscription_was_down_is_dropped_after(
        cut: tuple[Node, Node], gate: asyncio.Event) -> None:
    a, b = cut
    await a.create_group("administrator", {"Name": "kept"}, "kept")
    assert await b.link.find("kept")
    await a.destroy_group(GID)
    assert GID not in a.rooms and GID in b.rooms  # the announcement was missed
    await back(b, gate)
    await until(lambda: GID not in b.rooms, "the destroyed room dropped")
    assert GID not in b.link.owners and GID not in b.link.follows
    assert "kept" in b.rooms


async def test_rooms_of_a_store_that_lost_its_data_are_kept(
        cut: tuple[Node, Node], gate: asyncio.Event) -> None:
    _a, b = cut
    store = b.store
    assert isinstance(store, MemoryStore)
    b.link._marker = await store.marker()  # as ClusterLink.start reads it
    store._groups.clear()  # a Redis restarted without its data: empty, and
    store._marker = "another"  # its marker made anew by the next call
    before = b.link.resyncs
    await back(b, gate)
    await until(lambda: b.link.resyncs > before and not b.link._resyncing, "the resync done")
    assert GID in b.rooms  # not dropped: a store that lost its data is no destroy


async def test_a_kick_announced_while_the_subscription_was_down_revokes_after(
        cut: tuple[Node, Node], gate: asyncio.Event) -> None:
    a, b = cut
    at = a.clock()
    await a.record_kick("dave", at)
    assert b.kicks.kicked_at("dave") is None  # not announced to b (and b missed it anyway)
    await back(b, gate)
    await until(lambda: b.kicks.kicked_at("dave") == at, "the kick time read from the store")
