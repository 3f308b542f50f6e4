"""Redis faults under a running cluster (docs/design.md, "The cluster"): two
``livecast serve`` processes on one real redis-server with AOF.  Redis killed
and started again on the same port and directory, and Redis frozen (SIGSTOP,
a partition without a TCP reset) then thawed: while it is away ``/readyz``
answers 503, members stay connected, a send on the owner and a forwarded send
are answered 10002 "retry"; once it is back the processes reconnect and
resubscribe by themselves and a send on one process reaches a member on the
other, with no client action."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from livecast.client import Client, text
from livecast.core.fate import AWAY_UNSURE_INFO
from tests.node.test_cluster import GID, member
from tests.redis_fixtures import RedisServer, free_port
from tests.test_restart import Server, cluster_env, kill_servers, start_servers, until


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path, ("--appendonly", "yes"))
    server.start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture
async def pair(redis: RedisServer, tmp_path: Path) -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    await start_servers(cluster_env(redis.url, tmp_path), 2, servers)
    yield servers
    await kill_servers(servers)


async def ready_is(s: Server, status: int) -> bool:
    async with aiohttp.ClientSession() as http, http.get(s.base + "/readyz") as resp:
        return resp.status == status


async def _setup(pair: list[Server]) -> tuple[Client, Client, Client]:
    a, b = pair
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "faults"})  # a owns it
    listener = await member(a, "listener")
    owner_side = await member(a, "sender-a")
    forwarded = await member(b, "sender-b")
    r = await forwarded.send(GID, text("before"))
    assert r["code"] == 0, r
    push = await asyncio.wait_for(listener.next_push("msgs"), 10)
    assert push["msgs"][0]["seq"] == r["msgSeq"]
    return listener, owner_side, forwarded


async def _while_away(pair: list[Server], clients: tuple[Client, Client, Client]) -> None:
    """503 on both processes; every member still connected; both kinds of
    send answered with an explicit retry."""
    for s in pair:
        await until(lambda s=s: ready_is(s, 503), f"/readyz 503 on :{s.port}", within=15)
    _listener, owner_side, forwarded = clients
    for c in (owner_side, forwarded):
        started = time.monotonic()
        r = await asyncio.wait_for(c.send(GID, text("while away")), 15)
        assert r["code"] == 10002, r
        print(f"send while Redis is away answered {r['code']} in "
              f"{time.monotonic() - started:.3f} s")
    for c in clients:
        assert (await asyncio.wait_for(c.ping(), 10))["code"] == 0  # still connected


async def _resumes(pair: list[Server], clients: tuple[Client, Client, Client],
                   back: float) -> None:
    """Back (since ``back``): a send on b reaches the member on a, no client action."""
    listener, _owner_side, forwarded = clients
    answer: dict[str, int] = {}

    async def delivered() -> bool:
        r = await forwarded.send(GID, text("after"))
        assert r["code"] in (0, 10002), r  # answered either way
        answer.update(r)
        return bool(r["code"] == 0)

    await until(delivered, "a send delivered again", within=20)
    print(f"delivered again {time.monotonic() - back:.2f} s after Redis came back")
    while True:  # sends refused meanwhile were never delivered
        push = await asyncio.wait_for(listener.next_push("msgs"), 10)
        bodies = [m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]]
        assert "while away" not in bodies
        if any(m["seq"] == answer["msgSeq"] for m in push["msgs"]):
            break
    for s in pair:
        await until(lambda s=s: ready_is(s, 200), f"/readyz 200 on :{s.port}", within=15)


async def test_a_redis_restart_is_survived_by_itself(pair: list[Server],
                                                     redis: RedisServer) -> None:
    clients = await _setup(pair)
    redis.stop()  # killed; its AOF stays in the directory
    await _while_away(pair, clients)
    back = time.monotonic()
    redis.start()  # the same port, the same directory: the fence and the seq are back
    await _resumes(pair, clients, back)
    for c in clients:
        await c.close()


async def test_redis_unreachable_for_a_while_then_back(pair: list[Server],
                                                       redis: RedisServer) -> None:
    clients = await _setup(pair)
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)  # no answers and no TCP reset
    await _while_away(pair, clients)
    back = time.monotonic()
    redis.process.send_signal(signal.SIGCONT)
    await _resumes(pair, clients, back)
    for c in clients:
        await c.close()


async def test_a_send_whose_publish_got_no_answer_may_have_been_delivered(
        pair: list[Server], redis: RedisServer) -> None:
    """Redis frozen while the owner publishes a tick: the publish times out
    but Redis runs it once thawed, so the sender is told "it may have been
    delivered", never the "retry" that means nothing was."""
    listener, owner_side, forwarded = await _setup(pair)
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)  # before the processes notice: the publish goes
    ws = await asyncio.wait_for(owner_side.send(GID, text("stalled")), 15)
    redis.process.send_signal(signal.SIGCONT)
    assert (ws["code"], ws["info"]) == (10002, AWAY_UNSURE_INFO), ws
    await until_sent(owner_side, "marker")
    seen: list[str] = []
    while "marker" not in seen:
        push = await asyncio.wait_for(listener.next_push("msgs"), 10)
        seen += [m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]]
    assert seen.count("stalled") <= 1  # delivered once, or not at all: both "may have been"
    for c in (listener, owner_side, forwarded):
        await c.close()


async def until_sent(c: Client, words: str) -> dict[str, int]:
    answer: dict[str, int] = {}

    async def sent() -> bool:
        r = await c.send(GID, text(words))
        answer.update(r)
        return bool(r["code"] == 0)
    await until(sent, f"{words!r} delivered", within=20)
    return answer
