"""livecast.js's rooms across reconnects, in Chromium against a real server
(docs/protocol.md, "JavaScript client"): a room quit is never re-joined,
whenever the quit came; a join that got no reply is not kept; a join
refused for a reason that passes keeps a room the client is in; ``close()``
holds even while a new UserSig is being asked for; a room whose history
restarted while the client was away is reported as a gap."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, WebSocketRoute

from tests.pages.conftest import OpenTab, Served, free_port, start_server

WS = re.compile(r"/v1/ws$")
RANDOM = itertools.count(5000)

CLIENT = """
  const lc = await import("/static/livecast.js");
  const sig = async (userId) => (await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId})})).json());
  const first = await sig(USER);
  window.sigAsked = 0;
  window.releaseSig = null;
  const c = new lc.LivecastClient({sdkAppId: first.sdkAppId, userId: USER,
      userSig: first.userSig, baseDelay: 20, maxDelay: 100,
      getUserSig: async (u) => {  // answers once the test releases it
        window.sigAsked += 1;
        const next = await sig(u);
        await new Promise((resolve) => { window.releaseSig = resolve; });
        return next.userSig;
      }});
  window.rejoins = []; window.gaps = []; window.states = [];
  c.on("rejoin", (e) => window.rejoins.push([e.groupId, e.reply.code]));
  c.on("gap", (g) => window.gaps.push(g));
  c.on("state", (s) => window.states.push(s.state));
  await c.connect();
  window.client = c;
"""


def client(page: Page, user: str) -> None:
    page.evaluate(f"async () => {{ const USER = {user!r}; {CLIENT} }}")


def rooms(page: Page) -> list[str]:
    found: list[str] = page.evaluate("() => [...window.client.rooms.keys()].sort()")
    return found


def create(served: Served, *gids: str) -> None:
    for gid in gids:
        served.rest("group_open_http_svc", "create_group",
                    {"Type": "AVChatRoom", "GroupId": gid, "Name": gid})


def drop_and_wait_open(page: Page) -> None:
    """Cut the socket from the page; wait until the client is open again."""
    page.evaluate("() => { window.states = []; window.client.ws.close(4000, 'gone'); }")
    page.wait_for_function("() => window.states.includes('reconnecting') && "
                           "window.client.state === 'open'", timeout=20_000)


def test_a_room_quit_while_its_join_is_on_its_way_is_not_rejoined(
        plain: Served, open_tab: OpenTab) -> None:
    create(plain, "js-a", "js-b")
    page = open_tab(plain.base + "/").page
    client(page, "js-quitter")
    assert page.evaluate("async () => (await window.client.join('js-a')).code") == 0
    page.evaluate("""async () => {
        const j = window.client.join('js-b');  // not awaited: the quit goes at once
        await window.client.quit('js-b');
        await j;
    }""")
    assert rooms(page) == ["js-a"]
    drop_and_wait_open(page)
    rejoined: list[list[Any]] = page.evaluate("() => window.rejoins")
    assert [g for g, _code in rejoined] == ["js-a"]
    assert rooms(page) == ["js-a"]


def test_a_room_quit_during_a_reconnect_is_not_joined_again(
        plain: Served, open_tab: OpenTab) -> None:
    create(plain, "js-c", "js-d")
    page = open_tab(plain.base + "/").page
    client(page, "js-switcher")
    for gid in ("js-c", "js-d"):
        assert page.evaluate(f"async () => (await window.client.join({gid!r})).code") == 0
    # the app leaves js-d as soon as it hears js-c was re-joined
    page.evaluate("""() => window.client.on("rejoin", (e) => {
        if (e.groupId === 'js-c') window.client.quit('js-d'); })""")
    drop_and_wait_open(page)
    rejoined: list[list[Any]] = page.evaluate("() => window.rejoins")
    assert [g for g, _code in rejoined] == ["js-c"]
    online = plain.rest("group_open_http_svc", "get_online_member_num", {"GroupId": "js-d"})
    assert online["OnlineMemberNum"] == 0


def test_a_join_that_got_no_reply_is_not_kept(plain: Served, open_tab: OpenTab) -> None:
    create(plain, "js-e")
    page = open_tab(plain.base + "/").page
    held = [False]

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if held[0] and '"op":"join"' in str(message):
                ws.close(code=4000, reason="gone before the reply")
                return
            server.send(message)
        ws.on_message(to_server)

    page.route_web_socket(WS, route)
    client(page, "js-unlucky")
    held[0] = True
    error = page.evaluate("""async () => {
        try { await window.client.join('js-e'); return 'joined'; }
        catch (err) { return String(err); } }""")
    assert "connection closed" in error
    held[0] = False
    page.wait_for_function("() => window.client.state === 'open'", timeout=20_000)
    assert rooms(page) == [] and page.evaluate("() => window.rejoins") == []


def test_a_repeat_join_refused_for_the_request_rate_keeps_the_room(
        plain: Served, open_tab: OpenTab) -> None:
    create(plain, "js-f")
    page = open_tab(plain.base + "/").page
    client(page, "js-busy")
    assert page.evaluate("async () => (await window.client.join('js-f')).code") == 0
    code = page.evaluate("""async () => {
        const pings = [];
        for (let i = 0; i < 460; i++) pings.push(window.client.request('ping', {}));
        const r = await window.client.join('js-f');  // over the request budget
        await Promise.all(pings);
        return r.code; }""")
    assert code == 10023
    assert rooms(page) == ["js-f"]
    drop_and_wait_open(page)
    assert page.evaluate("() => window.rejoins") == [["js-f", 0]]


def test_close_holds_while_a_new_user_sig_is_asked_for(
        plain: Served, open_tab: OpenTab) -> None:
    page = open_tab(plain.base + "/").page
    refuse = [False]

    def route(ws: WebSocketRoute) -> None:
        if refuse[0]:  # the reconnect's login refused: the UserSig expired
            ws.close(code=4001, reason="UserSig refused")
            return
        ws.connect_to_server()

    page.route_web_socket(WS, route)
    client(page, "js-leaver")
    refuse[0] = True
    page.evaluate("() => { window.states = []; window.client.ws.close(4000, 'gone'); }")
    page.wait_for_function("() => window.sigAsked >= 1 && window.releaseSig !== null")
    page.evaluate("() => { window.client.close(); window.states = []; }")
    refuse[0] = False
    # the new UserSig comes after close(); once the tasks it wakes have run
    # (one macrotask later), nothing was scheduled or opened again
    page.evaluate("async () => { window.releaseSig(); await new Promise((r) => setTimeout(r)); }")
    assert page.evaluate("() => window.states") == []
    assert page.evaluate("() => [window.client.state, window.client.ws]") == ["closed", None]


def test_a_room_whose_history_restarted_while_away_is_a_gap(
        tmp_path: Path, open_tab: OpenTab) -> None:
    """The server restarted (a new history epoch) and three messages were sent
    before the client came back: its re-join cannot recover them, and the
    app hears of them as a gap of three."""
    port, key_file = free_port(), tmp_path / "dev-key"
    server = start_server(port, key_file)
    try:
        served = Served(server, port, key_file)
        create(served, "js-g")
        page = open_tab(served.base + "/").page
        away = [False]

        def route(ws: WebSocketRoute) -> None:
            if away[0]:  # not back before the messages below are sent
                ws.close(code=1001, reason="not yet")
                return
            ws.connect_to_server()

        page.route_web_socket(WS, route)
        client(page, "js-returning")
        assert page.evaluate("async () => (await window.client.join('js-g')).code") == 0
        away[0] = True
        server.kill()
        page.wait_for_function("() => window.client.state === 'reconnecting'")
        server = start_server(port, key_file)
        served = Served(server, port, key_file)
        for i in range(3):
            served.rest("group_open_http_svc", "send_group_msg", {
                "GroupId": "js-g", "Random": next(RANDOM), "From_Account": "host",
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": f"m{i}"}}]})
        away[0] = False
        page.wait_for_function("() => window.client.state === 'open' && "
                               "window.gaps.length > 0", timeout=20_000)
        gaps: list[dict[str, Any]] = page.evaluate("() => window.gaps")
        assert gaps == [{"groupId": "js-g", "expected": 1, "got": 4, "missed": 3}]
    finally:
        server.stop()


def test_a_request_made_while_a_reconnect_logs_in_is_not_sent(
        plain: Served, open_tab: OpenTab) -> None:
    """The new socket is open but its login and re-joins are on their way: a
    send then would reach the room before the sender is back in it (10007);
    it rejects "not connected" instead, and the reconnect goes on."""
    create(plain, "js-g")
    page = open_tab(plain.base + "/").page
    sockets: list[int] = []
    held: list[tuple[WebSocketRoute, str | bytes]] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        sockets.append(1)
        second = len(sockets) == 2

        def to_server(message: str | bytes) -> None:
            if second and '"op":"login"' in str(message) and not held:
                held.append((server, message))  # the reconnect's login, held back
                return
            server.send(message)
        ws.on_message(to_server)

    page.route_web_socket(WS, route)
    client(page, "js-early")
    assert page.evaluate("async () => (await window.client.join('js-g')).code") == 0
    page.evaluate("() => { window.states = []; window.client.ws.close(4000, 'gone'); }")
    page.wait_for_function("() => window.client.ws && window.client.ws.readyState === 1 "
                           "&& window.client.state === 'reconnecting'", timeout=20_000)
    outcome = page.evaluate("""async () => {
        const lc = await import("/static/livecast.js");
        try { return (await window.client.send('js-g', lc.text('too soon'))).code; }
        catch (err) { return String(err.message); } }""")
    assert outcome == "not connected"
    page.wait_for_function("() => window.client.state === 'reconnecting'")  # still held
    assert len(held) == 1
    server, login = held[0]
    server.send(login)
    page.wait_for_function("() => window.client.state === 'open'", timeout=20_000)
    assert page.evaluate("() => window.rejoins") == [["js-g", 0]]
    assert page.evaluate("""async () => {
        const lc = await import("/static/livecast.js");
        return (await window.client.send('js-g', lc.text('now'))).code; }""") == 0


def test_a_join_that_timed_out_is_quit_on_the_server(plain: Served, open_tab: OpenTab) -> None:
    """The join's reply never comes back (the server did join): the client
    drops the room and quits it, so the server does not keep a member the
    client does not know it has."""
    create(plain, "js-h")
    page = open_tab(plain.base + "/").page
    join_ids: list[int] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if '"op":"join"' in str(message):
                found = re.search(r'"id":(\d+)', str(message))
                assert found is not None
                join_ids.append(int(found.group(1)))
            server.send(message)

        def to_page(message: str | bytes) -> None:
            if any(f'"id":{rid},' in str(message) for rid in join_ids):
                return  # the join's reply, lost
            ws.send(message)
        ws.on_message(to_server)
        server.on_message(to_page)

    page.route_web_socket(WS, route)
    client(page, "js-timed-out")
    error = page.evaluate("""async () => {
        window.client.timeout = 500;
        try { await window.client.join('js-h'); return 'joined'; }
        catch (err) { return String(err.message); } }""")
    assert error == "join: no reply in 500 ms"
    assert rooms(page) == []
    # requests are answered in order: the ping's reply comes after the quit's
    assert page.evaluate("async () => (await window.client.request('ping', {})).code") == 0
    online = plain.rest("group_open_http_svc", "get_online_member_num", {"GroupId": "js-h"})
    assert online["OnlineMemberNum"] == 0
