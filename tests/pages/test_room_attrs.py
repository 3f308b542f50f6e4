"""Group attributes in real Chromium: the demo page shows the ``pinned``
attribute set by the app backend over REST, and livecast.js exposes the
attributes (join, tip events, getGroupAttributes, member writes)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.pages.conftest import OpenTab, Served, join_room, screenshot

G = "group_open_http_svc"

CLIENT = """async () => {
  const lc = await import("/static/livecast.js");
  const sig = await (await fetch("/dev/usersig", {method: "POST",
      body: JSON.stringify({userId: "attr-user"})})).json();
  const c = new lc.LivecastClient({sdkAppId: sig.sdkAppId, userId: "attr-user",
                                   userSig: sig.userSig});
  window.attrEvents = [];
  c.on("groupAttributes", (e) => window.attrEvents.push(e));
  await c.connect();
  const joined = await c.join("demo");
  window.client = c;
  return {code: joined.code, groupAttributes: joined.groupAttributes, attrSeq: joined.attrSeq};
}"""


def test_pinned_attribute_appears_changes_and_goes(plain: Served, open_tab: OpenTab) -> None:
    plain.rest(G, "clear_group_attr", {"GroupId": "demo"})
    alice = open_tab(plain.base + "/")
    join_room(alice, "Alice")
    pinned = alice.page.get_by_test_id("pinned-message")
    expect(pinned).to_be_hidden()
    text = 'Today: <b>50% off</b> & "free" shipping'
    plain.rest(G, "modify_group_attr", {"GroupId": "demo", "GroupAttr": [
        {"key": "pinned", "value": text}, {"key": "stage", "value": "intro"}]})
    expect(pinned).to_be_visible()
    expect(alice.page.get_by_test_id("pinned-text")).to_have_text(text)
    expect(pinned.locator("b")).to_have_count(0)  # shown as text, never as HTML
    screenshot(alice.page, "room-pinned")
    late = open_tab(plain.base + "/")  # joins after the write: gets it with its join
    join_room(late, "Late")
    expect(late.page.get_by_test_id("pinned-text")).to_have_text(text)
    plain.rest(G, "modify_group_attr", {"GroupId": "demo", "GroupAttr": [
        {"key": "pinned", "value": "Next up: Q&A"}]})
    for tab in (alice, late):
        expect(tab.page.get_by_test_id("pinned-text")).to_have_text("Next up: Q&A")
    plain.rest(G, "delete_group_attr", {"GroupId": "demo", "GroupAttr": [{"key": "pinned"}]})
    for tab in (alice, late):
        expect(tab.page.get_by_test_id("pinned-message")).to_be_hidden()
    assert alice.errors == [] and late.errors == []


def test_livecast_js_exposes_the_attributes(plain: Served, open_tab: OpenTab) -> None:
    plain.rest(G, "set_group_attr", {"GroupId": "demo", "GroupAttr": [
        {"key": "product", "value": "sku-1"}]})
    page = open_tab(plain.base + "/").page
    joined = page.evaluate(CLIENT)
    assert joined["code"] == 0 and joined["groupAttributes"] == {"product": "sku-1"}
    seq = joined["attrSeq"]
    plain.rest(G, "modify_group_attr", {"GroupId": "demo", "GroupAttr": [
        {"key": "stage", "value": "live"}]})
    page.wait_for_function("window.attrEvents.length === 2", timeout=5000)
    events = page.evaluate("window.attrEvents")
    assert events == [
        {"groupId": "demo", "groupAttributes": {"product": "sku-1"}, "attrSeq": seq},
        {"groupId": "demo", "groupAttributes": {"product": "sku-1", "stage": "live"},
         "attrSeq": seq + 1}]
    assert page.evaluate("window.client.groupAttributes('demo')") == {
        "product": "sku-1", "stage": "live"}
    got = page.evaluate("window.client.getGroupAttributes('demo', ['stage'])")
    assert (got["code"], got["groupAttributes"]) == (0, {"stage": "live"})
    refused = page.evaluate("window.client.setGroupAttributes('demo', {pinned: 'x'})")
    assert refused["code"] == 10007  # members may not write on this server (the default)
    page.evaluate("window.client.close()")
