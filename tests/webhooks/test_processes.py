"""Webhooks from real ``livecast serve`` processes: a ban made on one process
of a cluster reports the members removed on every process, and a graceful
stop reports its members' exits (docs/webhooks.md)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.redis_fixtures import start_server
from tests.test_restart import KEY, Server, cluster_env, kill_servers, start_servers
from tests.webhooks.conftest import Backend, serve_callbacks

CREATE = ("group_open_http_svc", "create_group")
EXIT = "Group.CallbackAfterMemberExit"
JOIN = "Group.CallbackAfterNewMemberJoin"


@pytest.fixture
async def business() -> AsyncIterator[Backend]:
    backend = Backend()
    backend.server = await serve_callbacks(backend.handle)
    yield backend
    backend.release.set()
    await backend.server.close()


@pytest.fixture
async def hooked(business: Backend, tmp_path: Path) -> AsyncIterator[list[Server]]:
    """Two processes of a cluster on a real redis-server, posting to ``business``."""
    redis = start_server(tmp_path)
    servers: list[Server] = []
    try:
        await start_servers(cluster_env(redis.url, tmp_path, LIVECAST_CALLBACK_URL=business.url),
                            2, servers)
        yield servers
    finally:
        await kill_servers(servers)
        redis.stop()


def exited(business: Backend, gid: str) -> list[str]:
    return [m["Member_Account"] for s in business.of(EXIT, GroupId=gid)
            for m in s.body["ExitMemberList"]]


async def test_a_ban_reports_the_members_removed_on_every_process(
        hooked: list[Server], business: Backend) -> None:
    a, b = hooked
    gid = "banned-both"
    await a.ok(*CREATE, {"Type": "AVChatRoom", "GroupId": gid, "Name": "ban"})
    members = []
    for server, user in ((a, "on-a"), (b, "on-b")):
        client, code = await server.client(user)
        assert code == 0 and (await client.join(gid))["code"] == 0
        members.append(client)
    await a.ok("group_open_http_svc", "ban_group_member",
               {"GroupId": gid, "Members_Account": ["on-a", "on-b"], "Duration": 600})
    await business.wait_for(lambda: sorted(exited(business, gid)) == ["on-a", "on-b"])
    for seen in business.of(EXIT, GroupId=gid):
        assert (seen.body["ExitType"], seen.body["Operator_Account"]) == ("Kicked", "administrator")
    for client in members:
        assert await client.wait_closed(10) == 4004
        await client.close()


async def test_a_graceful_stop_reports_its_members_exits(
        business: Backend, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_SECRET_KEY=KEY, LIVECAST_SHUTDOWN_GRACE="2",
               LIVECAST_DATA_DIR=str(tmp_path / "data"), LIVECAST_CALLBACK_URL=business.url)
    servers: list[Server] = []
    try:
        await start_servers(env, 1, servers)
        (server,) = servers
        gid = "stopping"
        await server.ok(*CREATE, {"Type": "AVChatRoom", "GroupId": gid, "Name": "stop"})
        client, code = await server.client("leaver")
        assert code == 0 and (await client.join(gid))["code"] == 0
        await business.wait_for(lambda: bool(business.of(JOIN, GroupId=gid)))
        await server.stop(signal.SIGTERM)  # it exits once its callbacks are sent
        assert exited(business, gid) == ["leaver"]
        await client.close()
    finally:
        await kill_servers(servers)
