"""CORS of livecast/gateway/pages.py over HTTP, in process: the static client
and /dev/usersig answer the origins of LIVECAST_ALLOWED_ORIGINS only; ``*``
opens the static files but never /dev/usersig; preflights are answered."""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDictProxy

from livecast.core.cors import parse_origins
from tests.conftest import Live, LiveFactory

APP = "https://app.example.com"
EVIL = "https://evil.example.org"
ACAO = "Access-Control-Allow-Origin"


async def call(live: Live, method: str, path: str, origin: str | None,
               **headers: str) -> tuple[int, CIMultiDictProxy[str]]:
    if origin is not None:
        headers["Origin"] = origin
    body = b'{"userId":"web-user"}' if method == "POST" else None
    async with aiohttp.ClientSession() as http, http.request(
            method, live.url(path), headers=headers, data=body) as resp:
        await resp.read()
        return resp.status, resp.headers


async def test_by_default_nothing_is_shared_with_another_origin(
        live_factory: LiveFactory) -> None:
    live = await live_factory(dev_key=True)
    status, headers = await call(live, "GET", "/static/livecast.js", APP)
    assert status == 200 and ACAO not in headers
    status, headers = await call(live, "POST", "/dev/usersig", APP)  # an unlisted page
    assert status == 403 and ACAO not in headers
    status, headers = await call(live, "OPTIONS", "/static/livecast.js", APP,
                                 **{"Access-Control-Request-Method": "GET"})
    assert status == 403 and ACAO not in headers


async def test_listed_origins_load_the_client_and_get_dev_usersigs(
        live_factory: LiveFactory) -> None:
    live = await live_factory(dev_key=True, allowed_origins=parse_origins(APP))
    status, headers = await call(live, "GET", "/static/livecast.js", APP)
    assert status == 200 and headers[ACAO] == APP and "Origin" in headers.getall("Vary")
    status, headers = await call(live, "POST", "/dev/usersig", APP)
    assert status == 200 and headers[ACAO] == APP
    status, headers = await call(live, "OPTIONS", "/dev/usersig", APP,
                                 **{"Access-Control-Request-Method": "POST",
                                    "Access-Control-Request-Headers": "content-type"})
    assert status == 204 and headers[ACAO] == APP
    assert headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Access-Control-Allow-Credentials" not in headers
    status, headers = await call(live, "OPTIONS", "/static/livecast.js", APP)
    assert status == 204 and headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    for method, path in (("GET", "/static/livecast.js"), ("POST", "/dev/usersig"),
                         ("OPTIONS", "/dev/usersig")):
        status, headers = await call(live, method, path, EVIL)
        assert ACAO not in headers, (method, path)
    assert status == 403
    status, headers = await call(live, "GET", "/pages/config", APP)   # not shared
    assert status == 200 and ACAO not in headers


async def test_the_wildcard_shares_the_client_but_not_dev_usersigs(
        live_factory: LiveFactory) -> None:
    live = await live_factory(dev_key=True, allowed_origins=parse_origins("*"))
    status, headers = await call(live, "GET", "/static/livecast.js", EVIL)
    assert status == 200 and headers[ACAO] == "*"
    status, headers = await call(live, "POST", "/dev/usersig", EVIL)
    assert ACAO not in headers
    status, headers = await call(live, "OPTIONS", "/dev/usersig", EVIL,
                                 **{"Access-Control-Request-Method": "POST"})
    assert status == 403 and ACAO not in headers


async def test_without_the_dev_key_there_is_no_usersig_endpoint_to_preflight(
        live_factory: LiveFactory) -> None:
    live = await live_factory(allowed_origins=parse_origins(APP))
    status, _ = await call(live, "OPTIONS", "/dev/usersig", APP,
                           **{"Access-Control-Request-Method": "POST"})
    assert status == 404
    status, headers = await call(live, "GET", "/static/livecast.js", APP)
    assert status == 200 and headers[ACAO] == APP
