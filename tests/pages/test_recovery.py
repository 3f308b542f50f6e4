"""Recovery in Chromium (docs/protocol.md, "Recent messages and recovery"):
livecast.js keeps the last seq it saw and rejoins with ``sinceSeq``; the
messages sent while its socket was closed come first, then live ones: the
seq stream stays contiguous with no duplicate.  On the demo page the missed
messages appear where they belong, with no gap marker."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from playwright.sync_api import WebSocketRoute, expect

from tests.pages.conftest import (
    OpenTab,
    Served,
    free_port,
    join_room,
    message,
    send_text,
    start_server,
)

WS = re.compile(r"/v1/ws$")
RANDOM = itertools.count(1000)
IMPORT = 'const lc = await import("/static/livecast.js");'

VIEWER = IMPORT + """
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "rec-viewer"})})).json();
  const c = new lc.LivecastClient({sdkAppId: sig.sdkAppId, userId: "rec-viewer",
                                   userSig: sig.userSig, baseDelay: 50, maxDelay: 200});
  window.seqs = []; window.recovered = []; window.gaps = []; window.states = [];
  c.on("message", (m) => {
    if (m.groupId !== "demo") return;
    window.seqs.push(m.seq);
    if (m.recovered) window.recovered.push(m.seq);
  });
  c.on("gap", (g) => window.gaps.push(g));
  c.on("state", (s) => window.states.push(s.state));
  await c.connect();
  const r = await c.join("demo");
  window.client = c;
  return r.code;
"""


def rest_send(served: Served, text: str) -> int:
    r = served.rest("group_open_http_svc", "send_group_msg", {
        "GroupId": "demo", "Random": next(RANDOM), "From_Account": "host",
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}]})
    seq = r["MsgSeq"]
    assert isinstance(seq, int)
    return seq


def test_livecast_js_recovers_after_its_socket_is_closed(plain: Served,
                                                        open_tab: OpenTab) -> None:
    tab = open_tab(plain.base + "/")
    page = tab.page
    blocked = [False]

    def route(ws: WebSocketRoute) -> None:
        if blocked[0]:  # the network is still away: the reconnect fails
            ws.close(code=1001, reason="no network")
            return
        ws.connect_to_server()

    page.route_web_socket(WS, route)
    assert page.evaluate(f"async () => {{ {VIEWER} }}") == 0
    before = [rest_send(plain, f"before {i}") for i in range(3)]
    page.wait_for_function(f"() => window.seqs.includes({before[-1]})")
    blocked[0] = True
    page.evaluate("() => window.client.ws.close(4000, 'network gone')")  # from the page
    page.wait_for_function("() => window.states.includes('reconnecting')")
    away = [rest_send(plain, f"away {i}") for i in range(5)]
    blocked[0] = False
    page.wait_for_function("() => window.client.state === 'open' && "
                           f"window.seqs.includes({away[-1]})", timeout=20_000)
    after = [rest_send(plain, f"after {i}") for i in range(2)]
    page.wait_for_function(f"() => window.seqs.includes({after[-1]})")
    seqs: list[int] = page.evaluate("() => window.seqs")
    start = seqs.index(before[0])
    assert seqs[start:] == list(range(before[0], after[-1] + 1))  # contiguous, no duplicate
    assert len(seqs) == len(set(seqs))
    assert page.evaluate("() => window.recovered") == away
    assert page.evaluate("() => window.gaps") == []
    assert tab.errors == [] or all("WebSocket" in e for e in tab.errors)


def test_the_demo_page_shows_what_it_missed_after_a_server_restart(
        tmp_path: Path, open_tab: OpenTab) -> None:
    """A restart starts a new seq epoch: the page rejoins and counts from the
    new run with no gap marker and no duplicate; within one run a cut
    connection recovers what was sent meanwhile."""
    port, key_file = free_port(), tmp_path / "dev-key"
    server = start_server(port, key_file)
    try:
        served = Served(server, port, key_file)
        viewer = open_tab(served.base + "/")
        join_room(viewer, "Viewer")
        host = open_tab(served.base + "/")
        join_room(host, "Host")
        send_text(host.page, "first")
        expect(message(viewer.page, "first")).to_have_count(1)
        server.kill()
        state = viewer.page.get_by_test_id("connection-state")
        expect(state).to_have_attribute("data-state", "reconnecting")
        server = start_server(port, key_file)
        expect(state).to_have_attribute("data-state", "open", timeout=20_000)
        host_state = host.page.get_by_test_id("connection-state")
        expect(host_state).to_have_attribute("data-state", "open", timeout=20_000)
        send_text(host.page, "second")
        expect(message(viewer.page, "second")).to_have_count(1)
        expect(viewer.page.get_by_test_id("gap-marker")).to_be_hidden()
        expect(message(viewer.page, "first")).to_have_count(1)  # not shown twice
    finally:
        server.stop()


def test_a_new_viewer_sees_the_chat_so_far(plain: Served, open_tab: OpenTab) -> None:
    """The demo page joins with ``history: 20``: what was said before shows, once."""
    host = open_tab(plain.base + "/")
    join_room(host, "Host")
    send_text(host.page, "said before you came")
    expect(message(host.page, "said before you came")).to_have_count(1)
    late = open_tab(plain.base + "/")
    join_room(late, "Late")
    expect(message(late.page, "said before you came")).to_have_count(1)
    send_text(host.page, "and after")
    expect(message(late.page, "and after")).to_have_count(1)
    expect(message(late.page, "said before you came")).to_have_count(1)
    assert late.errors == []
