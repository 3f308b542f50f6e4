"""A process's leases on a real Redis (one server, and the 3-master cluster):
renewed all at once each loop, kept by a starved process whose lease expired
when nobody took the room meanwhile (no flapping), lost at once when another
process did; and a join on a room created elsewhere, or on no room at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from livecast.backplane.redis_broker import RedisBroker
from livecast.core.group import Group
from livecast.core.records import group_record
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.settings import Settings
from livecast.store.base import GroupRecord
from livecast.store.memory import MemoryStore
from tests.redis_fixtures import RedisCluster, RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]

SHORT_TTL = 0.3


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    target: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_server" if request.param == "redis" else "redis_cluster")
    target.flush()
    return target.url


@pytest.fixture
async def node(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """A cluster member whose membership loop the test runs by hand (``sweep``)."""
    monkeypatch.setattr("livecast.node.cluster.LEASE_TTL", SHORT_TTL)
    n = Node(Settings())
    n.join_cluster(RedisBroker(redis_url, "a"))
    await n.link.broker.start(n.link)
    yield n
    await n.close_collaborators()


async def test_a_starved_process_keeps_the_rooms_nobody_took(node: Node, redis_url: str) -> None:
    rooms = [f"r{i}" for i in range(8)]
    for gid in rooms:
        await node.create_group("administrator", {"Name": gid}, gid)
    tokens = dict(node.link.tokens)
    assert set(tokens) == set(rooms)
    time.sleep(SHORT_TTL * 2)  # noqa: ASYNC251 -- the event loop starved past the leases' life
    other = RedisBroker(redis_url, "b")
    try:
        assert [await other.owner_of(gid) for gid in rooms] == [None] * 8  # expired in Redis
        assert await other.acquire_lease("r0", "b", 30) is not None  # one taken meanwhile
        await node.link.sweep()
        assert node.link.tokens == {gid: tokens[gid] for gid in rooms[1:]}  # same tokens
        assert node.link.owners["r0"] == "b"
        for gid in rooms[1:]:
            assert await other.owner_of(gid) == "a"
    finally:
        await other.close()


async def test_a_join_finds_a_room_just_created_elsewhere() -> None:
    """Stored by another process and not announced here yet: found before 10010."""
    node = Node(Settings())
    group = Group.create("fresh", "administrator", time.time(), {"Name": "fresh"})
    await node.store.put_group(group_record(group), create=True)
    assert "fresh" not in node.rooms
    assert await node.link.find("fresh")
    assert node.rooms["fresh"].group.owner == "administrator"
    await node.close_collaborators()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def load_group(self, group_id: str) -> GroupRecord | None:
        self.lookups += 1
        return await super().load_group(group_id)


async def test_a_flood_of_joins_to_no_room_costs_one_store_read() -> None:
    store = CountingStore()
    node = Node(Settings(), store=store)
    answers = await asyncio.gather(*(node.link.find("nowhere") for _ in range(200)))
    assert not any(answers)
    assert await node.link.find("nowhere") is False
    assert store.lookups == 1  # one at a time, and the miss remembered
    with pytest.raises(LivecastError) as err:
        node.room("nowhere")
    assert err.value.code == Code.GROUP_NOT_FOUND
    await node.close_collaborators()


def test_a_failed_sweep_is_retried_after_a_pause_not_at_once() -> None:
    from livecast.node.cluster import LOOP_INTERVAL, RETRY_INTERVAL, sweep_delay

    now = 1000.0
    assert sweep_delay(now, now - 0.25, failed=False) == LOOP_INTERVAL - 0.25
    assert sweep_delay(now, now - 10 * LOOP_INTERVAL, failed=False) == 0.0  # late: at once
    # Redis away: the last renewal long ago, yet the next try waits (no tight loop)
    assert sweep_delay(now, now - 10 * LOOP_INTERVAL, failed=True) == RETRY_INTERVAL > 0
