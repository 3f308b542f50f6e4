"""Durable rooms on a running node: a store that fails refuses changes with
10002 and makes /readyz answer 503 (nothing is acknowledged that was not
stored); the room limit answers 10036; store latency and errors are metrics.

The store is a real RedisStore on a redis-server of this test's own, stopped
and started again to make it fail and recover.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecast.gateway.app import make_app
from livecast.gateway.front import Front
from livecast.gateway.keys import NODE
from livecast.node.node import Node
from livecast.runner import Listener
from livecast.store.base import Observer, Store, prometheus_observer
from livecast.store.redis import RedisStore
from livecast.store.sqlite import SqliteStore
from tests.backplane.conftest import until_true
from tests.conftest import Live, base_settings
from tests.redis_fixtures import RedisServer


async def serve_on(store_of: Callable[[Observer], Awaitable[Store]],
                   **overrides: object) -> Live:
    settings = base_settings(**overrides)

    async def open_store(node: Node) -> Store:
        m = node.metrics
        return await store_of(prometheus_observer(m.store_seconds, m.store_errors))

    app = make_app(settings, open_store=open_store)
    server = Listener(app, Front, shutdown_timeout=settings.shutdown_grace)
    await server.start("127.0.0.1", 0)
    return Live(server, app[NODE], settings)


async def ready(live: Live) -> int:
    async with aiohttp.ClientSession() as http, http.get(live.url("/readyz")) as resp:
        return resp.status


async def test_a_failed_store_refuses_changes_with_10002_then_recovers(
        redis: RedisServer) -> None:
    # a Redis that keeps its data across the restart below, as a store's must:
    # one that loses it loses the rooms, and a change of a room no longer
    # stored is refused (10010), never writes it back half
    redis.stop()
    redis.extra = ("--appendonly", "yes", "--appendfsync", "always")
    redis.start()
    live = await serve_on(lambda observe: RedisStore.open(redis.url, observe=observe))
    try:
        await live.rest("group_open_http_svc", "create_group",
                        {"Type": "AVChatRoom", "GroupId": "r1", "Name": "before"})
        viewer = await live.client("viewer", join="r1")
        assert await ready(live) == 200
        redis.stop()
        r = await live.rest("group_open_http_svc", "modify_group_base_info",
                            {"GroupId": "r1", "Name": "during"})
        assert r["ErrorCode"] == 10002 and "stored" in r["ErrorInfo"]
        r = await live.rest("group_open_http_svc", "create_group",
                            {"Type": "AVChatRoom", "GroupId": "r2", "Name": "never"})
        assert r["ErrorCode"] == 10002
        assert await ready(live) == 503
        info = await live.rest("group_open_http_svc", "get_group_info", {"GroupIdList": ["r1"]})
        assert info["GroupInfo"][0]["Name"] == "before"  # nothing changed
        assert "r2" not in live.node.rooms
        # the member stays connected and can still chat: messages are not stored
        r = await viewer.request("ping")
        assert r["code"] == 0
        errors = live.node.metrics.registry.get_sample_value(
            "livecast_store_errors_total", {"op": "put_settings"})
        assert errors is not None and errors >= 1
        redis.start()
        r = await live.rest("group_open_http_svc", "modify_group_base_info",
                            {"GroupId": "r1", "Name": "after"})
        assert r["ErrorCode"] == 0
        assert await ready(live) == 200
        stored = await RedisStore.open(redis.url)
        try:
            record = await stored.load_group("r1")
            assert record is not None and record.name == "after"
        finally:
            await stored.close()
    finally:
        for c in live.clients:
            await c.close()
        await live.server.close()


async def test_the_room_limit_answers_10036(tmp_path: Path) -> None:
    live = await serve_on(lambda observe: SqliteStore.open(tmp_path, observe=observe),
                          max_rooms=2)
    try:
        for gid in ("a", "b"):
            r = await live.rest("group_open_http_svc", "create_group",
                                {"Type": "AVChatRoom", "GroupId": gid, "Name": gid})
            assert r["ErrorCode"] == 0
        r = await live.rest("group_open_http_svc", "create_group",
                            {"Type": "AVChatRoom", "GroupId": "c", "Name": "c"})
        assert r["ErrorCode"] == 10036 and "LIVECAST_MAX_ROOMS" in r["ErrorInfo"]
        await live.rest("group_open_http_svc", "destroy_group", {"GroupId": "a"})
        r = await live.rest("group_open_http_svc", "create_group",
                            {"Type": "AVChatRoom", "GroupId": "c", "Name": "c"})
        assert r["ErrorCode"] == 0  # a destroyed room frees its place
        seconds = live.node.metrics.registry.get_sample_value(
            "livecast_store_duration_seconds_count", {"op": "put_group"})
        assert seconds == 3  # every create was stored, and timed
    finally:
        await live.server.close()


class LockHolder:
    """Another process holding the SQLite file's write lock until ``release``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LockHolder:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(self.path / "livecast.db"), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        assert await self.proc.stdout.readline() == b"locked\n"
        return self

    async def release(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def store_thread_held(live: Live) -> asyncio.Future[dict[str, Any]]:
    """A create_group whose write waits for the lock another process holds:
    the store's one thread is held by it (about 5 s), so a read asked now
    waits behind it.  Returns the create's answer to come (10002)."""
    sample = live.node.metrics.registry.get_sample_value
    reads = sample("livecast_store_duration_seconds_count", {"op": "load_group"}) or 0
    create = asyncio.ensure_future(live.rest(
        "group_open_http_svc", "create_group",
        {"Type": "AVChatRoom", "GroupId": "held", "Name": "held"}))

    async def writing() -> bool:  # its id checked: its write is next on the thread
        return bool((sample("livecast_store_duration_seconds_count",
                            {"op": "load_group"}) or 0) > reads)
    await until_true(writing)
    return create


async def test_a_sqlite_file_another_process_holds_locked_is_not_ready(tmp_path: Path) -> None:
    """Every change is refused (10002) while another process holds the file's
    write lock, so /readyz answers 503 too, and 200 once it lets go."""
    live = await serve_on(lambda observe: SqliteStore.open(tmp_path, observe=observe))
    try:
        async with LockHolder(tmp_path) as holder:
            r = await live.rest("group_open_http_svc", "create_group",
                                {"Type": "AVChatRoom", "GroupId": "r1", "Name": "r1"})
            assert r["ErrorCode"] == 10002
            assert await ready(live) == 503
            await holder.release()
            assert await ready(live) == 200
            r = await live.rest("group_open_http_svc", "create_group",
                                {"Type": "AVChatRoom", "GroupId": "r1", "Name": "r1"})
            assert r["ErrorCode"] == 0
    finally:
        await live.server.close()


async def test_a_login_sent_in_time_is_not_cut_off_while_its_profile_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The login deadline counts until the login is sent: one whose profile
    read waits (here behind a write held by another process's lock) past the
    deadline still logs in, and the connection stays."""
    monkeypatch.setattr("livecast.node.hub.MAX_PROFILES", 1)
    live = await serve_on(lambda observe: SqliteStore.open(tmp_path, observe=observe),
                          login_timeout=0.5)
    try:
        for user in ("erin", "fred"):  # past the cache's size: a login reads its profile
            r = await live.rest("profile", "portrait_set", {
                "From_Account": user,
                "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": user.title()}]})
            assert r["ErrorCode"] == 0, r
        assert not live.node.profile_known("erin")
        async with LockHolder(tmp_path):
            create = await store_thread_held(live)
            erin = await live.client("erin")  # its profile read waits behind the write
            assert (await create)["ErrorCode"] == 10002  # the write gave up: the lock is held
            assert (await erin.request("getMyProfile"))["nick"] == "Erin"
            assert (await erin.ping())["code"] == 0  # not closed 4002
    finally:
        for c in live.clients:
            await c.close()
        await live.server.close()


async def test_a_guest_whose_last_room_is_quit_after_the_deadline_gets_a_new_one(
        tmp_path: Path) -> None:
    """A guest's requests still being carried out at the login deadline (here
    a join of an unknown room, whose lookup waits behind a write held by
    another process's lock, then a quit of its last room): the quit arms a
    new deadline, and the guest may join again within it."""
    live = await serve_on(lambda observe: SqliteStore.open(tmp_path, observe=observe),
                          login_timeout=0.5)
    try:
        gid = await live.room("r1")
        guest = await live.client(None, join=gid)
        async with LockHolder(tmp_path):
            create = await store_thread_held(live)
            unknown = asyncio.ensure_future(guest.join("nowhere"))  # looked up behind the write
            quit_ = asyncio.ensure_future(guest.quit(gid))          # after it: its last room
            assert (await unknown)["code"] == 10010
            assert (await quit_)["code"] == 0
            assert (await guest.join(gid))["code"] == 0  # within the new deadline: stays
            assert (await guest.ping())["code"] == 0
            assert (await create)["ErrorCode"] == 10002
    finally:
        for c in live.clients:
            await c.close()
        await live.server.close()
