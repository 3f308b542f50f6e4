"""Webhooks in a cluster: one callback per event, not one per process.

Three ``livecast serve`` processes on one real redis-server, all pointed at
one fake business backend (a real aiohttp app on loopback).  A room created
on a, a member joining on b, a send made on c (not the room's owner: it is
forwarded), the room destroyed on b: each event's callback arrives exactly
once.  "Not twice" is checked after a barrier: a room created on each
process afterwards, whose three after-create callbacks are awaited, so a
duplicate still on its way would have had the same time to arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from livecast.client import text
from livecast.core.callbacks import (
    AFTER_CREATE,
    AFTER_DESTROYED,
    AFTER_EXIT,
    AFTER_JOIN,
    AFTER_SEND,
    BEFORE_JOIN,
    BEFORE_SEND,
)
from tests.node.test_cluster import GID, member
from tests.redis_fixtures import start_server
from tests.test_restart import Server, cluster_env, kill_servers, start_servers
from tests.webhooks.conftest import Backend, serve_callbacks

CREATE = ("group_open_http_svc", "create_group")


@pytest.fixture
async def business() -> AsyncIterator[Backend]:
    b = Backend()
    b.server = await serve_callbacks(b.handle)
    yield b
    b.release.set()
    await b.server.close()


@pytest.fixture
async def hooked(business: Backend, tmp_path: Path) -> AsyncIterator[list[Server]]:
    redis = start_server(tmp_path)
    servers: list[Server] = []
    try:
        env = cluster_env(redis.url, tmp_path, LIVECAST_CALLBACK_URL=business.url)
        await start_servers(env, 3, servers)
        yield servers
    finally:
        await kill_servers(servers)
        redis.stop()


def joined(business: Backend, user: str) -> list[object]:
    return [m for s in business.of(AFTER_JOIN, GroupId=GID)
            for m in s.body.get("NewMemberList", []) if m.get("Member_Account") == user]


async def test_each_event_is_called_back_once(hooked: list[Server], business: Backend) -> None:
    a, b, c = hooked
    await a.ok(*CREATE, {"Type": "AVChatRoom", "GroupId": GID, "Name": "hooks"})  # a owns it
    viewer = await member(b, "viewer")
    sender = await member(c, "sender")
    r = await sender.send(GID, text("once"))
    assert r["code"] == 0, r
    await business.wait_count(AFTER_SEND, 1, GroupId=GID)
    await business.wait_for(lambda: bool(joined(business, "viewer")))
    await b.ok("group_open_http_svc", "destroy_group", {"GroupId": GID})
    await business.wait_count(AFTER_DESTROYED, 1, GroupId=GID)
    for i, s in enumerate(hooked):  # the barrier
        await s.ok(*CREATE, {"Type": "AVChatRoom", "GroupId": f"barrier-{i}", "Name": "b"})
    await business.wait_for(lambda: all(business.of(AFTER_CREATE, GroupId=f"barrier-{i}")
                                        for i in range(3)))
    assert len(business.of(AFTER_CREATE, GroupId=GID)) == 1
    assert len(business.of(BEFORE_JOIN, GroupId=GID)) == 2  # viewer on b, sender on c
    assert len(joined(business, "viewer")) == 1
    assert len(joined(business, "sender")) == 1
    assert len(business.of(BEFORE_SEND, GroupId=GID)) == 1
    sent = business.of(AFTER_SEND, GroupId=GID)
    assert len(sent) == 1 and sent[0].body["MsgSeq"] == r["msgSeq"]
    assert len(business.of(AFTER_DESTROYED, GroupId=GID)) == 1
    for x in (viewer, sender):
        await x.close()


async def test_a_ban_is_reported_by_every_process_that_removed_a_member(
        hooked: list[Server], business: Backend) -> None:
    """Members of the room on two processes, banned through one: each is
    reported (Kicked, by the admin) once, by the process it was on."""
    a, b, _c = hooked
    gid = "banned-both"
    await a.ok(*CREATE, {"Type": "AVChatRoom", "GroupId": gid, "Name": "ban"})
    members = []
    for server, user in ((a, "on-a"), (b, "on-b")):
        client, code = await server.client(user)
        assert code == 0 and (await client.join(gid))["code"] == 0
        members.append(client)
    await a.ok("group_open_http_svc", "ban_group_member",
               {"GroupId": gid, "Members_Account": ["on-a", "on-b"], "Duration": 600})

    def exited() -> list[str]:
        return [m["Member_Account"] for s in business.of(AFTER_EXIT, GroupId=gid)
                for m in s.body["ExitMemberList"]]
    await business.wait_for(lambda: sorted(exited()) == ["on-a", "on-b"])
    for seen in business.of(AFTER_EXIT, GroupId=gid):
        assert (seen.body["ExitType"], seen.body["Operator_Account"]) == ("Kicked", "administrator")
    for client in members:
        assert await client.wait_closed(10) == 4004
        await client.close()
