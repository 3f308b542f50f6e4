"""RESP on a plain Protocol (livecast/backplane/redis_wire.py), on a real
redis-server: pipelined replies in order, a refused command as a value, a
dropped connection failing its calls and the next call connecting again,
AUTH (accepted and refused), a Shard reading through it, and the reply-less
publisher (not answered; refused CLIENT REPLY; a peer that does not read)."""

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


async def _listening(redis: RedisServer, channel: bytes,
                     heard: list[bytes]) -> Shard:
    shard = Shard("redis", Endpoint(port=redis.port), False,
                  lambda _channel, data: heard.append(data))
    shard.start()

    async def up() -> bool:
        return shard.up
    await until_true(up)
    await shard.add(channel)  # returns once Redis confirmed it
    return shard


async def test_a_replyless_publisher_is_not_answered_and_its_messages_arrive(
        redis: RedisServer) -> None:
    heard: list[bytes] = []
    shard = await _listening(redis, b"room", heard)
    p = Publisher(Endpoint(port=redis.port), replies=False)
    try:
        for i in range(5):
            await p.send_many([command(b"PUBLISH", b"room", b"m%d" % i)] * 2)

        async def all_heard() -> bool:
            return len(heard) == 10
        await until_true(all_heard)
        assert heard == [b"m%d" % i for i in range(5) for _ in range(2)]
        # replies on again, then an echo: what comes back is only these two
        await p.send_many([command(b"CLIENT", b"REPLY", b"ON"), command(b"ECHO", b"end")])

        async def echoed() -> bool:
            return p.last_stray == b"end"
        await until_true(echoed)
        assert p.stray == 2  # OK and the echo: none of the ten PUBLISH was answered
    finally:
        p.close()
        await shard.close()


async def test_a_replyless_publisher_refused_client_reply_still_publishes(
        redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """A user that may not use CLIENT: Redis answers everything, the
    publisher logs the refusal, counts the replies and goes on."""
    with redis.client() as c:
        c.execute_command("ACL", "SETUSER", "pub", "on", ">pw", "~*", "&*", "+@all", "-client")
    heard: list[bytes] = []
    shard = await _listening(redis, b"room", heard)
    p = Publisher(Endpoint(port=redis.port, username="pub", password="pw"), replies=False)
    try:
        await p.send_many([command(b"PUBLISH", b"room", b"a"), command(b"PUBLISH", b"room", b"b")])

        async def answered() -> bool:
            return p.stray == 3  # the refusal, and both PUBLISH counts
        await until_true(answered)
        assert p.last_stray == 1
        assert "Redis refused a command sent without reply" in caplog.text

        async def arrived() -> bool:
            return heard == [b"a", b"b"]
        await until_true(arrived)
    finally:
        p.close()
        await shard.close()
        with redis.client() as c:
            c.execute_command("ACL", "DELUSER", "pub")


async def test_a_replyless_publisher_to_a_peer_that_does_not_read_is_dropped() -> None:
    """What it may hold unsent is bounded: past that, the connection goes."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_read(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = Publisher(Endpoint(port=port), replies=False)
    chunk = command(b"PUBLISH", b"room", b"x" * 65536)
    try:
        with pytest.raises(ConnectionError, match="does not read"):
            for _ in range(2000):  # 128 MiB at most: far past the bound and the kernel's buffers
                await p.send_many([chunk, chunk])
                await asyncio.sleep(0)  # the loop's turn to flush what the kernel takes
        await p.send_many([command(b"PING")])  # dropped: the next call connects again

        async def reconnected() -> bool:
            return len(accepted) == 2
        await until_true(reconnected)
    finally:
        p.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
