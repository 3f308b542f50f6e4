"""The demo room's states as a viewer sees them, in real Chromium at a phone
(390×844) and a desktop (1280×800) viewport: before joining, joined, 500
messages, right-to-left text, long names, a message typed while the server
is away, a second tab of the same user.  Every state is kept as a pair of
screenshots in ``artifacts/pages/`` and checked where a check can be written
(on a phone the chat never covers the stream)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.pages.conftest import (
    VIEWPORTS,
    OpenTab,
    Served,
    free_port,
    join_room,
    message,
    screenshots,
    send_text,
    start_server,
)

# Runs in a page: a member made with livecast.js itself, who sends `texts`.
BOT = """async ([room, userId, nick, texts]) => {
  const { LivecastClient, text } = await import("/static/livecast.js");
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId})})).json();
  const c = new LivecastClient({sdkAppId: sig.sdkAppId, userId, userSig: sig.userSig});
  await c.connect();
  await c.setMyProfile({nick});
  await c.join(room);
  const replies = await Promise.all(texts.map((t) => c.send(room, text(t))));
  c.close();
  return replies.filter((r) => r.msgSeq > 0).length;
}"""


def make_room(served: Served, group_id: str, name: str, **extra: Any) -> str:
    served.rest("group_open_http_svc", "create_group",
                {"Type": "AVChatRoom", "Name": name, "GroupId": group_id, **extra})
    return f"{served.base}/?room={group_id}"


def bot(page: Page, room: str, user_id: str, nick: str, texts: list[str]) -> int:
    delivered: int = page.evaluate(BOT, [room, user_id, nick, texts])
    return delivered


def box(page: Page, test_id: str) -> dict[str, float]:
    found = page.get_by_test_id(test_id).bounding_box()
    assert found is not None, test_id
    return dict(found)


def assert_chat_clear_of_stream(page: Page) -> None:
    """At both viewports: the chat (messages included) never covers the stream;
    on a phone it is below the stream, on a desktop beside it."""
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        stream, chat, feed = box(page, "stream"), box(page, "chat"), box(page, "message-list")
        assert stream["height"] >= 0.3 * size["height"], (label, stream)
        if label == "phone":
            assert chat["y"] >= stream["y"] + stream["height"] - 0.5, (label, stream, chat)
        else:
            assert chat["x"] >= stream["x"] + stream["width"] - 0.5, (label, stream, chat)
        assert feed["y"] >= chat["y"] - 0.5 and feed["y"] + feed["height"] <= chat["y"] + \
            chat["height"] + 0.5, (label, chat, feed)


def test_before_joining_the_header_shows_the_room_figures(plain: Served,
                                                          open_tab: OpenTab) -> None:
    url = make_room(plain, "faces-initial", "Evening show")
    plain.rest("group_open_http_svc", "update_group_counter",
               {"GroupId": "faces-initial", "GroupCounter": [{"Key": "likes", "Value": 1234}]})
    host = open_tab(url)
    join_room(host, "Host")
    viewer = open_tab(url, VIEWPORTS["phone"])
    page = viewer.page
    expect(page.get_by_test_id("online-count")).to_have_text("1")
    expect(page.get_by_test_id("like-total")).to_have_text("1234")
    expect(page.get_by_test_id("join-button")).to_be_visible()
    assert_chat_clear_of_stream(page)
    screenshots(page, "room-initial")
    assert viewer.errors == [] and host.errors == []


def test_joined_a_room_notice_and_others_joins(plain: Served, open_tab: OpenTab) -> None:
    url = make_room(plain, "faces-joined", "Joined room", Notification="Welcome to the show!")
    alice = open_tab(url, VIEWPORTS["phone"])
    join_room(alice, "Alice")
    notice = alice.page.locator("[data-testid=join-notice]")
    expect(notice).to_have_text("You joined Joined room. Be kind, have fun. Welcome to the show!")
    bob = open_tab(url)
    join_room(bob, "Bob")
    bob_id = bob.page.evaluate("localStorage.getItem('livecast.userId')")
    expect(alice.page.locator(".msg.tip", has_text=f"{bob_id} joined")).to_have_count(1)
    expect(alice.page.get_by_test_id("online-count")).to_have_text("2")
    send_text(bob.page, "hi all")
    expect(message(alice.page, "hi all")).to_have_count(1)
    assert_chat_clear_of_stream(alice.page)
    screenshots(alice.page, "room-joined")
    assert alice.errors == [] and bob.errors == []


def test_500_messages_and_the_new_messages_pill(plain: Served, open_tab: OpenTab) -> None:
    url = make_room(plain, "faces-busy", "Busy room")
    plain.rest("livecast_ext", "set_room_rate", {"GroupId": "faces-busy", "Rate": 2000,
                                                 "Burst": 2000})
    viewer = open_tab(url, VIEWPORTS["phone"])
    page = viewer.page
    join_room(viewer, "Viewer")
    sent = sum(bot(page, "faces-busy", f"chatty-{n}", f"Chatty {n}",
                   [f"message {n * 250 + i} of 500" for i in range(250)]) for n in range(2))
    assert sent == 500
    expect(message(page, "message 499 of 500")).to_have_count(1)
    items = page.get_by_test_id("message-list").locator(":scope > li")
    assert items.count() <= 200
    assert_chat_clear_of_stream(page)
    screenshots(page, "room-500-messages")

    page.set_viewport_size(VIEWPORTS["phone"])
    page.get_by_test_id("message-list").evaluate("(list) => { list.scrollTop = 0; }")
    pill = page.get_by_test_id("new-messages")
    expect(pill).to_be_hidden()
    bot(page, "faces-busy", "chatty-0", "Chatty 0", ["one more"])
    expect(pill).to_have_text("1 new message ↓")
    # measured in one step in the page: the list drops its oldest item as a
    # message comes, so a first item looked up, then measured, may be gone
    first_top, feed_top = page.get_by_test_id("message-list").evaluate(
        "(list) => [list.firstElementChild.getBoundingClientRect().top,"
        " list.getBoundingClientRect().top]")
    assert first_top >= feed_top - 0.5  # not under the header
    screenshots(page, "room-new-messages-pill")
    pill.click()
    expect(pill).to_be_hidden()
    expect(message(page, "one more")).to_be_in_viewport()
    assert viewer.errors == []


ARABIC_NICK = "أحمد"
ARABIC_TEXT = "مرحبا بالجميع 123"
LONG_NICK = "Maximiliana Theodora Wilhelmina von Hohenzollern-Sig"  # 53 characters
MARKS_NICK = "Z" + "\u0337\u0322\u031b\u0316\u0317\u0318\u0319\u031c\u031d" * 3 + "algo"


def longest_mark_run(s: str) -> int:
    best = run = 0
    for ch in s:
        run = run + 1 if unicodedata.category(ch).startswith("M") else 0
        best = max(best, run)
    return best


def test_rtl_long_names_marks_and_line_breaks(plain: Served, open_tab: OpenTab) -> None:
    url = make_room(plain, "faces-names", "Names")
    viewer = open_tab(url, VIEWPORTS["phone"])
    page = viewer.page
    join_room(viewer, "Viewer")
    assert len(LONG_NICK) >= 52
    bot(page, "faces-names", "arabic", ARABIC_NICK, [ARABIC_TEXT])
    bot(page, "faces-names", "longname", LONG_NICK, ["a long name, one line"])
    bot(page, "faces-names", "marks", MARKS_NICK, ["marks stay inside"])
    bot(page, "faces-names", "lines", "Lines", ["first line\nsecond line"])

    rtl = message(page, ARABIC_TEXT)
    expect(rtl).to_have_count(1)
    for part, text in ((".nick", ARABIC_NICK), (".text", ARABIC_TEXT)):
        got = rtl.locator(part)
        expect(got).to_have_text(text)
        assert got.evaluate("(e) => [e.tagName, getComputedStyle(e).unicodeBidi]") == [
            "BDI", "isolate"]

    long = message(page, "a long name, one line")
    expect(long).to_have_count(1)
    nick = long.locator(".nick")
    one_line, truncated, same_line = nick.evaluate("""(n) => {
      const t = n.nextElementSibling.getClientRects()[0], r = n.getBoundingClientRect();
      return [r.height < 2 * parseFloat(getComputedStyle(n).fontSize),
              n.scrollWidth > n.clientWidth, Math.abs(t.top - r.top) < r.height];
    }""")
    assert one_line and truncated and same_line
    expect(nick).to_have_attribute("title", LONG_NICK)

    marks = message(page, "marks stay inside").locator(".nick")
    assert longest_mark_run(marks.inner_text()) <= 2
    assert longest_mark_run(marks.get_attribute("title") or "") > 2

    lines = message(page, "second line").locator(".text")
    assert lines.evaluate("(e) => e.innerText") == "first line\nsecond line"
    assert lines.evaluate("(e) => e.getClientRects().length") >= 2  # fits one line if joined
    assert_chat_clear_of_stream(page)
    screenshots(page, "room-rtl-long-names")
    assert viewer.errors == []


def test_text_typed_while_disconnected_is_kept_and_sent_on_reconnect(
        tmp_path: Path, open_tab: OpenTab) -> None:
    port, key_file = free_port(), tmp_path / "dev-key"
    server = start_server(port, key_file)
    try:
        tab = open_tab(f"http://127.0.0.1:{port}/", VIEWPORTS["phone"])
        page = tab.page
        join_room(tab, "Patient")
        server.kill()
        expect(page.get_by_test_id("connection-state")).to_have_attribute(
            "data-state", "reconnecting")
        send_text(page, "typed while away")
        expect(page.get_by_test_id("message-input")).to_have_value("typed while away")
        expect(page.get_by_test_id("unsent-notice")).to_be_visible()
        expect(page.get_by_test_id("reconnect-banner")).to_be_visible()
        screenshots(page, "room-disconnected-unsent")
        server = start_server(port, key_file)
        expect(page.get_by_test_id("connection-state")).to_have_attribute(
            "data-state", "open", timeout=20_000)
        expect(message(page, "typed while away").locator(".nick")).to_have_text("Patient")
        expect(page.get_by_test_id("message-input")).to_have_value("")
        expect(page.get_by_test_id("unsent-notice")).to_be_hidden()
        unexpected = [e for e in tab.errors if "WebSocket connection" not in e]
        assert unexpected == []
    finally:
        server.stop()


def test_a_second_tab_is_the_same_user_and_signs_the_first_out(
        plain: Served, open_tab: OpenTab) -> None:
    url = make_room(plain, "faces-twins", "Twins")
    first = open_tab(url, VIEWPORTS["phone"])
    join_room(first, "Twin")
    user_id = first.page.evaluate("localStorage.getItem('livecast.userId')")
    second = first.page.context.new_page()
    second.goto(url)
    expect(second.get_by_test_id("userid-input")).to_have_value(user_id)
    second.get_by_test_id("join-button").click()
    expect(second.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    state = first.page.get_by_test_id("connection-state")
    expect(state).to_have_attribute("data-state", "closed")
    expect(state).to_have_text("signed in elsewhere")
    expect(first.page.get_by_test_id("reconnect-banner")).to_have_text(
        "Disconnected: signed in elsewhere.")
    rejoin = first.page.get_by_test_id("join-button")
    expect(rejoin).to_have_text("Join again")
    screenshots(first.page, "room-signed-in-elsewhere")
    rejoin.click()  # and back: now the second tab is signed out
    expect(state).to_have_attribute("data-state", "open")
    expect(second.get_by_test_id("connection-state")).to_have_text("signed in elsewhere")
    second.close()


ROUND_STEP = r"^(1|2|5)0*$|^0\.0*(1|2|5)$"


def test_dashboard_greys_out_and_says_since_when_the_server_died(
        tmp_path: Path, open_tab: OpenTab) -> None:
    port, key_file = free_port(), tmp_path / "dev-key"
    server = start_server(port, key_file)
    try:
        viewer = open_tab(f"http://127.0.0.1:{port}/")
        join_room(viewer, "Watcher")
        dash = open_tab(f"http://127.0.0.1:{port}/dashboard")
        page = dash.page
        status = page.get_by_test_id("dashboard-status")
        expect(status).to_have_attribute("data-state", "ok")
        row = page.get_by_test_id("rooms-table").locator("tr[data-room=demo]")
        expect(row.locator("td").nth(3)).not_to_have_text("…")  # a rate needs two polls
        expect(row.locator("td.owner")).to_have_text("this process")
        for canvas in ("rate-canvas", "tick-canvas"):
            expect(page.locator(f"#{canvas}")).to_have_attribute("data-y-step",
                                                                  re.compile(ROUND_STEP))
        assert page.locator("body[data-stale]").count() == 0
        screenshots(page, "dashboard-live-node")
        server.kill()
        expect(page.locator("body[data-stale=true]")).to_be_attached()
        expect(status).to_have_attribute("data-state", "stale")
        expect(status).to_contain_text("server unreachable since")
        card = page.locator(".card").first
        assert card.evaluate("(c) => getComputedStyle(c).filter").startswith("grayscale")
        assert float(card.evaluate("(c) => getComputedStyle(c).opacity")) < 1
        expect(page.locator("#v-connections")).to_have_text("1")  # the last value, kept
        screenshots(page, "dashboard-server-dead")
        server = start_server(port, key_file)
        expect(status).to_have_attribute("data-state", "ok", timeout=10_000)
        assert page.locator("body[data-stale]").count() == 0
        unexpected = [e for e in dash.errors if "Failed to load resource" not in e]
        assert unexpected == []
    finally:
        server.stop()
