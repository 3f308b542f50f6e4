"""The dashboard's Cluster card in real Chromium: two ``livecast serve``
processes on one real redis-server, the card on either lists both (this one
marked) with the rooms each owns, and the rooms table names the demo room's
owner; on a single process the card stays hidden."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.pages.conftest import (
    OpenTab,
    Proc,
    Served,
    free_port,
    screenshot,
    screenshots,
    start_server,
)
from tests.redis_fixtures import RedisServer


@pytest.fixture
def pair(redis: RedisServer, tmp_path: Path) -> Iterator[list[Served]]:
    key_file = tmp_path / "dev-key"
    served: list[Served] = []
    try:
        for _ in range(2):  # one after the other: the first makes the key and the demo room
            port = free_port()
            served.append(Served(start_server(port, key_file, LIVECAST_REDIS_URL=redis.url),
                                 port, key_file))
        yield served
    finally:
        for s in served:
            s.proc.stop()


def node_id_part(proc: Proc) -> str:
    """Node ids hold the process id: ``host-PID-random``."""
    return f"-{proc.popen.pid}-"


def test_the_cluster_card_lists_both_processes_and_the_owner(
        pair: list[Served], open_tab: OpenTab) -> None:
    owner, other = pair  # the first process created the demo room and holds its lease
    dash = open_tab(other.base + "/dashboard")
    page = dash.page
    card = page.get_by_test_id("cluster")
    expect(card).to_be_visible()
    rows = page.get_by_test_id("cluster-nodes").locator("tr")
    expect(rows).to_have_count(2)
    mine = rows.filter(has_text=node_id_part(other.proc))
    theirs = rows.filter(has_text=node_id_part(owner.proc))
    expect(mine).to_have_count(1)
    expect(theirs).to_have_count(1)
    expect(mine.locator(".badge")).to_have_text("this process")
    expect(theirs.locator(".badge")).to_have_count(0)
    expect(theirs.locator("td.owns")).to_have_text("demo")
    expect(mine.locator("td.owns")).to_have_text("")
    expect(page.locator("#cluster-note")).to_have_text("(2 processes)")
    owner_id = theirs.get_attribute("data-node")
    assert owner_id is not None and node_id_part(owner.proc) in owner_id
    room = page.get_by_test_id("rooms-table").locator("tr[data-room=demo]")
    expect(room.locator("td.owner")).to_have_text(owner_id)
    screenshots(page, "dashboard-cluster")
    screenshot(page, "dashboard-cluster-full", full_page=True)
    assert dash.errors == []


def test_a_single_process_shows_no_cluster_card(plain: Served, open_tab: OpenTab) -> None:
    dash = open_tab(plain.base + "/dashboard")
    expect(dash.page.get_by_test_id("dashboard-status")).to_have_attribute("data-state", "ok")
    expect(dash.page.get_by_test_id("cluster")).to_be_hidden()
    assert dash.errors == []
