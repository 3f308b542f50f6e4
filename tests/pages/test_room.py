"""The demo live room and the dashboard in real Chromium, against
``livecast serve`` whose callbacks go to a running ``livecast counter``."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from playwright.sync_api import expect

from livecast.core.usersig import mint
from tests.pages.conftest import (
    PHONE,
    OpenTab,
    Stack,
    join_room,
    message,
    screenshot,
    screenshots,
    send_text,
)

# Runs in a page: a second client made with livecast.js itself, which floods the
# room with Lowest messages so that the room delivers some and drops the rest.
FLOOD = """async (n) => {
  const { LivecastClient, text } = await import("/static/livecast.js");
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "flood-bot"})})).json();
  const c = new LivecastClient({sdkAppId: sig.sdkAppId, userId: sig.userId, userSig: sig.userSig});
  await c.connect();
  await c.join("demo");
  const replies = await Promise.all(Array.from({length: n},
      (_, i) => c.send("demo", text(`flood ${i}`), {priority: "Lowest"})));
  c.close();
  return replies.map((r) => r.msgSeq > 0 ? "delivered" : r.dropReason);
}"""


def set_room_rate(stack: Stack, group_id: str, rate: int, burst: int) -> None:
    key = stack.key_file.read_text().strip()
    sig = mint(1400000000, key, "administrator", time.time())
    url = (f"{stack.base}/v4/livecast_ext/set_room_rate?sdkappid=1400000000"
           f"&identifier=administrator&usersig={sig}&random=1&contenttype=json")
    body = json.dumps({"GroupId": group_id, "Rate": rate, "Burst": burst}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as r:
        assert json.loads(r.read())["ErrorCode"] == 0


def counter_health(stack: Stack) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.counter_port}/healthz", timeout=5) as r:
        health: dict[str, object] = json.load(r)
        return health


def test_text_reaches_the_other_page_with_nick_as_text(stack: Stack, open_tab: OpenTab) -> None:
    alice = open_tab(stack.base + "/")
    bob = open_tab(stack.base + "/", PHONE)
    join_room(alice, "Alice")
    join_room(bob, "Bob")
    evil = 'hi <img src=x onerror="window.pwned=1"><b>bold</b> & "quoted"'
    send_text(alice.page, evil)
    for tab in (alice, bob):
        got = message(tab.page, "hi <img")
        expect(got).to_have_count(1)
        expect(got.locator(".nick")).to_have_text("Alice")
        expect(got.locator(".text")).to_have_text(evil)
        expect(got.locator("img[src=x], b")).to_have_count(0)
        expect(tab.page.get_by_test_id("online-count")).to_have_text("2")
    assert bob.page.evaluate("window.pwned") is None
    screenshot(bob.page, "room-phone")
    assert alice.errors == [] and bob.errors == []


def test_a_gift_appears_on_both_pages(stack: Stack, open_tab: OpenTab) -> None:
    alice = open_tab(stack.base + "/")
    bob = open_tab(stack.base + "/")
    join_room(alice, "Alice")
    join_room(bob, "Bob the Giver")
    bob.page.get_by_test_id("gift-button").click()
    for tab in (alice, bob):
        gift = message(tab.page, "sent a rose")
        expect(gift).to_have_count(1)
        expect(gift).to_contain_text("Bob the Giver")
        expect(gift).to_have_class(re.compile(r"\bgift\b"))
    assert alice.errors == [] and bob.errors == []


def test_likes_update_the_total_on_both_pages(stack: Stack, open_tab: OpenTab) -> None:
    """Likes go out batched (Low, {"type":"like","count":n}); the counter counts
    them from the before-send callbacks and writes the total back; both pages
    show it.  Needs the server's before-send webhook."""
    alice = open_tab(stack.base + "/")
    bob = open_tab(stack.base + "/")
    join_room(alice, "Alice")
    join_room(bob, "Bob")
    total = bob.page.get_by_test_id("like-total")
    start = int(total.inner_text())
    expect(alice.page.get_by_test_id("like-total")).to_have_text(str(start))
    for _ in range(7):
        alice.page.get_by_test_id("like-button").click()
    expect(alice.page.locator(".hearts .heart").first).to_be_attached()
    expect(alice.page.get_by_test_id("like-total")).to_have_text(str(start + 7))
    screenshot(alice.page, "room-likes")
    try:
        expect(total).to_have_text(str(start + 7), timeout=12_000)
    except AssertionError as exc:
        health = counter_health(stack)
        hint = ("\nthe server made no before-send callback to the counter"
                if health["callbacks"] == 0 else "")
        raise AssertionError(f"{exc}\ncounter /healthz: {health}{hint}") from None
    expect(alice.page.get_by_test_id("like-total")).to_have_attribute(
        "data-server", str(start + 7))
    assert alice.errors == [] and bob.errors == []


def test_dashboard_shows_the_room_and_live_rates(stack: Stack, open_tab: OpenTab) -> None:
    alice = open_tab(stack.base + "/")
    join_room(alice, "Alice")
    dash = open_tab(stack.base + "/dashboard")
    rows = dash.page.get_by_test_id("rooms-table").locator("tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-room", "demo")
    expect(rows.first.locator("td").nth(2)).to_have_text("1")
    send_text(alice.page, "hello dashboard")
    set_room_rate(stack, "demo", 5, 5)  # drops, however fast the callbacks answer
    try:
        fates = alice.page.evaluate(FLOOD, 200)
    finally:
        set_room_rate(stack, "demo", 40, 40)
    assert "delivered" in fates and "MsgFreqCtrl" in fates
    chart = dash.page.get_by_test_id("rate-chart")
    dash.page.wait_for_function(
        """() => { const d = document.querySelector('[data-testid=rate-chart]').dataset;
                   return Number(d.delivered) > 0 && Number(d.dropped) > 0; }""",
        polling=100, timeout=10_000)
    expect(chart.locator("canvas")).to_be_visible()
    expect(dash.page.get_by_text("Lowest").first).to_be_visible()
    lowest = rows.first.locator("td").nth(7)  # room, name, online, delivered/s, High..Lowest
    expect(lowest).to_have_attribute("title", re.compile(r"^[1-9][0-9,]* Lowest dropped"))
    expect(rows.first.locator("td").nth(4)).to_have_attribute("title", re.compile(r"^0 High"))
    expect(rows.first.locator("td.owner")).to_have_text("this process")
    hook = dash.page.get_by_test_id("webhook-latency").locator(
        "tr[data-command='Group.CallbackBeforeSendMsg']")
    expect(hook.locator("td").nth(2)).to_have_text(re.compile(r"^≤ [0-9.]+ (ms|s)$"))
    expect(hook.locator("td").nth(3)).to_have_text(re.compile(r"^≤ [0-9.]+ (ms|s)$"))
    expect(dash.page.locator("#w-breaker")).to_have_text("closed")
    screenshot(dash.page, "dashboard", full_page=True)
    screenshots(dash.page, "dashboard-under-drops")
    screenshot(alice.page, "room-desktop")
    assert dash.errors == [] and alice.errors == []
