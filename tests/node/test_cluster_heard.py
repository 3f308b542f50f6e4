"""What a process hears from the others of its cluster is in force at once,
not only once the room or profile is read again from the store: a ban, a
mute or mute-all, a profile, a newer login; and the room's owner asks the
send rule again of a send another process admitted.  The handlers are
called as the broker calls them, with another process's id as the origin."""

from __future__ import annotations

import time

import pytest

from livecast.backplane.broker import ForwardedSend, Kick, ProfileChanged, Tips
from livecast.core.fate import Address
from livecast.core.scheduler import Priority
from livecast.errors import Code, LivecastError
from livecast.node.cluster import outgoing_fields
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.settings import Settings
from tests.node.test_fanout import Member, member, members

__all__ = ["members"]

PEER = "another-process"
BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


async def started(**settings: object) -> Node:
    node = Node(Settings(**settings))  # type: ignore[arg-type]
    await node.start()
    await node.create_group("administrator", {"Name": "r"}, "r")
    return node


async def logged_in(node: Node, made: list[Member], user: str) -> Member:
    m = await member(made)
    node.attach(m.conn)
    node.login(m.conn, user)
    return m


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


async def test_the_owner_refuses_a_forwarded_send_of_a_sender_muted_since() -> None:
    """The sender's process checked the rule against what it knew; the owner
    knows of the mute: the send ends 10017, not delivered."""
    node = await started()
    try:
        await node.mute("r", ["bob"], 600)
        waiter, answer = node.rest_waiter()
        msg = send_of("bob", Address(rest=waiter))
        node.link.on_forwarded_send(PEER, ForwardedSend("r", Address(rest=waiter),
                                                        outgoing_fields(msg)))
        failed = answer.exception()  # a REST send's failure: its error, to answer with
        assert isinstance(failed, LivecastError) and failed.code == Code.MUTED
        assert node.rooms["r"].sched.pending == 0
    finally:
        await node.close_collaborators()


async def test_a_login_elsewhere_closes_only_the_sessions_older_than_it(
        members: list[Member]) -> None:
    node = await started(multi_login=False)
    try:
        alice = await logged_in(node, members, "alice")
        logged_at = node.hub.sessions["alice"][alice.conn]
        node.link.on_kick(PEER, Kick("alice", "multiLogin", at=logged_at - 1))  # older
        assert not alice.conn.closing
        node.link.on_kick(PEER, Kick("alice", "multiLogin", at=logged_at + 1))  # newer
        assert alice.conn.closing
    finally:
        await node.close_collaborators()


def test_of_two_logins_at_once_on_two_processes_exactly_one_stays() -> None:
    """Each process closes its session if the other's login is newer, by time
    then process id: at the same time, the greater id stays."""
    from livecast.node.hub import LocalHub

    def older(here: str, mine: float, origin: str, theirs: float) -> bool:
        hub = LocalHub.__new__(LocalHub)
        hub.sessions = {"u": {"conn": mine}}  # type: ignore[dict-item]
        return bool(hub.older_sessions("u", theirs, origin, here))
    for t_a, t_b in ((10.0, 10.0), (10.0, 10.5), (10.5, 10.0)):
        closed_a = older("node-a", t_a, "node-b", t_b)
        closed_b = older("node-b", t_b, "node-a", t_a)
        assert closed_a != closed_b, (t_a, t_b)


async def test_a_profile_heard_is_used_at_once(members: list[Member]) -> None:
    node = await started()
    try:
        alice = await logged_in(node, members, "alice")
        node.link.on_profile(PEER, ProfileChanged("alice", "Alice", "https://a/img"))
        assert (alice.conn.nick, alice.conn.avatar) == ("Alice", "https://a/img")
    finally:
        await node.close_collaborators()
