"""Admission control against a real server (docs/protocol.md, "Admission
control"; docs/rest.md, "Failed authentication"): connects and logins past
the per-IP or global rate are closed 4013 with a "retry after N s" reason,
the Python client waits and retries, and an IP with too many failed REST
authentications is refused 70050 for a while.  Loopback is exempt from the
per-IP limits unless LIVECAST_ADMISSION_LOOPBACK is on."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from livecast.client import Client, retry_after, retry_delay
from livecast.errors import Close, Code
from livecast.gateway.admission import gates, limited_ip, refused
from tests.conftest import SDKAPPID, Live, LiveFactory, sig
from tests.gateway.test_ws_closes import metric

HINT = re.compile(r"^too many (connects|logins): retry after \d+ s$")


async def test_connects_past_the_per_ip_burst_are_closed_4013_with_a_hint(
        live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, connect_rate=0.01, connect_burst=2)
    first, second = await live.client(), await live.client()
    third = await live.client()
    assert await third.wait_closed() == Close.TRY_LATER
    assert HINT.match(third.close_reason) and "connects" in third.close_reason
    assert retry_after(third.close_reason) == 100          # 1 token at 0.01/s
    assert (await first.ping())["code"] == 0 and (await second.ping())["code"] == 0
    assert await metric(live, "livecast_admission_refused_total", what="connect",
                        scope="ip") == 1
    assert await metric(live, "livecast_connections_closed_total", code="4013") == 1


async def test_loopback_is_exempt_from_per_ip_limits_by_default(
        live_factory: LiveFactory) -> None:
    live = await live_factory(connect_rate=0.01, connect_burst=1, login_rate=0.01,
                              login_burst=1)
    clients = [await live.client(f"u{i}") for i in range(5)]   # each connects and logs in
    assert all([(await c.ping())["code"] == 0 for c in clients])
    assert await metric(live, "livecast_admission_refused_total", what="connect",
                        scope="ip") == 0


async def test_the_global_connect_limit_applies_to_loopback_too(
        live_factory: LiveFactory) -> None:
    live = await live_factory(connect_global_rate=0.01, connect_global_burst=3)
    kept = [await live.client() for _ in range(3)]
    refused = await live.client()
    assert await refused.wait_closed() == Close.TRY_LATER
    assert HINT.match(refused.close_reason)
    assert all([(await c.ping())["code"] == 0 for c in kept])
    assert await metric(live, "livecast_admission_refused_total", what="connect",
                        scope="global") == 1


async def test_logins_past_the_limit_answer_70399_and_close_4013(
        live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, login_rate=0.01, login_burst=1)
    await live.client("alice")
    bob = await live.client()
    answer = await bob.login(SDKAPPID, "bob", sig("bob"))
    assert answer["code"] == Code.LOGIN_RATE_LIMIT
    assert HINT.match(answer["info"]) and "logins" in answer["info"]
    assert await bob.wait_closed() == Close.TRY_LATER
    assert retry_after(bob.close_reason) == retry_after(answer["info"]) == 100
    assert await metric(live, "livecast_admission_refused_total", what="login",
                        scope="ip") == 1


async def test_python_client_waits_the_hint_and_logs_in_on_a_later_try(
        live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, login_rate=1, login_burst=1)
    await live.client("alice")                          # takes the only token
    bob = Client(live.ws_url)
    live.clients.append(bob)
    answer = await bob.connect_and_login(SDKAPPID, "bob", sig("bob"), attempts=5)
    assert answer["code"] == 0
    refusals = await metric(live, "livecast_admission_refused_total", what="login", scope="ip")
    assert refusals >= 1                                # it was refused, then got in
    assert (await bob.ping())["code"] == 0


async def test_python_client_gives_up_after_its_attempts(live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, login_rate=0.01, login_burst=1)
    await live.client("alice")
    bob = Client(live.ws_url)
    live.clients.append(bob)
    answer = await bob.connect_and_login(SDKAPPID, "bob", sig("bob"), attempts=1)
    assert answer["code"] == Code.LOGIN_RATE_LIMIT


def test_retry_delay_is_at_least_the_hint_plus_bounded_jitter() -> None:
    assert retry_delay(0, 3.0, random=lambda: 0.0) == 3.0
    assert retry_delay(3, 2.0, base=0.5, cap=30.0, random=lambda: 1.0) == 6.0
    assert retry_delay(20, 0.0, base=0.5, cap=30.0, random=lambda: 1.0) == 30.0
    assert retry_after("too many logins: retry after 7 s") == 7.0
    assert retry_after("flood") is None


# ------------------------------------------------------------------ REST
async def _call(live: Live, usersig: str) -> dict[str, Any]:
    return await live.rest("group_open_http_svc", "get_appid_group_list", {},
                           usersig=usersig)


async def test_rest_ip_locked_out_after_failed_authentications(
        live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, auth_fail_limit=3, auth_lockout=600)
    good = sig("administrator")
    assert (await _call(live, good))["ErrorCode"] == 0
    codes = [(await _call(live, "not-a-sig"))["ErrorCode"] for _ in range(2)]
    assert all(c != 0 and c != Code.AUTH_LOCKED for c in codes)
    third = await _call(live, "not-a-sig")
    assert third["ErrorCode"] == Code.AUTH_LOCKED and third["ActionStatus"] == "FAIL"
    assert third["ErrorInfo"] == "too many failed attempts, retry after 600 s"
    locked = await _call(live, good)                   # refused unchecked while locked
    assert locked["ErrorCode"] == Code.AUTH_LOCKED
    assert await metric(live, "livecast_rest_auth_failures_total") == 3
    assert await metric(live, "livecast_rest_auth_locked_total") == 2


async def test_rest_success_clears_the_failure_count(live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, auth_fail_limit=3)
    for _ in range(5):
        assert (await _call(live, "bad"))["ErrorCode"] != Code.AUTH_LOCKED
        assert (await _call(live, "bad"))["ErrorCode"] != Code.AUTH_LOCKED
        assert (await _call(live, sig("administrator")))["ErrorCode"] == 0


async def test_rest_loopback_is_not_locked_out_by_default(live_factory: LiveFactory) -> None:
    live = await live_factory(auth_fail_limit=2)
    codes = {(await _call(live, "bad"))["ErrorCode"] for _ in range(6)}
    assert Code.AUTH_LOCKED not in codes
    assert (await _call(live, sig("administrator")))["ErrorCode"] == 0
    assert await metric(live, "livecast_rest_auth_failures_total") == 6


async def test_python_client_tries_again_when_its_connection_is_cut_before_login(
        live: Live) -> None:
    """A restarting server cuts connections mid-handshake (1006) or is not
    listening yet: connect_and_login tries again, as after a 4013.  A proxy in
    front of the real server aborts the first two connections it accepts
    (aiohttp itself opens a second one once for a GET cut before its answer)."""
    url = urlsplit(live.ws_url)
    cut: list[int] = []
    pipes: list[asyncio.Task[None]] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(cut) < 2:
            cut.append(1)
            writer.transport.abort()  # dies before its handshake
            return
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        pipes.extend((asyncio.create_task(pipe(reader, up_writer)),
                      asyncio.create_task(pipe(up_reader, writer))))

    proxy = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    bob = Client(f"ws://127.0.0.1:{port}{url.path}")
    try:
        answer = await bob.connect_and_login(SDKAPPID, "bob", sig("bob"), attempts=3)
        assert answer["code"] == 0 and len(cut) == 2
        assert (await bob.ping())["code"] == 0
    finally:
        await bob.close()
        proxy.close()
        await proxy.wait_closed()
        await asyncio.gather(*pipes, return_exceptions=True)


async def test_python_client_gives_a_refused_connection_up_after_its_attempts() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bob = Client(f"ws://127.0.0.1:{port}/v1/ws")
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await bob.connect_and_login(SDKAPPID, "bob", sig("bob"), attempts=2)
    finally:
        await bob.close()


async def test_an_ipv6_slash_64_is_one_client_for_the_per_ip_limits(
        live_factory: LiveFactory) -> None:
    """One /64 handing each connection a fresh address gets one budget: the
    per-IP connect gate and the REST lockout key it by its prefix; an
    IPv4-mapped peer is its IPv4 address."""
    live = await live_factory(connect_rate=0.01, connect_burst=3, auth_fail_limit=3)
    waits = [refused(live.node, f"2001:db8:1:2::{i:x}", "connect") for i in range(10)]
    assert waits[:3] == [None] * 3 and None not in waits[3:]
    assert refused(live.node, "2001:db8:1:3::1", "connect") is None  # the next /64
    auth = gates(live.node).auth
    for i in range(3):
        auth.failed(limited_ip(live.node, f"2001:db8:1:2::{i:x}") or "", 0.0)
    assert auth.locked(limited_ip(live.node, "2001:db8:1:2:ffff::1") or "", 1.0) > 0
    assert limited_ip(live.node, "::ffff:198.51.100.7") == limited_ip(live.node, "198.51.100.7")
