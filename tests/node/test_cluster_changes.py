"""Room changes made on two processes of a cluster, on a real redis-server
with the Redis store: a change made on one process is never undone by a
change made on another before its announcement arrived, a room destroyed
on one process is not brought back by a change racing it on another, and a
group id created at once on two processes is given to one of them only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from livecast.backplane.redis_broker import RedisBroker
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.settings import Settings
from livecast.store.redis import RedisStore
from tests.redis_fixtures import RedisServer

GID = "changes"


async def redis_node(url: str, name: str) -> Node:
    n = Node(Settings(), store=await RedisStore.open(url))
    n.join_cluster(RedisBroker(url, name))
    await n.start()
    return n


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    a = await redis_node(redis.url, "a")
    await a.create_group("administrator", {"Name": "r"}, GID)
    b = await redis_node(redis.url, "b")
    assert GID in b.rooms
    yield a, b
    for n in (b, a):
        await n.close_collaborators()
        await n.store.close()


async def test_a_change_on_another_process_does_not_undo_one_made_here(
        pair: tuple[Node, Node]) -> None:
    """b changes the room right after a did, before a's announcement reached
    it: b's change is applied to the room as stored, a's ban and name kept."""
    a, b = pair
    await a.ban(GID, ["troll"], 3600)
    await a.modify_group(GID, {"Name": "renamed"})
    await b.mute(GID, ["other"], 60)
    stored = await a.store.load_group(GID)
    assert stored is not None
    assert "troll" in stored.bans and "other" in stored.mutes and stored.name == "renamed"
    assert "troll" in b.rooms[GID].group.bans  # b's copy was read again for its change


async def test_a_change_racing_a_destroy_elsewhere_does_not_bring_the_room_back(
        pair: tuple[Node, Node]) -> None:
    a, b = pair
    changed, destroyed = await asyncio.gather(
        a.modify_group(GID, {"Name": "late"}), b.destroy_group(GID), return_exceptions=True)
    assert destroyed is None, destroyed
    if isinstance(changed, BaseException):  # the change came after: refused, not stored
        assert isinstance(changed, LivecastError) and changed.code == Code.GROUP_NOT_FOUND
    assert await a.store.load_group(GID) is None
    assert GID not in (await a.store.load_all()).groups
    # the id is free again, on either process
    created = await b.create_group("administrator", {"Name": "again"}, GID)
    assert created.group_id == GID


async def test_a_group_id_created_on_two_processes_at_once_is_given_once(
        pair: tuple[Node, Node]) -> None:
    a, b = pair
    answers = await asyncio.gather(
        a.create_group("alice", {"Name": "x"}, "twice"),
        b.create_group("bob", {"Name": "y"}, "twice"), return_exceptions=True)
    made = [r for r in answers if not isinstance(r, BaseException)]
    refused = [r for r in answers if isinstance(r, BaseException)]
    assert len(made) == 1 and len(refused) == 1, answers
    assert isinstance(refused[0], LivecastError)
    assert refused[0].code == Code.GROUP_ID_TAKEN
    stored = await a.store.load_group("twice")
    assert stored is not None and stored.owner == made[0].owner
