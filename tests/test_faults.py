"""Faults against ``livecast serve`` as a process (docs/reliability.md): real
processes, real sockets on loopback.

- A reconnect storm: every member of a room comes back at once after the
  server is killed (SIGKILL) and started again, against a node-wide connect
  limit far below the crowd; the refused are closed 4013 with a retry hint,
  the Python client waits it out, and every member is back in the room and
  receives the next message.
- A business backend that answers HTTP 500, one that is dead (connection
  refused) and one slower than the callback timeout: every message of the
  room is still delivered (fail open), and another room is served too.

Synchronisation: processes are polled for readiness (``start_ready``);
everything else is awaited replies and pushes, each with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from livecast.client import Client, text
from tests.redis_fixtures import free_port
from tests.test_restart import SDKAPPID, Server, cluster_env, sig
from tests.webhooks.conftest import serve_callbacks

MEMBERS = 200
WAIT = 30.0


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = cluster_env("", tmp_path, **extra)
    del env["LIVECAST_REDIS_URL"]
    # the default grace: a refused client slower than the grace to answer its
    # 4013 close would be cut off before reading it (the servers end by SIGKILL)
    del env["LIVECAST_SHUTDOWN_GRACE"]
    env["LIVECAST_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture
async def started() -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for s in servers:
        if s.proc is not None:
            await s.stop(signal.SIGKILL)


async def start(env: dict[str, str], started: list[Server]) -> Server:
    port = free_port()
    s = Server(dict(env, LIVECAST_PORT=str(port)), port)
    await s.start()
    started.append(s)
    return s


async def member(s: Server, user: str) -> tuple[Client, int, int]:
    """A member back in the room: (client, login code, join code)."""
    c = Client(f"ws://127.0.0.1:{s.port}/v1/ws", timeout=WAIT)
    login = await c.connect_and_login(SDKAPPID, user, sig(user), attempts=10)
    joined = await c.join("live") if login["code"] == 0 else {"code": -1}
    return c, int(login["code"]), int(joined["code"])


async def metric(s: Server, name: str, *labels: str) -> float:
    """The value of ``name`` with every one of ``labels`` on the server's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{s.base}/metrics") as resp:
        lines = (await resp.text()).splitlines()
    for line in lines:
        if line.startswith(name + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def receives(c: Client, body: str) -> bool:
    while True:
        push = await c.next_push("msgs", within=WAIT)
        if any(m["msgBody"] == text(body) for m in push["msgs"]):
            return True


@pytest.mark.timeout(300)
async def test_a_reconnect_storm_after_a_kill_is_admitted_in_turns(
        tmp_path: Path, started: list[Server]) -> None:
    env = serve_env(tmp_path, LIVECAST_CONNECT_GLOBAL_RATE="100",
                    LIVECAST_CONNECT_GLOBAL_BURST="50")
    s = await start(env, started)
    await s.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": "live", "Name": "live"})
    first = [await member(s, f"u{i}") for i in range(0, MEMBERS)]
    assert {(login, joined) for _, login, joined in first} == {(0, 0)}
    await s.stop(signal.SIGKILL)
    await asyncio.gather(*(c.wait_closed(WAIT) for c, _, _ in first))
    await asyncio.gather(*(c.close() for c, _, _ in first))
    await s.start()   # same port, same data directory: the room is back
    back = await asyncio.gather(*(member(s, f"u{i}") for i in range(MEMBERS)))
    try:
        assert {(login, joined) for _, login, joined in back} == {(0, 0)}
        refused = await metric(s, "livecast_admission_refused_total",
                               'what="connect"', 'scope="global"')
        assert refused > 0   # the storm did hit the limit: admitted in turns, not at once
        r = await s.ok("group_open_http_svc", "send_group_msg",
                       {"GroupId": "live", "Random": 1, "MsgBody": text("welcome back")})
        assert r["MsgSeq"] > 0
        assert all(await asyncio.gather(*(receives(c, "welcome back") for c, _, _ in back)))
    finally:
        await asyncio.gather(*(c.close() for c, _, _ in back))


class FaultyBackend:
    """Answers every callback with HTTP 500, or hangs (until teardown)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.mode == "slow":
            await self.release.wait()
        return web.Response(status=500, text="boom")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["http-500", "dead", "slow"])
async def test_a_failing_backend_never_costs_a_message(
        tmp_path: Path, started: list[Server], mode: str) -> None:
    backend = FaultyBackend(mode)
    server = await serve_callbacks(backend.handle)
    url = str(server.make_url("/im/callback"))
    if mode == "dead":
        await server.close()   # nothing listens there any more: connection refused
    try:
        env = serve_env(tmp_path, LIVECAST_CALLBACK_URL=url, LIVECAST_CALLBACK_TIMEOUT="0.5")
        s = await start(env, started)
        for gid in ("live", "other"):
            await s.ok("group_open_http_svc", "create_group",
                       {"Type": "AVChatRoom", "GroupId": gid, "Name": gid})
        senders = [await member(s, f"s{i}") for i in range(3)]
        viewer, _, _ = await member(s, "viewer")
        replies = await asyncio.gather(*(senders[i % 3][0].send("live", text(f"m{i}"), random=i)
                                         for i in range(30)))
        assert [(r["code"], r["dropReason"]) for r in replies] == [(0, "")] * 30
        assert all(r["msgSeq"] > 0 for r in replies)
        got: set[str] = set()
        while len(got) < 30:
            push = await viewer.next_push("msgs", within=WAIT)
            got |= {m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]}
        assert got == {f"m{i}" for i in range(30)}
        elsewhere = Client(f"ws://127.0.0.1:{s.port}/v1/ws", timeout=WAIT)
        await elsewhere.connect_and_login(SDKAPPID, "o1", sig("o1"))
        assert (await elsewhere.join("other"))["code"] == 0
        r = await elsewhere.send("other", text("here too"))
        assert r["code"] == 0 and r["msgSeq"] > 0
        assert mode == "dead" or backend.calls > 0
        for c in [*(c for c, _, _ in senders), viewer, elsewhere]:
            await c.close()
    finally:
        backend.release.set()
        await server.close()


async def until_answered(s: Server) -> None:
    """Until the server has read the before-send's answer (its duration observed)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await metric(s, "livecast_callback_seconds_count",
                           'command="Group.CallbackBeforeSendMsg"'):
        assert asyncio.get_running_loop().time() < deadline, "the answer was never read"
        await asyncio.sleep(0.05)  # polling the server's /metrics, bounded by WAIT


class GatedBackend:
    """Holds every before-send until ``release``; answers everything else OK at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("CallbackCommand") == "Group.CallbackBeforeSendMsg":
            self.held.set()
            await self.release.wait()
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("how", "close"), [("ban", 4004), ("kick", 4003)])
async def test_a_sender_removed_during_its_before_send_is_not_delivered(
        tmp_path: Path, started: list[Server], how: str, close: int) -> None:
    backend = GatedBackend()
    server = await serve_callbacks(backend.handle)
    try:
        env = serve_env(tmp_path, LIVECAST_CALLBACK_URL=str(server.make_url("/im/callback")),
                        LIVECAST_CALLBACK_TIMEOUT="30")
        s = await start(env, started)
        await s.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": "live", "Name": "live"})
        alice, _, _ = await member(s, "alice")
        viewer, _, _ = await member(s, "viewer")
        held = asyncio.ensure_future(alice.send("live", text("held back"), random=1))
        await asyncio.wait_for(backend.held.wait(), WAIT)
        if how == "ban":
            await s.ok("group_open_http_svc", "ban_group_member",
                       {"GroupId": "live", "Members_Account": ["alice"], "Duration": 600})
        else:
            await s.ok("im_open_login_svc", "kick", {"UserID": "alice"})
        assert await alice.wait_closed(WAIT) == close
        backend.release.set()                      # the callback allows, too late
        await asyncio.gather(held, return_exceptions=True)
        await until_answered(s)                    # its fate is decided before the marker
        await s.ok("group_open_http_svc", "send_group_msg",
                   {"GroupId": "live", "Random": 2, "MsgBody": text("marker"),
                    "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback"]})
        seen: list[str] = []
        while "marker" not in seen:
            push = await viewer.next_push("msgs", within=WAIT)
            seen += [m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]]
        assert seen == ["marker"]
        await viewer.close()
        await alice.close()
    finally:
        backend.release.set()
        await server.close()
