"""Redis engine specifics (livecast/store/redis.py): URLs, hash tags, a server that fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from livecast.core.records import GroupRecord
from livecast.store.base import StoreError
from livecast.store.redis import SCHEMA_VERSION, RedisStore, connect
from tests.redis_fixtures import RedisCluster, RedisServer, start_server

ROOM = GroupRecord("room}:x{y", "owner", 1.0, mutes={"m": 5.0}, bans={"b": 6.0},
                   app_defined={"k": "v"}, counters={"c": 1}, attributes={"a": "b"})


async def test_a_rooms_keys_share_one_cluster_slot(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    store = await RedisStore.open(redis_cluster.url)
    try:
        await store.put_group(ROOM)
        await store.add_likes(ROOM.group_id, 1)
    finally:
        await store.close()
    keys = [key for master in redis_cluster.masters for key in master.client().keys("lc:{g:*")]
    assert len(keys) == 4  # group, mutes, bans, likes
    assert len({key_slot(key) for key in keys}) == 1


def test_url_forms_choose_one_server_or_a_cluster() -> None:
    assert isinstance(connect("redis://127.0.0.1:6379/0"), redis.asyncio.Redis)
    assert isinstance(connect("redis+cluster://127.0.0.1:7000"), ClusterClient)
    cluster = connect("redis://u:p@127.0.0.1:7000,127.0.0.2:7001,127.0.0.3:7002")
    assert isinstance(cluster, ClusterClient)
    seeds = {(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()}
    assert seeds == {("127.0.0.1", 7000), ("127.0.0.2", 7001), ("127.0.0.3", 7002)}
    with pytest.raises(ValueError, match="host:port"):
        connect("redis+cluster://127.0.0.1:7000,nonsense")


async def test_a_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="bad Redis URL"):
        await RedisStore.open("redis+cluster://127.0.0.1:7000,nonsense")


async def test_a_server_that_goes_away_makes_the_store_unhealthy(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    calls: list[tuple[str, bool]] = []
    store = await RedisStore.open(server.url, observe=lambda op, _s, ok: calls.append((op, ok)))
    try:
        await store.put_group(ROOM)
        server.stop()
        with pytest.raises(StoreError, match="put_group"):
            await store.put_group(ROOM)
        assert not store.healthy and not await store.ping()
        assert ("put_group", False) in calls and calls[-1] == ("ping", False)
        server.start()  # same port, empty (no persistence in tests)
        assert await store.ping() and store.healthy
        assert await store.load_group(ROOM.group_id) is None
    finally:
        await store.close()
        server.stop()


async def test_a_newer_layout_is_refused(redis_server: RedisServer) -> None:
    redis_server.flush()
    with redis_server.client() as c:
        c.set("lc:schema", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer"):
        await RedisStore.open(redis_server.url)
    redis_server.flush()
