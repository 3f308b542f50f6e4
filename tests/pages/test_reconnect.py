"""The room page when the connection goes: it comes back by itself, re-joins,
and marks what it missed."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import WebSocketRoute, expect

from tests.pages.conftest import (
    OpenTab,
    Served,
    free_port,
    join_room,
    message,
    screenshot,
    send_text,
    start_server,
)

WS = re.compile(r"/v1/ws$")


def test_the_page_reconnects_after_the_server_is_killed_and_restarted(
        tmp_path: Path, open_tab: OpenTab) -> None:
    port, key_file = free_port(), tmp_path / "dev-key"
    server = start_server(port, key_file)
    try:
        tab = open_tab(f"http://127.0.0.1:{port}/")
        page = tab.page
        join_room(tab, "Phoenix")
        page.evaluate("window.sameDocument = true")
        state = page.get_by_test_id("connection-state")
        server.kill()
        expect(state).to_have_attribute("data-state", "reconnecting")
        expect(state).to_have_text("reconnecting…")
        banner = page.get_by_test_id("reconnect-banner")
        expect(banner).to_have_text("Connection lost. Reconnecting…")
        screenshot(page, "room-reconnecting")
        server = start_server(port, key_file)
        expect(state).to_have_attribute("data-state", "open", timeout=20_000)
        expect(banner).to_be_hidden()
        expect(page.get_by_test_id("online-count")).to_have_text("1")
        send_text(page, "back again")
        expect(message(page, "back again").locator(".nick")).to_have_text("Phoenix")
        assert page.evaluate("window.sameDocument") is True
        unexpected = [e for e in tab.errors if "WebSocket connection" not in e]
        assert unexpected == []
    finally:
        server.stop()


def test_messages_sent_while_away_are_recovered(plain: Served, open_tab: OpenTab) -> None:
    """The viewer's connection is cut (as a shed connection is, close 4008);
    two messages are delivered meanwhile; its automatic re-join asks for what
    came after the last seq it saw (``sinceSeq``): both appear, in order, with
    no gap marker and no duplicate."""
    viewer = open_tab(plain.base + "/")
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    blocked = [False]

    def route(ws: WebSocketRoute) -> None:
        if blocked[0]:
            ws.close(code=1001, reason="going away")
            return
        routes.append((ws, ws.connect_to_server()))

    viewer.page.route_web_socket(WS, route)
    join_room(viewer, "Viewer")
    host = open_tab(plain.base + "/")
    join_room(host, "Host")
    send_text(host.page, "first")
    expect(message(viewer.page, "first")).to_have_count(1)

    blocked[0] = True
    page_side, server_side = routes[-1]
    server_side.close(code=1000, reason="cut")
    page_side.close(code=4008, reason="slow")
    state = viewer.page.get_by_test_id("connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    send_text(host.page, "second")
    send_text(host.page, "third")
    expect(message(host.page, "third")).to_have_count(1)
    blocked[0] = False

    expect(state).to_have_attribute("data-state", "open", timeout=20_000)
    send_text(host.page, "fourth")
    expect(message(viewer.page, "fourth")).to_have_count(1)
    for text in ("first", "second", "third", "fourth"):
        expect(message(viewer.page, text)).to_have_count(1)
    seqs = viewer.page.get_by_test_id("message-list").locator("[data-seq]").evaluate_all(
        "(items) => items.map((li) => Number(li.dataset.seq))")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous, no duplicate
    expect(viewer.page.get_by_test_id("gap-marker")).to_be_hidden()
    screenshot(viewer.page, "room-recovered")
    assert host.errors == []


def test_a_message_whose_reply_was_lost_is_not_sent_twice(
        plain: Served, open_tab: OpenTab) -> None:
    """The send reaches the server, then the connection goes before its reply:
    the page keeps the text as unsent, but the re-join brings the message back
    (the same sender and ``random``), so it is not sent again."""
    tab = open_tab(plain.base + "/")
    cut = [False]

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(frame: str | bytes) -> None:
            server.send(frame)
            if not cut[0] and "lost-reply" in str(frame):
                cut[0] = True  # the send is on its way: both sides go before its reply
                server.close(code=1000, reason="cut")
                ws.close(code=4008, reason="slow")
        ws.on_message(to_server)

    tab.page.route_web_socket(WS, route)
    join_room(tab, "Unlucky")
    tab.page.evaluate("""() => {  // every state the page shows, in order
        const el = document.querySelector('[data-testid="connection-state"]');
        window.shown = [];
        new MutationObserver(() => window.shown.push(el.dataset.state))
            .observe(el, {attributes: true, attributeFilter: ["data-state"]});
    }""")
    send_text(tab.page, "lost-reply")
    tab.page.wait_for_function("() => window.shown.includes('reconnecting') && "
                               "window.shown.at(-1) === 'open'", timeout=20_000)
    assert cut[0]
    send_text(tab.page, "after it")  # a resend would have gone before this one
    expect(message(tab.page, "after it")).to_have_count(1)
    expect(message(tab.page, "lost-reply")).to_have_count(1)
    expect(tab.page.get_by_test_id("unsent-notice")).to_be_hidden()
    expect(tab.page.get_by_test_id("message-input")).to_have_value("")
