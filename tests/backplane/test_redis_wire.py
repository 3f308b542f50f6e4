"""RESP on a plain Protocol (livecast/backplane/redis_wire.py), on a real
redis-server: pipelined replies in order, a refused command as a value, a
dropped connection failing its calls and the next call connecting again,
AUTH (accepted and refused), and a Shard reading through it."""

from __future__ import annotations

import asyncio
import ssl

import hiredis
import pytest

from livecast.backplane.redis_pubsub import Shard
from livecast.backplane.redis_wire import Endpoint, Publisher, command
from tests.backplane.conftest import until_true
from tests.redis_fixtures import RedisServer

WAIT = 10.0



def test_an_endpoint_reads_the_url_forms() -> None:
    assert Endpoint.from_url("redis://u:p@10.0.0.1:6380/2") == Endpoint(
        "10.0.0.1", 6380, "", "u", "p", False)
    assert Endpoint.from_url("rediss://h:7000").tls
    unix = Endpoint.from_url("unix:///run/redis.sock")
    assert unix.path == "/run/redis.sock"
    assert command(b"PUBLISH", "c", b"\x00x") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n\x00x\r\n")


def test_a_rediss_endpoint_trusts_what_its_url_says_as_redis_py_does() -> None:
    default = Endpoint.from_url("rediss://cache.example:6380/0").tls_context()
    assert default is not None
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    off = Endpoint.from_url("rediss://cache.example:6380/0?ssl_cert_reqs=none").tls_context()
    assert off is not None and off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    loose = Endpoint.from_url(
        "rediss://cache.example:6380/0?ssl_cert_reqs=optional&ssl_check_hostname=false")
    context = loose.tls_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL and not context.check_hostname
    assert Endpoint.from_url("redis://cache.example:6379/0").tls_context() is None
    with pytest.raises(FileNotFoundError):  # a CA file that is not there is an error
        Endpoint.from_url("rediss://h:6380/0?ssl_ca_certs=/nonexistent/ca.pem").tls_context()


async def test_replies_come_in_order_and_a_refused_command_is_a_value(
        redis: RedisServer) -> None:
    p = Publisher(Endpoint(port=redis.port))
    try:
        replies = await p.call_many([command(b"SET", b"k", b"v"), command(b"INCR", b"k"),
                                     command(b"GET", b"k"), command(b"PUBLISH", b"c", b"x")])
        assert replies[0] == b"OK" and replies[2] == b"v" and replies[3] == 0
        assert isinstance(replies[1], hiredis.ReplyError)  # not an integer: refused
        assert await p.call_many([command(b"PING")]) == [b"PONG"]  # the connection goes on
    finally:
        p.close()


async def test_a_dropped_connection_fails_its_call_and_the_next_connects_again(
        redis: RedisServer) -> None:
    p = Publisher(Endpoint(port=redis.port))
    try:
        assert await p.call_many([command(b"PING")]) == [b"PONG"]
        redis.stop()
        with pytest.raises((ConnectionError, OSError)):
            await p.call_many([command(b"PING")])
        with pytest.raises((ConnectionError, OSError)):  # away: refused at connect
            await p.call_many([command(b"PING")])
        redis.start()
        assert await p.call_many([command(b"PING")]) == [b"PONG"]
    finally:
        p.close()


async def test_auth_is_spoken_by_the_publisher_and_the_reader(redis: RedisServer) -> None:
    with redis.client() as c:
        c.config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{redis.port}"
    heard: list[tuple[bytes, bytes]] = []
    confirmed = asyncio.Event()

    def on_message(channel: bytes, data: bytes) -> None:
        heard.append((channel, data))
        confirmed.set()

    shard = Shard("redis", Endpoint.from_url(url), False, on_message)
    shard.start()
    p = Publisher(Endpoint.from_url(url))
    try:
        async def up() -> bool:
            return shard.up
        await until_true(up)
        await shard.add(b"room")  # returns once Redis confirmed it
        assert await p.call_many([command(b"PUBLISH", b"room", b"hello")]) == [1]
        await asyncio.wait_for(confirmed.wait(), WAIT)
        assert heard[0] == (b"room", b"hello")
        wrong = Publisher(Endpoint(port=redis.port, password="nope"))
        with pytest.raises(ConnectionError, match="AUTH"):
            await wrong.call_many([command(b"PING")])
    finally:
        p.close()
        await shard.close()
