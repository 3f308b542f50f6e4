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
from livecast.core.profiles import IMAGE, NICK
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.settings import Settings
from livecast.store.redis import RedisStore
from tests.node.test_cluster_fates import until
from tests.node.test_fanout import Member, member, members
from tests.redis_fixtures import RedisServer

__all__ = ["members"]

GID = "changes"


async def redis_node(url: str, name: str) -> Node:
    n = Node(Settings(member_attrs=True), store=await RedisStore.open(url))
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


async def test_changes_made_at_once_on_two_processes_all_hold(
        pair: tuple[Node, Node]) -> None:
    """A ban on one process and a mute on the other, at the same time, again
    and again: each change reads the room and writes it back under the
    store's lock (Node._everywhere), so neither undoes the other."""
    a, b = pair
    for i in range(10):
        await asyncio.gather(a.ban(GID, [f"troll{i}"], 3600), b.mute(GID, [f"loud{i}"], 60))
    stored = await a.store.load_group(GID)
    assert stored is not None
    assert set(stored.bans) == {f"troll{i}" for i in range(10)}
    assert set(stored.mutes) == {f"loud{i}" for i in range(10)}


async def test_a_member_write_at_one_attr_seq_wins_on_one_process_only(
        pair: tuple[Node, Node], members: list[Member]) -> None:
    """Compare-and-set across processes: of two writes at the same attrSeq
    made at once on two processes, one is applied, the other is 10056."""
    a, b = pair
    writers = []
    for node, user in ((a, "alice"), (b, "bob")):
        m = await member(members)
        node.attach(m.conn)
        node.login(m.conn, user)
        node.join(m.conn, GID)
        writers.append(node.member_write_attrs(
            m.conn, GID, 0, lambda attrs, u=user: attrs.modify({"pinned": u})))
    answers = await asyncio.gather(*writers, return_exceptions=True)
    won = [r for r in answers if not isinstance(r, BaseException)]
    lost = [r for r in answers if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, answers
    assert isinstance(lost[0], LivecastError) and lost[0].code == Code.ATTR_STALE_WRITE
    stored = await a.store.load_group(GID)
    assert stored is not None and stored.attrs_seq == 1
    assert stored.attributes == won[0].get()


async def test_members_writes_spent_on_a_room_read_again_still_count(
        pair: tuple[Node, Node], members: list[Member]) -> None:
    """In a cluster each change reads the room again; the members' write
    budget of the room (10049 past it) is not given back by that read."""
    a, _b = pair
    m = await member(members)
    a.attach(m.conn)
    a.login(m.conn, "alice")
    a.join(m.conn, GID)
    codes = []
    for i in range(10):
        seq = a.rooms[GID].group.attrs.seq
        try:
            await a.member_write_attrs(m.conn, GID, seq,
                                       lambda attrs, i=i: attrs.modify({"k": str(i)}))
            codes.append(0)
        except LivecastError as err:
            codes.append(err.code)
    assert 0 in codes and Code.ATTR_WRITE_FREQ_LIMIT in codes


async def test_a_change_after_the_store_lost_its_data_keeps_the_room(
        pair: tuple[Node, Node], redis: RedisServer) -> None:
    """Redis restarted empty (no AOF): the rooms go on (cluster.py, invariant
    14), and a change made then stores the room again instead of dropping it."""
    a, b = pair
    with redis.client() as raw:
        raw.flushall()
    await a.modify_group(GID, {"Name": "after the loss"})
    stored = await a.store.load_group(GID)
    assert stored is not None and stored.name == "after the loss"
    assert GID in a.rooms and GID in b.rooms


async def test_after_a_resync_finds_the_data_lost_the_rooms_are_stored_again(
        pair: tuple[Node, Node], redis: RedisServer) -> None:
    """The resync after Redis came back empty keeps the rooms and stores them
    again, so a later change finds its room; a room destroyed after that
    stays destroyed, whatever change another process makes next."""
    a, b = pair
    await a.create_group("administrator", {"Name": "second"}, "second")
    with redis.client() as raw:
        raw.flushall()
    await a.link._resync_rooms()  # as after a reconnect
    assert await a.store.load_group(GID) is not None
    assert await a.store.load_group("second") is not None
    await a.modify_group(GID, {"Name": "changed after"})  # on the process that resynced
    assert GID in a.rooms and GID in b.rooms
    await a.destroy_group("second")
    with pytest.raises(LivecastError) as err:
        await b.modify_group("second", {"Name": "too late"})
    assert err.value.code == Code.GROUP_NOT_FOUND
    assert await a.store.load_group("second") is None


async def test_profiles_changed_at_once_on_two_processes_all_hold_everywhere(
        pair: tuple[Node, Node]) -> None:
    """A nick set on one process and an avatar on the other, at once: both
    are stored, and every process's cache ends with what is stored."""
    a, b = pair
    for i in range(5):
        await asyncio.gather(a.change_profile("u", nick=f"nick{i}"),
                             b.change_profile("u", avatar=f"av{i}"))
    stored = (await a.stored_profiles(["u"]))["u"]
    assert (stored[NICK], stored[IMAGE]) == ("nick4", "av4")
    await until(lambda: a.hub.profiles["u"] == b.hub.profiles["u"] == ("nick4", "av4"),
                "both processes at the stored profile")
