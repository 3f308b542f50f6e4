"""Likes add up on a plain ``livecast serve``: no callback URL, no second
process.  The server counts likes in-process (docs/counter.md) and the total
reaches every page within the 3 to 5 s write-back, plus the page's own
500 ms batching."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.pages.conftest import OpenTab, Served, join_room

TOTAL_WITHIN_MS = 6_000  # the promise: a click reaches another page's total within 6 s


def test_likes_clicked_on_one_page_reach_the_other_on_the_default_server(
        plain: Served, open_tab: OpenTab) -> None:
    alice = open_tab(plain.base + "/")
    bob = open_tab(plain.base + "/")
    join_room(alice, "Alice")
    join_room(bob, "Bob")
    total = bob.page.get_by_test_id("like-total")
    start = int(total.inner_text())
    for _ in range(7):
        alice.page.get_by_test_id("like-button").click()
    expect(alice.page.get_by_test_id("like-total")).to_have_text(str(start + 7))
    expect(total).to_have_text(str(start + 7), timeout=TOTAL_WITHIN_MS)
    expect(total).to_have_attribute("data-server", str(start + 7))
    expect(alice.page.get_by_test_id("like-total")).to_have_attribute(
        "data-server", str(start + 7))
    for _ in range(3):
        bob.page.get_by_test_id("like-button").click()
    expect(alice.page.get_by_test_id("like-total")).to_have_text(
        str(start + 10), timeout=TOTAL_WITHIN_MS)
    plain_total = plain.rest("group_open_http_svc", "get_group_info", {
        "GroupIdList": ["demo"], "ResponseFilter": {"AppDefinedDataFilter_Group": ["likes"]}})
    assert plain_total["GroupInfo"][0]["AppDefinedData"] == [  # type: ignore[index]
        {"Key": "likes", "Value": str(start + 10)}]
    assert alice.errors == [] and bob.errors == []
