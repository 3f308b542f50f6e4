"""The room page on a server with a configured secret key: there is no
development UserSig endpoint, so the page asks for a User ID and UserSig."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from livecast.core.usersig import mint
from tests.pages.conftest import (
    SDKAPPID,
    OpenTab,
    Served,
    free_port,
    message,
    screenshot,
    send_text,
    start_server,
)

KEY = "configured-key-for-page-tests-0123456789"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    key_file = tmp_path_factory.mktemp("key") / "unused"
    port = free_port()
    proc = start_server(port, key_file, LIVECAST_SECRET_KEY=KEY)
    served = Served(proc, port, key_file, KEY)
    served.rest("group_open_http_svc", "create_group",
                {"Type": "AVChatRoom", "Name": "Stage <one>", "GroupId": "stage-1"})
    yield served
    proc.stop()


def test_no_dev_usersig_endpoint_with_a_configured_key(keyed: Served) -> None:
    req = urllib.request.Request(f"{keyed.base}/dev/usersig", data=b'{"userId":"eve"}',
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code in (404, 405)
    err.value.close()
    assert not keyed.key_file.exists()  # no development key was made either


def test_the_page_asks_for_a_usersig_and_joins_with_a_good_one(
        keyed: Served, open_tab: OpenTab) -> None:
    tab = open_tab(keyed.base + "/?room=stage-1")
    page = tab.page
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.get_by_test_id("usersig-input")).to_be_visible()
    page.get_by_test_id("name-input").fill("Carol")
    page.get_by_test_id("userid-input").fill("carol")
    page.get_by_test_id("usersig-input").fill("not-a-usersig")
    screenshot(page, "room-join-configured-key")
    page.get_by_test_id("join-button").click()
    expect(page.get_by_test_id("join-error")).to_contain_text("UserSig refused")
    expect(page.get_by_test_id("message-input")).to_be_hidden()

    page.get_by_test_id("usersig-input").fill(mint(SDKAPPID, KEY, "carol", time.time(), 600))
    page.get_by_test_id("join-button").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#room-name")).to_have_text("Stage <one>")
    send_text(page, "hello from a configured key")
    expect(message(page, "hello from a configured key").locator(".nick")).to_have_text("Carol")
    unexpected = [e for e in tab.errors if "WebSocket connection" not in e]
    assert unexpected == []
