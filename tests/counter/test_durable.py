"""Durable, idempotent tallies in a real redis-server (docs/counter.md, "Never
lost, never counted twice"), the counter's settings for them, and the
in-memory idempotency of a counter without Redis."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from livecast.core.likes import LikeTally, RecentKeys, like_key
from livecast.counter.app import Counter
from livecast.counter.durable import DurableError, DurableTally
from livecast.counter.settings import CounterSettings, build
from livecast.settings import ConfigError
from tests.counter.test_counter import like_body
from tests.redis_fixtures import RedisServer, free_port, redis_server

__all__ = ["redis_server"]


@pytest.fixture
async def durable(redis_server: RedisServer) -> DurableTally:
    redis_server.flush()
    return DurableTally.open(redis_server.url)


async def test_a_key_is_counted_once_and_read_back(durable: DurableTally) -> None:
    try:
        assert await durable.count("k1", "g1", 3) == (True, 3)
        assert await durable.count("k1", "g1", 3) == (False, 3)  # resent: not counted again
        assert await durable.count("k2", "g1", 1) == (True, 4)
        assert await durable.count("k3", "g2", 5) == (True, 5)
        assert await durable.set_base("g1", 40) == 40
        assert await durable.set_base("g1", 99) == 40  # set once
        assert await durable.load() == {"g1": (4, 40), "g2": (5, None)}
        assert not await durable.forget("g1", 3)  # holds 4, not 3: kept
        assert await durable.forget("g1", 4)
        assert await durable.load() == {"g2": (5, None)}
    finally:
        await durable.close()


async def test_a_restarted_counter_restores_and_dedups(redis_server: RedisServer) -> None:
    redis_server.flush()
    settings = CounterSettings(redis_url=redis_server.url)
    first = Counter(settings, clock=lambda: 100.0, rand=lambda: 0.5)
    first.durable = DurableTally.open(redis_server.url)
    body = like_body("g1", 7)
    raw = orjson.dumps(body)
    assert await first.receive_durable("Group.CallbackBeforeSendMsg", raw) == 7
    await first.durable.close()  # "killed": nothing written

    second = Counter(settings, clock=lambda: 200.0, rand=lambda: 0.5)
    second.durable = DurableTally.open(redis_server.url)
    try:
        assert await second.restore() == 1
        assert second.tally.counted("g1") == 7
        assert "g1" in second.tally.pending()
        assert await second.receive_durable("Group.CallbackBeforeSendMsg", raw) == 0
        assert second.stats.duplicates == 1
    finally:
        await second.durable.close()


async def test_a_destroyed_room_is_forgotten_in_redis_too(redis_server: RedisServer) -> None:
    redis_server.flush()
    counter = Counter(CounterSettings(redis_url=redis_server.url), clock=lambda: 100.0,
                      rand=lambda: 0.5)
    counter.durable = DurableTally.open(redis_server.url)
    try:
        for gid in ("g1", "g2"):
            assert await counter.receive_durable("Group.CallbackBeforeSendMsg",
                                                 orjson.dumps(like_body(gid, 7))) == 7
        await counter.durable.set_base("g1", 40)
        gone = orjson.dumps({"CallbackCommand": "Group.CallbackAfterGroupDestroyed",
                             "GroupId": "g1", "Type": "AVChatRoom"})
        assert await counter.receive_durable("Group.CallbackAfterGroupDestroyed", gone) == 0
        assert await counter.durable.load() == {"g2": (7, None)}  # a restart does not bring it
        assert "g1" not in counter.tally and counter.tally.counted("g2") == 7
        for junk in (b"[]", b"{", b'{"GroupId": 5}', b'{"GroupId": ""}'):  # nothing forgotten
            assert await counter.receive_durable("Group.CallbackAfterGroupDestroyed", junk) == 0
        assert await counter.durable.load() == {"g2": (7, None)}
    finally:
        await counter.durable.close()


async def test_a_like_counted_in_redis_whose_reply_was_lost_is_counted_here(
        redis_server: RedisServer) -> None:
    redis_server.flush()
    counter = Counter(CounterSettings(redis_url=redis_server.url), clock=lambda: 100.0,
                      rand=lambda: 0.5)
    counter.durable = DurableTally.open(redis_server.url)
    try:
        raw = orjson.dumps(like_body("g1", 7))
        found = counter._like_of("Group.CallbackBeforeSendMsg", raw)
        assert found is not None
        like, key = found
        # the script ran in Redis, its reply never came back: the callback got
        # 503 and comes again, replayed
        assert await counter.durable.count(key, like.group_id, like.count) == (True, 7)
        assert counter.tally.counted("g1") == 0
        assert await counter.receive_durable("Group.CallbackBeforeSendMsg", raw) == 0
        assert counter.stats.duplicates == 1
        assert counter.tally.counted("g1") == 7  # counted once, here too
        assert await counter.receive_durable("Group.CallbackBeforeSendMsg", raw) == 0
        assert counter.tally.counted("g1") == 7  # and never twice
    finally:
        await counter.durable.close()


async def test_redis_down_is_an_error_not_a_count() -> None:
    counter = Counter(CounterSettings(), rand=lambda: 0.5)
    counter.durable = DurableTally.open(f"redis://127.0.0.1:{free_port()}/0")
    raw = orjson.dumps(like_body("g1"))
    try:
        with pytest.raises(DurableError):
            await counter.receive_durable("Group.CallbackBeforeSendMsg", raw)
        assert counter.tally.counted("g1") == 0
    finally:
        await counter.durable.close()


def test_in_memory_counter_counts_a_resent_callback_once() -> None:
    counter = Counter(CounterSettings(), rand=lambda: 0.5)
    body = like_body("g1", 2)
    raw = orjson.dumps(body)
    assert counter.receive("Group.CallbackBeforeSendMsg", raw) == 2
    replay = orjson.dumps(dict(body, Replayed=1))
    assert counter.receive("Group.CallbackBeforeSendMsg", replay) == 0
    assert counter.tally.counted("g1") == 2 and counter.stats.duplicates == 1


def test_like_key_prefers_msg_key() -> None:
    body = like_body("g1")
    assert like_key(body) == like_key(dict(body, Replayed=1))
    assert like_key(body) != like_key(dict(body, Random=body["Random"] + 1))
    assert like_key(dict(body, MsgKey="n-1")) == "n-1"
    assert like_key(dict(body, MsgKey="n-1")) != like_key(dict(body, MsgKey="n-2"))


def test_recent_keys_forget_the_oldest() -> None:
    keys = RecentKeys(capacity=2)
    assert keys.first("a") and keys.first("b") and not keys.first("a")
    assert keys.first("c")  # "a" is forgotten
    assert keys.first("a")


def test_restore_sets_counted_and_base() -> None:
    tally = LikeTally(random.Random(1).random, 1.0, 2.0)
    tally.restore("g1", 5, 10, 0.0)
    tally.restore("g2", 0, 3, 0.0)  # nothing counted: nothing to restore
    assert tally.total("g1") == 15 and "g2" not in tally


def test_the_redis_url_settings(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert build({}, dev_key_file=key).redis_url == ""
    assert build({"LIVECAST_REDIS_URL": "redis://a:6379/0"},
                 dev_key_file=key).redis_url == "redis://a:6379/0"
    both = {"LIVECAST_REDIS_URL": "redis://a:6379/0",
            "LIVECAST_COUNTER_REDIS_URL": "redis://b:6379/1"}
    assert build(both, dev_key_file=key).redis_url == "redis://b:6379/1"
    assert "redis://b" not in repr(build(both, dev_key_file=key))
    with pytest.raises(ConfigError, match="LIVECAST_COUNTER_REDIS_URL"):
        build({"LIVECAST_COUNTER_REDIS_URL": "http://x"}, dev_key_file=key)
    with pytest.raises(ConfigError, match="one Redis server"):
        build({"LIVECAST_REDIS_URL": "redis+cluster://x:1"}, dev_key_file=key)


def test_memory_follows_redis_whatever_order_the_replies_come_in() -> None:
    counter = Counter(CounterSettings(), clock=lambda: 100.0, rand=lambda: 0.5)
    counter._catch_up("g1", 8)  # B's reply (Redis at 8, A's 5 likes included) came first
    counter._catch_up("g1", 5)  # then A's: nothing more
    assert counter.tally.counted("g1") == 8
