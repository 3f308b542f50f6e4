"""Users' profiles (Node, "profiles"; core/profiles.py): stored before they
are answered, read back at start (every one while few enough, else user by
user at login), and in a cluster on a real redis-server given to the user's
sessions on every process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from livecast.core.profiles import IMAGE, MAX_TAGS, NICK, merge
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.settings import Settings
from livecast.store.sqlite import SqliteStore
from tests.node.test_cluster_fates import until
from tests.node.test_cluster_recovery import close, history_node
from tests.node.test_fanout import Member, member, members
from tests.redis_fixtures import RedisServer

__all__ = ["members"]


def test_a_change_is_merged_into_what_is_stored() -> None:
    stored = {NICK: "A", "Tag_Profile_Custom_X": 1}
    assert merge(stored, avatar="a.png") == {NICK: "A", IMAGE: "a.png",
                                             "Tag_Profile_Custom_X": 1}
    assert merge(stored, nick="", tags={"Tag_Profile_Custom_X": "y"}) == {
        NICK: "", "Tag_Profile_Custom_X": "y"}
    full = {f"Tag_Profile_Custom_{i}": i for i in range(MAX_TAGS)}
    replaced = merge(full, nick="n", tags={"Tag_Profile_Custom_0": 9})
    assert len(replaced) == MAX_TAGS + 1 and replaced["Tag_Profile_Custom_0"] == 9
    with pytest.raises(LivecastError) as err:
        merge(full, tags={"Tag_Profile_Custom_new": 1})
    assert err.value.code == Code.BAD_PARAMETER


async def started(directory: Path) -> Node:
    node = Node(Settings(), store=await SqliteStore.open(directory))
    await node.start()
    return node


async def test_profiles_are_read_back_at_start_and_stamped_at_login(
        tmp_path: Path, members: list[Member]) -> None:
    node = await started(tmp_path)
    await node.change_profile("alice", "Alice", "a.png", {"Tag_Profile_Custom_Level": 3})
    await node.change_profile("alice", avatar="b.png")
    await node.close_collaborators()
    await node.store.close()
    again = await started(tmp_path)
    assert again.hub.profiles_complete and again.profile_known("alice")
    m = await member(members)
    again.attach(m.conn)
    again.login(m.conn, "alice")
    assert (m.conn.nick, m.conn.avatar) == ("Alice", "b.png")
    assert (await again.stored_profiles(["alice", "nobody"])) == {"alice": {
        NICK: "Alice", IMAGE: "b.png", "Tag_Profile_Custom_Level": 3}}
    await again.close_collaborators()
    await again.store.close()


async def test_past_the_cache_s_size_a_login_reads_its_user_s_profile(
        tmp_path: Path, members: list[Member], monkeypatch: pytest.MonkeyPatch) -> None:
    node = await started(tmp_path)
    for user in ("a", "b", "c"):
        await node.change_profile(user, user.upper())
    await node.close_collaborators()
    await node.store.close()
    monkeypatch.setattr("livecast.node.node.MAX_PROFILES", 2)
    again = await started(tmp_path)
    assert not again.hub.profiles_complete and not again.profile_known("c")
    await again.load_profile("c")  # what a login off the reader does first
    m = await member(members)
    again.attach(m.conn)
    again.login(m.conn, "c")
    assert m.conn.nick == "C"
    await again.close_collaborators()
    await again.store.close()


async def test_a_profile_changed_on_one_process_reaches_sessions_on_another(
        redis: RedisServer, members: list[Member]) -> None:
    a = await history_node(redis.url, "a")
    b = await history_node(redis.url, "b")
    try:
        m = await member(members)
        b.attach(m.conn)
        b.login(m.conn, "bob")
        assert await a.change_profile("bob", "Bobby", "bob.png") == ("Bobby", "bob.png")
        await until(lambda: (m.conn.nick, m.conn.avatar) == ("Bobby", "bob.png"),
                    "the change announced to b")
        third = await history_node(redis.url, "c")  # a process started later reads it
        try:
            assert third.hub.profiles["bob"] == ("Bobby", "bob.png")
        finally:
            await close(third)
    finally:
        await close(a, b)


async def test_a_profile_the_store_refuses_changes_nothing(
        tmp_path: Path, members: list[Member]) -> None:
    node = await started(tmp_path)
    await node.change_profile("alice", "Alice")
    m = await member(members)
    node.attach(m.conn)
    node.login(m.conn, "alice")
    await node.store.close()  # every later store call fails
    with pytest.raises(LivecastError) as err:
        await node.change_profile("alice", "Eve")
    assert err.value.code == Code.INTERNAL
    assert m.conn.nick == "Alice" and node.hub.profiles["alice"] == ("Alice", "")
    await node.close_collaborators()


async def test_concurrent_changes_of_one_profile_all_hold(tmp_path: Path) -> None:
    """Each change reads what is stored and writes it back whole: one at a
    time per user, so no change is lost."""
    node = await started(tmp_path)
    await asyncio.gather(*(node.change_profile("u", tags={f"Tag_Profile_Custom_{i}": i})
                           for i in range(10)))
    stored = (await node.stored_profiles(["u"]))["u"]
    assert stored == {f"Tag_Profile_Custom_{i}": i for i in range(10)}
    await node.close_collaborators()
    await node.store.close()
