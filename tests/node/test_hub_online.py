"""The ``online`` tip of livecast/node/hub.py (docs/protocol.md, tips): the
room's online count pushed to its members in the member-tips frame, once per
tip interval at most, and only when it changed.  Real server, real clients;
joins that must fall in one interval are made in one synchronous block on
the server's loop, so no timing is assumed."""

from __future__ import annotations

from typing import Any

from livecast.client import Client
from livecast.node.connection import Connection
from tests.conftest import Live, LiveFactory


def conn_of(live: Live, user: str) -> Connection:
    (conn,) = live.node.sessions[user]
    return conn


async def member_frame(c: Client) -> list[dict[str, Any]]:
    """The tips of the next tips frame that holds member tips."""
    while True:
        tips: list[dict[str, Any]] = (await c.next_push("tips"))["tips"]
        if any(t["type"] in ("memberJoin", "memberQuit", "online") for t in tips):
            return tips


def kinds(tips: list[dict[str, Any]]) -> list[str]:
    return [t["type"] for t in tips]


async def test_a_join_burst_pushes_one_online_count_in_the_member_frame(
        live_factory: LiveFactory) -> None:
    live = await live_factory(tip_interval=0.2)
    gid = await live.room()
    observer = await live.client("observer", join=gid)
    tips = await member_frame(observer)
    assert tips == [{"type": "memberJoin", "members": ["observer"], "total": 1},
                    {"type": "online", "onlineMemberNum": 1}]
    names = [f"viewer{i}" for i in range(12)]
    for name in names:
        await live.client(name)
    guest = await live.client()
    for name in names:  # one synchronous block: one interval, one frame
        live.node.join(conn_of(live, name), gid)
    (guest_conn,) = (c for c in live.node.connections if not c.logged_in)
    live.node.join(guest_conn, gid)
    tips = await member_frame(observer)
    assert kinds(tips) == ["memberJoin", "online"]
    assert tips[0]["total"] == 13 and sorted(tips[0]["members"]) == sorted(names)
    assert tips[1] == {"type": "online", "onlineMemberNum": 14}
    assert (await guest.get_online_member_num(gid))["onlineMemberNum"] == 14


async def test_joins_and_quits_that_cancel_out_push_no_online_count(
        live_factory: LiveFactory) -> None:
    live = await live_factory(tip_interval=0.2)
    gid = await live.room()
    observer = await live.client("observer", join=gid)
    await member_frame(observer)
    await live.client("alice")
    await live.client("bob", join=gid)
    tips = await member_frame(observer)
    assert tips[-1] == {"type": "online", "onlineMemberNum": 2}
    live.node.quit(conn_of(live, "bob"), gid)
    live.node.join(conn_of(live, "alice"), gid)
    tips = await member_frame(observer)
    assert kinds(tips) == ["memberJoin", "memberQuit"]   # still 2 people: no online tip
    await live.clients[-1].quit(gid)  # bob is not in the room: nothing changes
    live.node.quit(conn_of(live, "alice"), gid)
    tips = await member_frame(observer)
    assert tips == [{"type": "memberQuit", "members": ["alice"], "total": 1},
                    {"type": "online", "onlineMemberNum": 1}]
