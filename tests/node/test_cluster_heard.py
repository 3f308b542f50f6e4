"""What a process hears from the others of its cluster is in force at once,
not only once the room or profile is read again from the store: a ban, a
mute or mute-all, a profile; a login elsewhere closes only older sessions;
a broadcast forwarded to its room's owner stays one.  The handlers are
called as the broker calls them, with another process's id as the origin."""

from __future__ import annotations

import asyncio
import time

import pytest

from livecast.backplane.broker import Kick, ProfileChanged, Tips
from livecast.core.fate import Address
from livecast.core.records import GroupRecord
from livecast.core.scheduler import Priority
from livecast.errors import Code, LivecastError
from livecast.node import cluster
from livecast.node.cluster import outgoing_fields, outgoing_of
from livecast.node.node import Node
from livecast.node.room import BroadcastOutgoing, Outgoing
from livecast.settings import Settings
from livecast.store.base import StoreError
from livecast.store.memory import MemoryStore
from tests.node.test_fanout import Member, logged_in, members

__all__ = ["members"]

PEER = "another-process"
BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


async def started(**settings: object) -> Node:
    node = Node(Settings(**settings))  # type: ignore[arg-type]
    await node.start()
    await node.create_group("administrator", {"Name": "r"}, "r")
    return node


def send_of(user: str, address: Address | None = None) -> Outgoing:
    return Outgoing(user, "", "", Priority.NORMAL, 1, BODY, "", address)


async def test_a_ban_heard_refuses_a_join_before_the_room_is_read_again(
        members: list[Member]) -> None:
    node = await started()
    try:
        bob = await logged_in(node, members, "bob")
        node.link.on_kick(PEER, Kick("bob", "banned", "r", "administrator", "",
                                     until=time.time() + 600))
        with pytest.raises(LivecastError) as refused:  # no await since: nothing read again
            node.join(bob.conn, "r")
        assert refused.value.code == Code.NO_PERMISSION
    finally:
        await node.close_collaborators()


@pytest.mark.parametrize("tip", [
    {"type": "mute", "member": "bob", "until": 4_000_000_000},
    {"type": "groupInfo", "changes": {"MuteAllMember": "On"}},
])
async def test_a_mute_heard_refuses_a_send_before_the_room_is_read_again(
        members: list[Member], tip: dict[str, object]) -> None:
    node = await started()
    try:
        bob = await logged_in(node, members, "bob")
        node.join(bob.conn, "r")
        node.check_send(bob.conn, "r", send_of("bob"))  # allowed before
        node.link.on_tips(PEER, Tips("r", [tip]))
        with pytest.raises(LivecastError) as refused:
            node.check_send(bob.conn, "r", send_of("bob"))
        assert refused.value.code == Code.MUTED
    finally:
        await node.close_collaborators()


def test_a_broadcast_forwarded_to_its_room_s_owner_stays_a_broadcast() -> None:
    msg = BroadcastOutgoing("host", "", "", Priority.HIGH, 1, BODY, "", Address(rest=1))
    again = outgoing_of(outgoing_fields(msg), Address(rest=1))
    assert again.wire(5, 1)["broadcast"] is True
    assert "broadcast" not in outgoing_of(outgoing_fields(send_of("bob")), Address()).wire(5, 1)


async def test_a_login_elsewhere_closes_only_the_sessions_heard_before_it(
        members: list[Member]) -> None:
    """Every process hears the multiLogin kicks in one order (one channel):
    a session whose own kick was heard is older than a login heard after it;
    one whose kick is still on its way is newer, and stays."""
    node = await started(multi_login=False)
    try:
        alice = await logged_in(node, members, "alice")
        node.link.on_kick(PEER, Kick("alice", "multiLogin", session=99))  # heard before hers
        assert not alice.conn.closing
        node.link.on_kick(node.node_id, Kick("alice", "multiLogin", session=alice.conn.id))
        assert not alice.conn.closing  # its own
        node.link.on_kick(PEER, Kick("alice", "multiLogin", session=100))  # a newer login
        assert alice.conn.closing
    finally:
        await node.close_collaborators()


async def test_of_two_logins_at_once_on_two_processes_exactly_one_stays(
        members: list[Member]) -> None:
    """Two processes, each with a new session of alice, hear both kicks in the
    same order: the session whose kick comes last stays, the other closes."""
    first, second = await started(multi_login=False), await started(multi_login=False)
    try:
        a = await logged_in(first, members, "alice")
        b = await logged_in(second, members, "alice")
        kicks = [(first.node_id, Kick("alice", "multiLogin", session=a.conn.id)),
                 (second.node_id, Kick("alice", "multiLogin", session=b.conn.id))]
        for node in (first, second):
            for origin, kick in kicks:  # as each hears them: first's, then second's
                node.link.on_kick(origin, kick)
        assert (a.conn.closing, b.conn.closing) == (True, False)
    finally:
        await first.close_collaborators()
        await second.close_collaborators()


async def test_a_profile_heard_is_used_at_once(members: list[Member]) -> None:
    node = await started()
    try:
        alice = await logged_in(node, members, "alice")
        node.link.on_profile(PEER, ProfileChanged("alice", "Alice", "https://a/img"))
        assert (alice.conn.nick, alice.conn.avatar) == ("Alice", "https://a/img")
    finally:
        await node.close_collaborators()


async def test_after_a_gap_in_the_subscriptions_a_later_login_still_closes_a_session(
        members: list[Member]) -> None:
    """Its own kick, lost in the gap, never comes back: the resync counts it
    as heard, so a login elsewhere afterwards closes it."""
    node = await started(multi_login=False)
    try:
        alice = await logged_in(node, members, "alice")  # its kick lost: not heard
        node.link.resync_later()
        await node.link._resync()
        node.link.on_kick(PEER, Kick("alice", "multiLogin", session=5))
        assert alice.conn.closing
    finally:
        await node.close_collaborators()


class _Failing(MemoryStore):
    """The in-memory store, whose room reads fail while ``failing``."""

    failing = True

    async def load_group(self, group_id: str) -> GroupRecord | None:
        if self.failing:
            raise StoreError("the store is away")
        return await super().load_group(group_id)


async def test_a_room_whose_read_failed_after_a_change_is_read_again() -> None:
    store = _Failing()
    store.failing = False
    node = Node(Settings(), store=store)
    await node.start()
    try:
        await node.create_group("administrator", {"Name": "r"}, "r")
        store.failing = True
        node.link.on_tips(PEER, Tips("r", []))  # a change elsewhere: read again, and fails
        for _ in range(1000):  # the read runs in a task of its own
            if "r" in node.link.reread:
                break
            await asyncio.sleep(0)
        assert node.link.reread == {"r"}
        store.failing = False
        await node.link._reread()  # the next sweep's
        assert node.link.reread == set()
    finally:
        await node.close_collaborators()


async def test_the_ids_found_missing_stay_bounded_when_the_store_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "MAX_MISSES", 3)
    node = Node(Settings(), store=_Failing())
    await node.start()
    try:
        for i in range(10):
            assert await node.link.find(f"nowhere-{i}", fresh=True) is False
        assert len(node.link._misses) == 3
    finally:
        await node.close_collaborators()
