"""The Redis broker beyond the contract: Redis restarts (single server and a
cluster master), what one publish costs Redis, malformed traffic, key layout."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.crc import key_slot

from livecast.backplane.broker import ALL, BrokerError, Destroy
from livecast.backplane.redis_broker import RedisBroker
from tests.backplane.conftest import Recorder, until_true
from tests.redis_fixtures import RedisCluster, RedisServer, _cluster_ok, wait_until

TTL = 30.0


async def _start(url: str, node: str) -> tuple[RedisBroker, Recorder]:
    broker = RedisBroker(url, node)
    heard = Recorder()
    await broker.start(heard)
    await until_true(broker.ready)
    return broker, heard


async def _publish_until_heard(a: RedisBroker, heard: Recorder, seq: int) -> None:
    """Publish (taking the room's lease again: the restarted Redis kept no data)
    until ``heard`` gets the batch; Redis may refuse while it comes back."""
    deadline = time.monotonic() + 20.0
    while True:
        try:
            token = await a.acquire_lease("room", "a", TTL)
            if token is not None and await a.publish("room", b"again", None, seq, token):
                await heard.until(lambda: bool(heard.batches), within=0.5)
                return
        except (BrokerError, TimeoutError):
            if time.monotonic() > deadline:
                raise


async def test_a_subscriber_resubscribes_by_itself_after_a_redis_restart(
        redis_server: RedisServer) -> None:
    redis_server.flush()
    a, _ = await _start(redis_server.url, "a")
    b, heard = await _start(redis_server.url, "b")
    try:
        await b.subscribe("room")
        redis_server.stop()
        await until_true(lambda: _not(b.ready))
        redis_server.start()  # same port, empty
        await until_true(b.ready)
        await _publish_until_heard(a, heard, 1)
        assert heard.batches == [("room", b"again", None)]
        await a.control("b", Destroy("room"))  # its control channel is back too
        await heard.until(lambda: heard.controls == [("a", Destroy("room"))])
    finally:
        await a.close()
        await b.close()


async def test_a_cluster_subscriber_resubscribes_after_its_master_restarts(
        redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    a, _ = await _start(redis_cluster.url, "a")
    b, heard = await _start(redis_cluster.url, "b")
    try:
        await b.subscribe("room")
        with redis.RedisCluster(host="127.0.0.1", port=redis_cluster.masters[0].port) as c:
            port = int(c.get_node_from_key("{g:room}").port)
        master = next(m for m in redis_cluster.masters if m.port == port)
        master.stop()
        await until_true(lambda: _not(b.ready))
        master.start()  # same port and cluster config file: it rejoins with its slots
        for m in redis_cluster.masters:
            await asyncio.to_thread(wait_until, lambda m=m: _cluster_ok(m), "cluster ok")
        await until_true(b.ready, within=20.0)
        await _publish_until_heard(a, heard, 1)
        assert heard.batches == [("room", b"again", None)]
    finally:
        await a.close()
        await b.close()


async def _not(probe: object) -> bool:
    return not await probe()  # type: ignore[operator]


def _calls(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@pytest.mark.parametrize("subscribers", [1, 3])
async def test_one_publish_is_one_evalsha_whatever_the_subscribers(
        redis_server: RedisServer, subscribers: int) -> None:
    """Redis commands per room per tick, from INFO commandstats (docs/design.md)."""
    redis_server.flush()
    a, _ = await _start(redis_server.url, "a")
    others = [await _start(redis_server.url, f"n{i}") for i in range(subscribers)]
    ticks = 50
    try:
        for broker, _ in others:
            await broker.subscribe("room")
        token = await a.acquire_lease("room", "a", TTL)
        assert token is not None
        with redis_server.client() as c:
            c.config_resetstat()
            for seq in range(1, ticks + 1):
                assert await a.publish("room", b"x" * 200, b"y" * 50, seq, token)
            calls = _calls(c.info("commandstats"))
        for _, heard in others:
            await heard.until(lambda h=heard: len(h.batches) == ticks)  # type: ignore[misc]
        round_trips = {k: v for k, v in calls.items()
                       if k not in ("ping", "info", "config|resetstat", "get", "set", "publish")}
        print(f"\n{subscribers} subscribing processes, {ticks} ticks: {calls}")
        assert round_trips == {"evalsha": ticks}  # one round trip per room per tick
        assert calls["publish"] == ticks  # inside the script: one PUBLISH per tick
    finally:
        await a.close()
        for broker, _ in others:
            await broker.close()


async def test_a_publish_after_the_scripts_are_flushed_loads_its_script_again(
        redis_server: RedisServer) -> None:
    """A restarted Redis holds no script: the publish is sent whole once, and
    the next one is an EVALSHA again."""
    redis_server.flush()
    broker = RedisBroker(redis_server.url, "a")
    try:
        token = await broker.acquire_lease("room", "a", 30)
        assert token is not None
        with redis_server.client() as c:
            c.script_flush()
            c.config_resetstat()
            assert await broker.publish("room", b"one", None, 1, token)
            assert await broker.publish("room", b"two", None, 2, token, prev=1)
            stats = c.info("commandstats")
            assert int(c.get("lc:{g:room}:seq") or 0) == 2
        evalsha = stats["cmdstat_evalsha"]
        assert stats["cmdstat_eval"]["calls"] == 1  # the script sent whole, once
        assert (evalsha["calls"], evalsha["failed_calls"]) == (2, 1)  # NOSCRIPT, then done
    finally:
        await broker.close()


async def test_a_rooms_keys_and_channel_share_one_slot(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    a, _ = await _start(redis_cluster.url, "a")
    try:
        token = await a.acquire_lease("room-9", "a", TTL)
        assert token is not None and await a.publish("room-9", b"x", None, 4, token)
        keys = [k for m in redis_cluster.masters for k in m.client().keys("lc:{g:room-9}:*")]
        assert sorted(keys) == [b"lc:{g:room-9}:fence", b"lc:{g:room-9}:lease",
                                b"lc:{g:room-9}:seq"]
        slots = {key_slot(k) for k in [*keys, b"lc:{g:room-9}:batch", b"lc:{g:room-9}:group"]}
        assert len(slots) == 1  # the store's keys of the room too
    finally:
        await a.close()


async def test_malformed_traffic_is_skipped_and_delivery_goes_on(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    redis_server.flush()
    b, heard = await _start(redis_server.url, "b")
    try:
        await b.subscribe("room")
        with redis_server.client() as c:
            c.publish("lc:{n:b}:ctl", b"not json")
            c.publish("lc:{n:b}:ctl", b'{"o": "x", "k": "nonsense"}')
            c.publish("lc:{g:room}:batch", b"?garbage")
            c.publish("lc:{nodes}:ctl", b'{"o": "x", "k": "destroy", "g": "room"}')
            c.publish("lc:{g:room}:batch", b"Fok")
        await heard.until(lambda: bool(heard.controls) and bool(heard.batches))
        assert heard.controls == [("x", Destroy("room"))]
        assert heard.batches == [("room", b"ok", None)]
        assert "malformed" in caplog.text
    finally:
        await b.close()


async def test_a_bad_url_or_an_absent_server_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="bad Redis URL"):
        RedisBroker("redis+cluster://127.0.0.1:7000,nonsense", "a")
    broker = RedisBroker("redis://127.0.0.1:1", "a")
    await broker.start(Recorder())
    try:
        assert not await broker.ready()
        with pytest.raises(BrokerError, match="lease of room"):
            await broker.acquire_lease("room", "a", TTL)
        with pytest.raises(BrokerError, match="control to"):
            await broker.control(ALL, Destroy("room"))
        await broker.subscribe("room")  # wanted: subscribed once Redis answers
        assert "room" in broker.refs
    finally:
        await broker.close()


async def test_a_command_is_sent_once_and_every_master_is_reached(
        redis_server: RedisServer, redis_cluster: RedisCluster) -> None:
    # redis-py retries a command whose reply came late by default: a publish or
    # a forwarded send would then run twice (invariant 6)
    one = RedisBroker(redis_server.url, "a")
    many = RedisBroker(redis_cluster.url, "b")
    try:
        assert isinstance(one._client, aioredis.Redis)
        assert one._client.get_retry().get_retries() == 0
        assert isinstance(many._client, RedisClusterClient)
        assert many._client.retry.get_retries() == 0
        await many.start(Recorder())
        # every master's slots are reached all the same: a lease per master
        gids = [f"slot-room-{i}" for i in range(30)]
        answers = await many.acquire_leases("b", gids, TTL)
        assert all(isinstance(answers[gid], int) for gid in gids)  # a token each: taken
        assert len({key_slot(f"lc:{{g:{gid}}}:seq".encode()) // 5462 for gid in gids}) == 3
    finally:
        await one.close()
        await many.close()


async def test_a_slow_master_fails_its_own_controls_only(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    a, _ = await _start(redis_cluster.url, "a")
    heard: dict[str, Recorder] = {}
    brokers = [a]
    with redis.RedisCluster(host="127.0.0.1", port=redis_cluster.masters[0].port) as c:
        def master_of(node: str) -> int:
            return int(c.get_node_from_key(f"{{n:{node}}}").port)
        names = [f"n{i}" for i in range(40)]
        slow_name = names[0]
        slow = master_of(slow_name)
        fast_name = next(n for n in names if master_of(n) != slow)
    try:
        for name in (slow_name, fast_name):
            broker, heard[name] = await _start(redis_cluster.url, name)
            brokers.append(broker)
        paused = next(m for m in redis_cluster.masters if m.port == slow)
        with paused.client() as r:
            r.execute_command("CLIENT", "PAUSE", "4000", "ALL")  # twice a command's timeout
        with pytest.raises(BrokerError) as err:
            await a.control_many({slow_name: [Destroy("x")], fast_name: [Destroy("y")]})
        assert err.value.failed == frozenset({slow_name})
        async def fast_heard() -> bool:
            return heard[fast_name].controls == [("a", Destroy("y"))]
        await until_true(fast_heard)  # sent while the other master was paused
    finally:
        for broker in brokers:
            await broker.close()
        for m in redis_cluster.masters:
            await asyncio.to_thread(wait_until, m._answers, "unpaused")


def _slot_owner(cluster: RedisCluster, slot: int) -> int:
    with cluster.masters[0].client() as c:
        for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    raise AssertionError(f"slot {slot} served by no master")


def _move_slot(cluster: RedisCluster, slot: int, to: int) -> None:
    """Move ``slot`` (and its keys) to the master on port ``to``, as
    ``redis-cli --cluster reshard`` does, and wait until every master agrees."""
    ids = {}
    for m in cluster.masters:
        with m.client() as c:
            ids[m.port] = c.execute_command("CLUSTER", "MYID")
    src = _slot_owner(cluster, slot)
    if src == to:
        return
    clients = {m.port: m.client() for m in cluster.masters}
    try:
        clients[to].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        clients[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
        keys = clients[src].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            clients[src].execute_command("MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", *keys)
        for port in [to, src, *(p for p in clients if p not in (to, src))]:
            clients[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to])
    finally:
        for c in clients.values():
            c.close()
    wait_until(lambda: _slot_owner(cluster, slot) == to, f"slot {slot} on {to}")


async def test_a_room_follows_its_slot_to_another_master(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    channel = b"lc:{g:room}:batch"
    slot = key_slot(channel)
    src = _slot_owner(redis_cluster, slot)
    dst = next(m.port for m in redis_cluster.masters if m.port != src)
    a, _ = await _start(redis_cluster.url, "a")
    b, heard = await _start(redis_cluster.url, "b")
    try:
        await b.subscribe("room")
        assert b._where[channel] == f"127.0.0.1:{src}"
        await asyncio.to_thread(_move_slot, redis_cluster, slot, dst)

        async def moved() -> bool:
            return b._where.get(channel) == f"127.0.0.1:{dst}" and b.connected()
        await until_true(moved)  # Redis told b (sunsubscribe): b subscribed on dst
        await _publish_until_heard(a, heard, 1)  # a's publish follows MOVED
        assert heard.batches == [("room", b"again", None)]
    finally:
        await a.close()
        await b.close()
        await asyncio.to_thread(_move_slot, redis_cluster, slot, src)


async def test_a_publish_says_whether_it_may_have_reached_redis(
        redis_server: RedisServer) -> None:
    """No connection: certainly not sent (``maybe_sent`` false); sent to a
    Redis that does not answer (frozen): it may run it once it wakes."""
    absent = RedisBroker("redis://127.0.0.1:1", "a")
    await absent.start(Recorder())
    try:
        with pytest.raises(BrokerError) as refused:
            await absent.publish("room", b"x", None, 1, 1)
        assert refused.value.maybe_sent is False
    finally:
        await absent.close()
    redis_server.flush()
    broker = RedisBroker(redis_server.url, "a")
    await broker.start(Recorder())
    try:
        token = await broker.acquire_lease("room", "a", TTL)
        assert isinstance(token, int)
        assert await broker.publish("room", b"x", None, 1, token)
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(BrokerError) as unanswered:
                await broker.publish("room", b"y", None, 2, token)
            assert unanswered.value.maybe_sent is True
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
    finally:
        await broker.close()
