"""livecast/gateway/ops.py over real sockets: the ops endpoints open on
loopback, closed off loopback without configuration, behind the token when
one is set, and served only on the separate ops listener when there is one.

"Off loopback" is the configured listen host: these servers bind 0.0.0.0 and
are reached through 127.0.0.1, as a load balancer on the same host would.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from livecast.core.ops import SESSION_COOKIE
from livecast.gateway.app import OPS_LISTENER, make_app
from livecast.gateway.front import Front
from livecast.runner import Listener
from livecast.settings import Secret
from tests.conftest import SDKAPPID, base_settings, sig

TOKEN = "ops-token-0123456789abcdef0123"
OPS = ("/dashboard", "/dashboard/stats", "/metrics")
HEALTH = ("/healthz", "/readyz")
Start = Callable[..., Awaitable[Listener]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``start(host, **settings)``: the app served as ``livecast serve`` serves
    it, bound to ``host`` (the configured listen host) on a free port."""
    started: list[Listener] = []

    async def start_(host: str, **overrides: Any) -> Listener:
        settings = base_settings(host=host, **overrides)
        server = Listener(make_app(settings), Front, shutdown_timeout=1.0)
        await server.start(host, 0)
        started.append(server)
        return server

    yield start_
    for server in reversed(started):
        await server.close()


async def status(port: int, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}{path}", allow_redirects=False, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_open_on_loopback_as_before(start: Start) -> None:
    server = await start("127.0.0.1")
    for path in OPS + HEALTH:
        assert (await status(server.port, path))[0] == 200, path


async def test_closed_off_loopback_without_a_token_or_an_ops_address(start: Start) -> None:
    server = await start("0.0.0.0")
    for path in OPS:
        code, headers, body = await status(server.port, path)
        assert code == 403, path
        assert b"LIVECAST_OPS_TOKEN" in body and b"LIVECAST_OPS_LISTEN" in body
        assert headers["Cache-Control"] == "no-store"
        code, _, _ = await status(server.port, path, headers={"Authorization": "Bearer x" * 3})
        assert code == 403, path
    for path in HEALTH:
        assert (await status(server.port, path))[0] == 200, path
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"ws://127.0.0.1:{server.port}/v1/ws") as ws:
        await ws.send_json({"op": "login", "id": 1, "sdkAppId": SDKAPPID, "userId": "alice",
                            "userSig": sig("alice")})
        assert (await ws.receive_json(timeout=10))["code"] == 0  # the rest is untouched


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_the_token_is_required_wherever_it_is_set(start: Start, host: str) -> None:
    server = await start(host, ops_token=Secret(TOKEN))
    for path in ("/dashboard/stats", "/metrics"):
        code, headers, _ = await status(server.port, path)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer"):
            assert (await status(server.port, path,
                                 headers={"Authorization": wrong}))[0] == 401, (path, wrong)
        code, _, body = await status(server.port, path,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and body, path
    code, _, body = await status(server.port, "/metrics",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert b"livecast_connections" in body
    for path in HEALTH:
        assert (await status(server.port, path))[0] == 200, path


async def test_the_dashboard_logs_in_with_a_form_and_a_cookie(start: Start) -> None:
    server = await start("0.0.0.0", ops_token=Secret(TOKEN))
    base = URL(f"http://127.0.0.1:{server.port}")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base / "dashboard") as resp:  # the form, no data
            assert resp.status == 401
            page = await resp.text()
            assert 'action="/dashboard/login"' in page
            assert 'data-testid="login-error" hidden' in page
        async with http.post(base / "dashboard/login", data={"token": "wrong-but-long-enough"},
                             allow_redirects=False) as resp:
            assert resp.status == 401 and SESSION_COOKIE not in resp.cookies
            assert 'data-testid="login-error">' in await resp.text()
        async with http.post(base / "dashboard/login", data={"token": TOKEN},
                             allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard"
            cookie = resp.cookies[SESSION_COOKIE]
            assert TOKEN not in cookie.value
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert cookie["path"] == "/dashboard"
        async with http.get(base / "dashboard") as resp:
            assert resp.status == 200 and "dashboard.js" in await resp.text()
        async with http.get(base / "dashboard/stats") as resp:
            assert resp.status == 200 and "admission" in await resp.json()
        async with http.get(base / "metrics") as resp:  # the cookie is the dashboard's only
            assert resp.status == 401
    forged = {SESSION_COOKIE: "99999999999.00"}
    assert (await status(server.port, "/dashboard/stats", cookies=forged))[0] == 401


async def test_without_a_token_there_is_no_login(start: Start) -> None:
    server = await start("127.0.0.1")
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{server.port}/dashboard/login", data={"token": "x"}) as resp:
        assert resp.status in (404, 405)


async def test_a_separate_ops_address_serves_them_and_the_main_port_does_not(
        start: Start) -> None:
    ops_port = free_port()
    server = await start("0.0.0.0", ops_listen=("127.0.0.1", ops_port))
    ops = server.app[OPS_LISTENER]
    assert ops.port == ops_port
    for path in OPS:
        assert (await status(server.port, path))[0] == 404, path
        assert (await status(ops_port, path))[0] == 200, path
    for path in HEALTH:
        assert (await status(server.port, path))[0] == 200, path
        assert (await status(ops_port, path))[0] == 200, path
    code, _, body = await status(ops_port, "/static/dashboard.js")
    assert code == 200 and b"/dashboard/stats" in body
    for path in ("/", "/v1/ws", "/v4/group_open_http_svc/get_group_info"):  # ops only
        assert (await status(ops_port, path))[0] in (404, 405), path


async def test_a_separate_ops_address_with_a_token_requires_it(start: Start) -> None:
    ops_port = free_port()
    server = await start("0.0.0.0", ops_listen=("127.0.0.1", ops_port),
                         ops_token=Secret(TOKEN))
    assert (await status(server.port, "/metrics"))[0] == 404
    assert (await status(ops_port, "/metrics"))[0] == 401
    assert (await status(ops_port, "/metrics",
                         headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 200


async def test_wrong_tokens_lock_the_ip_out_like_failed_rest_logins(start: Start) -> None:
    server = await start("0.0.0.0", ops_token=Secret(TOKEN), admission_loopback=True,
                         auth_fail_limit=2, auth_lockout=600)
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert (await status(server.port, "/metrics", headers=right))[0] == 200
    assert (await status(server.port, "/metrics"))[0] == 401  # no token: not a failure
    assert (await status(server.port, "/metrics"))[0] == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    assert (await status(server.port, "/metrics", headers=wrong))[0] == 401
    code, headers, body = await status(server.port, "/dashboard/stats", headers=wrong)
    assert code == 429 and headers["Retry-After"] == "600" and b"retry after 600 s" in body
    for path in OPS:  # locked out: even the right token is not checked
        assert (await status(server.port, path, headers=right))[0] == 429, path
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{server.port}/dashboard/login", data={"token": TOKEN},
            allow_redirects=False) as resp:
        assert resp.status == 429
    assert (await status(server.port, "/healthz"))[0] == 200


async def raw_status(port: int, request: bytes) -> int:
    """The status of one request sent as raw bytes (headers no client library
    would send)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    writer.close()
    return int(head.split(b" ", 2)[1])


async def test_credentials_that_are_not_utf8_are_wrong_ones(start: Start) -> None:
    """A Bearer token or a session cookie with bytes that are not UTF-8 is a
    wrong credential (401), counted toward the lockout like any other."""
    server = await start("0.0.0.0", ops_token=Secret(TOKEN), admission_loopback=True,
                         auth_fail_limit=2, auth_lockout=600)
    bearer = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    cookie = (b"GET /dashboard/stats HTTP/1.1\r\nHost: x\r\n"
              b"Cookie: " + SESSION_COOKIE.encode() + b"=9999999999.\xff\r\n\r\n")
    assert await raw_status(server.port, cookie) == 401
    assert await raw_status(server.port, bearer) == 401
    assert await raw_status(server.port, bearer) == 429  # the second failure locks it out


@pytest.mark.parametrize("headers,body", [
    ({"Content-Type": "multipart/form-data"}, b"no boundary"),
    ({"Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"}, b"token=x"),
    ({"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
     b"not gzip"),
])
async def test_a_login_form_that_cannot_be_read_is_a_failed_login(
        start: Start, headers: dict[str, str], body: bytes) -> None:
    server = await start("127.0.0.1", ops_token=Secret(TOKEN))
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{server.port}/dashboard/login", data=body, headers=headers,
            allow_redirects=False) as resp:
        assert resp.status == 401
        assert "token" in await resp.text()  # the form again
