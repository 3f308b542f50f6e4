"""livecast/gateway/pages.py over HTTP, in process: headers, static files, the
dev-only UserSig endpoint and the dashboard's JSON against /metrics."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from livecast.client import custom, text
from livecast.core.usersig import verify
from livecast.gateway.pages import CSP, STATIC
from tests.conftest import KEY, SDKAPPID, Live, LiveFactory, sig

PAGES = {"/": "text/html", "/dashboard": "text/html",
         "/static/livecast.js": "application/javascript", "/static/room.js":
         "application/javascript", "/static/room.css": "text/css",
         "/static/dashboard.js": "application/javascript",
         "/static/dashboard.css": "text/css", "/static/favicon.svg": "image/svg+xml"}


async def get(live: Live, path: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(live.url(path)) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def post(live: Live, path: str, body: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(live.url(path), data=body) as resp:
        return resp.status, await resp.json(content_type=None) if resp.status != 404 else None


async def test_pages_and_files_carry_the_strict_csp(live: Live) -> None:
    for path, kind in PAGES.items():
        status, headers, body = await get(live, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(kind), (path, headers["Content-Type"])
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body
    assert "script-src 'self';" in CSP and "style-src 'self';" in CSP
    assert "frame-ancestors 'none'" in CSP and "object-src 'none'" in CSP
    status, headers, _ = await get(live, "/static/../pages.py")
    assert status in (403, 404)


def test_pages_hold_nothing_a_strict_csp_blocks_and_never_parse_html() -> None:
    for page in STATIC.glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), page.name
        assert "<style" not in html and not re.search(r"\sstyle=", html), page.name
        assert not re.search(r"\son[a-z]+=", html), page.name
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), page.name
    for script in STATIC.glob("*.js"):
        js = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function", "setAttribute(\"style"):
            assert sink not in js, (script.name, sink)


async def test_config_tells_the_page_how_to_log_in(live_factory: LiveFactory) -> None:
    live = await live_factory()
    status, _, body = await get(live, "/pages/config")
    assert status == 200 and body == b'{"sdkAppId": 1400000000, "devKey": false, "room": "demo"}'


async def test_dev_usersig_exists_only_on_the_dev_key(live_factory: LiveFactory) -> None:
    configured = await live_factory()
    status, _ = await post(configured, "/dev/usersig", b'{"userId":"eve"}')
    assert status == 404
    dev = await live_factory(dev_key=True)
    status, reply = await post(dev, "/dev/usersig", b'{"userId":"eve"}')
    assert status == 200 and reply["userId"] == "eve" and reply["sdkAppId"] == SDKAPPID
    assert verify(reply["userSig"], SDKAPPID, KEY, "eve", time.time()) == 0
    for bad in (b'{"userId":""}', b'{"userId":"' + b"x" * 33 + b'"}', b'{"userId":"\\u00e9"}',
                b'{"userId":7}', b"[]", b"not json"):
        status, reply = await post(dev, "/dev/usersig", bad)
        assert status == 400 and "userId" in reply["error"], bad
    status, reply = await post(dev, "/dev/usersig", b'{"userId":"administrator"}')
    assert status == 403 and "userSig" not in reply


def scrape(metrics_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_stats_are_the_numbers_metrics_shows(live: Live) -> None:
    gid = await live.room("stage", Name="Main <stage>")
    await live.room("quiet")
    alice = await live.client("alice", join=gid)
    await live.client("bob", join=gid)
    await live.client(None, join="quiet")
    assert (await alice.send(gid, text("hi")))["msgSeq"] > 0
    assert (await alice.send(gid, custom('{"type":"gift"}'), priority="High"))["msgSeq"] > 0
    _, _, raw = await get(live, "/metrics")
    m = scrape(raw.decode())
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        stats = await resp.json()
    for p in ("High", "Normal", "Low", "Lowest"):
        key = ("livecast_messages_delivered_total", (("priority", p),))
        assert stats["delivered"][p] == m[key]
    assert stats["delivered"]["High"] == 1 and stats["delivered"]["Normal"] == 1
    assert stats["connections"] == m[("livecast_connections", ())] == 3
    assert stats["rooms"] == m[("livecast_rooms", ())] == 2
    assert stats["tick"]["count"] == m[("livecast_tick_duration_seconds_count", ())] > 0
    assert stats["tick"]["buckets"][-1] == ["+Inf", stats["tick"]["count"]]
    assert [(r["groupId"], r["name"], r["online"]) for r in stats["roomList"]] == [
        ("stage", "Main <stage>", 2), ("quiet", "quiet", 1)]
    stage = stats["roomList"][0]
    assert stage["delivered"] == 2 and stage["owner"] == "this process"
    assert stage["dropped"] == {"High": 0, "Normal": 0, "Low": 0, "Lowest": 0}
    assert stage["pending"] == 0 and set(stage["pendingBy"]) == set(stage["dropped"])
    assert stage["likes"] == 0
    assert stats["webhooks"] is None


async def test_room_rows_count_drops_per_priority_and_the_like_total(live: Live) -> None:
    gid = await live.room("busy")
    await live.rest("livecast_ext", "set_room_rate", {"GroupId": gid, "Rate": 1, "Burst": 1})
    await live.rest("group_open_http_svc", "update_group_counter",
                    {"GroupId": gid, "GroupCounter": [{"Key": "likes", "Value": 42}]})
    alice = await live.client("alice", join=gid)
    fates = [await alice.send(gid, text(f"m{i}"), priority="Lowest") for i in range(3)]
    assert any(f.get("dropReason") == "MsgFreqCtrl" for f in fates)
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        row = (await resp.json())["roomList"][0]
    dropped = sum(1 for f in fates if f.get("dropReason"))
    assert row["dropped"]["Lowest"] == dropped and row["dropped"]["High"] == 0
    assert row["delivered"] == 3 - dropped and row["likes"] == 42
    assert row["deliveredBy"] == {"High": 0, "Normal": 0, "Low": 0, "Lowest": 3 - dropped}
    assert row["owner"] == "this process"


async def test_room_figures_before_joining(live_factory: LiveFactory) -> None:
    """GET /pages/room: public figures, also when guests are not allowed."""
    live = await live_factory(allow_guests=False)
    gid = await live.room("show", Name="The <show>")
    await live.rest("group_open_http_svc", "update_group_counter",
                    {"GroupId": gid, "GroupCounter": [{"Key": "likes", "Value": 7}]})
    await live.client("alice", join=gid)
    await live.client("bob", join=gid)
    status, headers, body = await get(live, "/pages/room?groupId=show")
    assert status == 200 and headers["Content-Security-Policy"] == CSP
    assert orjson.loads(body) == {"groupId": "show", "name": "The <show>", "online": 2,
                                  "likes": 7}
    assert (await get(live, "/pages/room?groupId=nope"))[0] == 404
    for bad in ("", "groupId=", "groupId=" + "x" * 49, "groupId=%C3%A9"):
        status, _, body = await get(live, f"/pages/room?{bad}")
        assert status == 400 and b"groupId" in body, bad


async def test_stats_show_webhook_health_when_callbacks_are_on(live_factory: LiveFactory) -> None:
    live = await live_factory(callback_url="http://127.0.0.1:9/unused")
    hooks = live.node.webhooks.metrics
    hooks.sent.labels("Group.CallbackBeforeSendMsg").inc(5)
    hooks.failed.labels("Group.CallbackBeforeSendMsg").inc(2)
    hooks.timeout.labels("Group.CallbackAfterSendMsg").inc(1)
    hooks.breaker.set(1)
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        stats = await resp.json()
    hooks.seconds.labels("Group.CallbackBeforeSendMsg").observe(0.02)
    hooks.seconds.labels("Group.CallbackBeforeSendMsg").observe(3.0)
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        stats = await resp.json()
    latency = stats["webhooks"].pop("latency")
    assert stats["webhooks"] == {"sent": 5, "failed": 2, "timeout": 1, "dropped": 0,
                                 "breaker": 1}
    before = latency["Group.CallbackBeforeSendMsg"]
    assert before["count"] == 2
    assert ["0.025", 1] in before["buckets"] and ["5.0", 2] in before["buckets"]
    assert latency["Group.CallbackAfterSendMsg"]["count"] == 0


async def test_stats_show_admission_refusals_as_metrics_counts_them(
        live_factory: LiveFactory) -> None:
    live = await live_factory(admission_loopback=True, connect_rate=0.01, connect_burst=2,
                              login_rate=0.01, login_burst=1, auth_fail_limit=2,
                              auth_lockout=600)
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        before = (await resp.json())["admission"]
    assert before == {"connectRefused": {"ip": 0, "global": 0},
                      "loginRefused": {"ip": 0, "global": 0},
                      "authFailures": 0, "authLocked": 0}
    await live.client("alice")                         # a connect and a login admitted
    bob = await live.client()                          # a second connect admitted
    assert (await bob.login(SDKAPPID, "bob", sig("bob")))["code"] != 0  # login refused
    await (await live.client()).wait_closed()          # a third connect refused
    for _ in range(3):                                 # 2 failures (the 2nd locks), 1 locked
        await live.rest("group_open_http_svc", "get_group_info", {"GroupIdList": ["x"]},
                        usersig="not-a-usersig")
    _, _, raw = await get(live, "/metrics")
    m = scrape(raw.decode())
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        adm = (await resp.json())["admission"]
    assert adm["connectRefused"] == {"ip": 1, "global": 0}
    assert adm["loginRefused"] == {"ip": 1, "global": 0}
    assert adm["authFailures"] == m[("livecast_rest_auth_failures_total", ())] == 2
    assert adm["authLocked"] == m[("livecast_rest_auth_locked_total", ())] == 2
    assert adm["connectRefused"]["ip"] == m[("livecast_admission_refused_total",
                                             (("scope", "ip"), ("what", "connect")))]


async def test_a_like_total_that_is_not_ascii_digits_counts_as_none(live: Live) -> None:
    """AppDefinedData ``likes`` of "²" (a digit to ``str.isdigit``, not to
    ``int``) is not a total: the room's figures and the dashboard answer,
    with the like counter's value."""
    gid = await live.room("odd")
    await live.rest("group_open_http_svc", "modify_group_base_info",
                    {"GroupId": gid, "AppDefinedData": [{"Key": "likes", "Value": "\u00b2"}]})
    await live.rest("group_open_http_svc", "update_group_counter",
                    {"GroupId": gid, "GroupCounter": [{"Key": "likes", "Value": 3}]})
    status, _, body = await get(live, "/pages/room?groupId=odd")
    assert status == 200 and orjson.loads(body)["likes"] == 3
    status, _, body = await get(live, "/dashboard/stats")
    assert status == 200 and orjson.loads(body)["roomList"][0]["likes"] == 3


async def test_a_dev_usersig_body_is_read_as_json_whatever_its_headers_say(
        live_factory: LiveFactory) -> None:
    """JSON is UTF-8 (RFC 8259): a charset Python does not know is not read;
    a body that does not decode as its Content-Encoding says is a bad body."""
    dev = await live_factory(dev_key=True)
    async with aiohttp.ClientSession() as http:
        async with http.post(dev.url("/dev/usersig"), data=b'{"userId":"eve"}', headers={
                "Content-Type": "application/json; charset=no-such-charset"}) as resp:
            assert resp.status == 200 and (await resp.json())["userId"] == "eve"
        async with http.post(dev.url("/dev/usersig"), data=b"not gzip", headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"}) as resp:
            assert resp.status == 400 and "userId" in (await resp.json())["error"]
