"""One process alone is a cluster of one on the in-memory broker: the same
ClusterLink path as a cluster (leases, publish, controls), and a tick that
costs no task, future or await: written to the members and answered to its
senders before the dispatch returns."""

from __future__ import annotations

import asyncio

from livecast.backplane.memory_broker import MemoryBroker
from livecast.core.fate import Address
from livecast.core.scheduler import Priority
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.settings import Settings
from tests.node.test_fanout import Member, member, members

__all__ = ["members"]

BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


async def test_a_tick_is_written_and_answered_within_the_dispatch(members: list[Member]) -> None:
    node = Node(Settings())
    await node.start()
    try:
        assert isinstance(node.link.broker, MemoryBroker) and node.cluster is None
        await node.create_group("administrator", {"Name": "r"}, "r")
        assert "r" in node.link.tokens  # the room's lease, held by this process
        viewer = await member(members)
        node.attach(viewer.conn)
        node.login(viewer.conn, "viewer")
        node.join(viewer.conn, "r")
        broker = node.link.broker
        assert isinstance(broker, MemoryBroker)
        for _ in range(1000):  # the first member subscribes this process to the room
            if "r" in broker.refs:
                break
            await asyncio.sleep(0)
        assert "r" in broker.refs
        waiter, answer = node.rest_waiter()
        node.submit("r", Outgoing("s", "", "", Priority.NORMAL, 1, BODY, "",
                                  Address(rest=waiter)))
        room = node.rooms["r"]
        assert room.handle is not None
        room.handle.cancel()  # dispatched here, by hand, to see what it leaves behind
        tasks = asyncio.all_tasks()
        room.dispatch()
        assert answer.done() and answer.result()["MsgSeq"] == 1  # answered at once
        assert b'"op":"msgs"' in viewer.peer.recv(65536)  # written by the dispatch itself
        assert asyncio.all_tasks() == tasks  # no task made by the tick
        assert broker.hub.seqs["r"] == 1  # published through the broker
    finally:
        await node.close_collaborators()


async def test_a_room_made_again_with_its_id_starts_with_a_full_bucket() -> None:
    """Its seq goes on from the room it replaces (the broker's), its rate does
    not: a new room, not one taken over."""
    node = Node(Settings(room_rate=10, room_burst=5))
    await node.start()
    try:
        await node.create_group("administrator", {"Name": "r"}, "r")
        answers = []
        for i in range(5):
            waiter, answer = node.rest_waiter()
            node.submit("r", Outgoing("s", "", "", Priority.NORMAL, i, BODY, "",
                                      Address(rest=waiter)))
            answers.append(answer)
        assert [(await a)["MsgSeq"] for a in answers] == [1, 2, 3, 4, 5]
        assert node.rooms["r"].sched.tokens_at(node.timers.time()) < 1  # the burst spent
        await node.destroy_group("r")
        await node.create_group("administrator", {"Name": "r"}, "r")
        assert node.rooms["r"].sched.tokens == 5
    finally:
        await node.close_collaborators()
