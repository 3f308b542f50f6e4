"""Redis engine specifics (livecast/store/redis.py): URLs, hash tags, a server that
fails, the index under races, the keys a deleted room leaves, unreadable records."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
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
        await store.put_group(ROOM, create=True)
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
        await store.put_group(ROOM, create=True)
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


@pytest.fixture(params=("redis", "cluster"))
def redis_url(request: pytest.FixtureRequest) -> str:
    backend: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_server" if request.param == "redis" else "redis_cluster")
    backend.flush()
    return backend.url


def room_key(group_id: str, part: str) -> str:
    return f"lc:{{g:{group_id}}}:{part}"


async def test_delete_group_removes_the_rooms_history_not_the_brokers_keys(
    redis_url: str
) -> None:
    store, raw = await RedisStore.open(redis_url), connect(redis_url)
    gid = ROOM.group_id
    try:
        await store.put_group(ROOM, create=True)
        await raw.xadd(room_key(gid, "history"), {"b": b"a tick's batch"})
        await raw.set(room_key(gid, "hepoch"), 7)
        await raw.set(room_key(gid, "seq"), 41)  # the broker's (node/history.py)
        await raw.set(room_key(gid, "fence"), "owner-token")
        assert await store.delete_group(gid) is True
        assert await raw.exists(room_key(gid, "history")) == 0
        assert await raw.exists(room_key(gid, "hepoch")) == 0
        assert await raw.get(room_key(gid, "seq")) == "41"
        assert await raw.get(room_key(gid, "fence")) == "owner-token"
    finally:
        await raw.aclose()
        await store.close()


async def test_a_room_written_while_being_deleted_keeps_its_index_entry(redis_url: str) -> None:
    """Invariant 2 under real races: two processes create and modify a room
    while a third deletes it; whatever the order, a stored room is indexed."""
    creator, writer, deleter = [await RedisStore.open(redis_url) for _ in range(3)]
    raw = connect(redis_url)
    gid = ROOM.group_id
    try:
        for _ in range(100):
            await asyncio.gather(creator.put_group(ROOM, create=True),
                                 writer.put_settings(ROOM), writer.put_group(ROOM),
                                 deleter.delete_group(gid))
            stored = await raw.exists(room_key(gid, "group"))
            assert not stored or await raw.zscore("lc:groups", gid) == ROOM.created
    finally:
        await raw.aclose()
        for store in (creator, writer, deleter):
            await store.close()


UNREADABLE: dict[str, Any] = {
    "not JSON": b"{not json",
    "not an object": b"[1, 2]",
    "an unknown field": {"owner": "o", "created": 1.0, "colour": "red"},
    "a missing field": {"created": 1.0},
    "a wrong type": {"owner": "o", "created": "yesterday"},
    "a wrong type in a map": {"owner": "o", "created": 1.0, "counters": {"likes": "many"}},
    "a map that is a list": {"owner": "o", "created": 1.0, "app_defined": ["a"]},
}


@pytest.mark.parametrize("blob", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_record_is_a_store_error(redis_url: str, blob: Any) -> None:
    store, raw = await RedisStore.open(redis_url), connect(redis_url)
    try:
        await raw.zadd("lc:groups", {"odd-room": 1.0})
        await raw.set(room_key("odd-room", "group"),
                      blob if isinstance(blob, bytes) else orjson.dumps(blob))
        with pytest.raises(StoreError, match=r"'odd-room'.*unreadable"):
            await store.load_group("odd-room")
        with pytest.raises(StoreError, match=r"'odd-room'.*unreadable"):
            await store.load_all(now=2.0)
    finally:
        await raw.aclose()
        await store.close()


async def test_an_unreadable_profile_is_a_store_error(redis_url: str) -> None:
    store, raw = await RedisStore.open(redis_url), connect(redis_url)
    try:
        await raw.set("lc:profile:alice", b'{"Tag_Profile_IM_Nick": ["a"]}')
        with pytest.raises(StoreError, match=r"'alice'.*unreadable"):
            await store.load_profiles(["alice"])
    finally:
        await raw.aclose()
        await store.close()


async def test_a_value_that_is_not_utf8_is_a_store_error(redis_url: str) -> None:
    """The client decodes replies as text: bytes that are not UTF-8 (a room
    or a profile written by something else) are a StoreError too."""
    store, raw = await RedisStore.open(redis_url), connect(redis_url)
    try:
        await raw.zadd("lc:groups", {"odd-room": 1.0})
        await raw.set(room_key("odd-room", "group"), b'{"owner": "\xff\xfe"}')
        await raw.sadd("lc:profiles", "bob")
        await raw.set("lc:profile:bob", b'{"Tag_Profile_IM_Nick": "\xc3"}')
        for call in (store.load_group("odd-room"), store.load_all(now=2.0),
                     store.load_profiles(["bob"]), store.all_profiles(10)):
            with pytest.raises(StoreError):
                await call
    finally:
        await raw.aclose()
        await store.close()
