"""Webhooks from a real ``livecast serve`` process: a graceful stop reports
its members' exits (docs/webhooks.md)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from livecast.core.callbacks import AFTER_EXIT, AFTER_JOIN
from tests.test_restart import KEY, Server, kill_servers, start_servers
from tests.webhooks.conftest import Backend

CREATE = ("group_open_http_svc", "create_group")


def exited(business: Backend, gid: str) -> list[str]:
    return [m["Member_Account"] for s in business.of(AFTER_EXIT, GroupId=gid)
            for m in s.body["ExitMemberList"]]


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
        await business.wait_for(lambda: bool(business.of(AFTER_JOIN, GroupId=gid)))
        await server.stop(signal.SIGTERM)  # it exits once its callbacks are sent
        assert exited(business, gid) == ["leaver"]
        await client.close()
    finally:
        await kill_servers(servers)
