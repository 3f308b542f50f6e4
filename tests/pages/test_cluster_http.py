"""The dashboard's JSON in a cluster: two real ``livecast serve`` processes on
one real redis-server; ``/dashboard/stats`` on either lists both processes
(from their heartbeats) with their members and the rooms each owns, and the
rooms table names the owner.  On a single process there is no cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecast.client import Client
from tests.conftest import Live
from tests.node.test_cluster import member
from tests.redis_fixtures import RedisServer
from tests.test_restart import Server, cluster_env, kill_servers, start_servers, until

GID = "live-1"  # the room tests.node.test_cluster.member joins



@pytest.fixture
async def pair(redis: RedisServer, tmp_path: Path) -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    await start_servers(cluster_env(redis.url, tmp_path), 2, servers)
    yield servers
    await kill_servers(servers)


async def stats_of(s: Server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(s.base + "/dashboard/stats") as resp:
        assert resp.status == 200
        found: dict[str, Any] = await resp.json()
        return found


def node_of(s: Server, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The heartbeat row of ``s``'s process (node ids hold the process id)."""
    assert s.proc is not None
    rows = [n for n in nodes if f"-{s.proc.pid}-" in n["node"]]
    assert len(rows) == 1, nodes
    return rows[0]


async def test_stats_list_every_process_and_the_rooms_each_owns(pair: list[Server]) -> None:
    a, b = pair
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "Cluster room"})
    members: list[Client] = [await member(a, "on-a"), await member(b, "on-b1"),
                             await member(b, "on-b2")]
    seen: dict[str, Any] = {}

    async def both_listed() -> bool:
        seen.update(await stats_of(b))
        nodes = seen["nodes"]
        return (len(nodes) == 2 and node_of(a, nodes)["members"] == 1
                and node_of(b, nodes)["members"] == 2)

    await until(both_listed, "both processes in b's cluster card")
    nodes = seen["nodes"]
    owner, here = node_of(a, nodes), node_of(b, nodes)
    assert nodes[0] == here  # this process first
    assert here["here"] is True and owner["here"] is False
    assert owner["owns"] == [GID] and owner["owned"] == 1 and owner["rooms"] == 1
    assert here["owns"] == [] and here["owned"] == 0 and here["rooms"] == 1
    assert seen["clusterError"] is None
    room = next(r for r in seen["roomList"] if r["groupId"] == GID)
    assert room["owner"] == owner["node"] and room["online"] == 3
    on_a = await stats_of(a)  # the owner's own view: itself first, owning the room
    assert node_of(a, on_a["nodes"])["here"] is True and on_a["nodes"][0]["node"] == owner["node"]
    assert next(r for r in on_a["roomList"] if r["groupId"] == GID)["owner"] == "this process"
    for c in members:
        await c.close()


async def test_a_single_process_has_no_cluster(live: Live) -> None:
    async with aiohttp.ClientSession() as http, http.get(live.url("/dashboard/stats")) as resp:
        stats = await resp.json()
    assert stats["nodes"] is None and stats["clusterError"] is None
