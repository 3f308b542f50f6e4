"""The dashboard behind LIVECAST_OPS_TOKEN in real Chromium, against a real
``livecast serve``: the login form, a wrong token refused, the right one
letting the live dashboard in (the token never in a URL), and the
admission-control card following a failed REST authentication."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.pages.conftest import OpenTab, Served, free_port, screenshots, start_server

TOKEN = "dashboard-ops-token-0123456789"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    key_file = tmp_path_factory.mktemp("key") / "dev-key"
    port = free_port()
    proc = start_server(port, key_file, LIVECAST_OPS_TOKEN=TOKEN)
    yield Served(proc, port, key_file)
    proc.stop()


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_the_dashboard_logs_in_with_the_token_and_runs(guarded: Served,
                                                       open_tab: OpenTab) -> None:
    assert http_status(guarded.base + "/dashboard/stats") == 401
    dash = open_tab(guarded.base + "/dashboard")
    page = dash.page
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.get_by_test_id("login-error")).to_be_hidden()
    page.get_by_test_id("login-token").fill("not-the-token-at-all")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_be_visible()
    page.get_by_test_id("login-token").fill(TOKEN)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("dashboard-status")).to_have_attribute("data-state", "ok")
    assert page.url == guarded.base + "/dashboard" and TOKEN not in page.url
    expect(page.locator("#a-auth-failures")).to_have_text("0 (0/s)")
    bad_call = (guarded.base + "/v4/group_open_http_svc/get_group_info?sdkappid=1400000000"
                "&identifier=administrator&usersig=forged&random=1&contenttype=json")
    with urllib.request.urlopen(urllib.request.Request(bad_call, data=b"{}"), timeout=5):
        pass
    expect(page.locator("#a-auth-failures")).to_contain_text("1 (")
    expect(page.locator("#a-connect")).to_contain_text("per IP 0")
    screenshots(page, "dashboard-with-token")
    problems = [e for e in dash.errors if "401" not in e]  # the login form's own status
    assert problems == []
