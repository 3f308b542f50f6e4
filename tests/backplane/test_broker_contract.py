"""The Broker contract (livecast/backplane/broker.py), run against every
implementation: the in-memory twin, a redis-server and a 3-master Redis Cluster.
Two or three brokers on one backend stand for two or three livecast processes."""

from __future__ import annotations

import asyncio

import pytest

from livecast.backplane.broker import (
    ALL,
    Broadcast,
    Destroy,
    FateNotice,
    ForwardedSend,
    Kick,
    MemberTips,
    Tips,
    encode_fates,
)
from livecast.core.fate import Address, Delivered, Dropped, Failed
from tests.backplane.conftest import Backend, until_true

FULL = b'{"op":"msgs","msgs":[1,2,3]}\x00\xff binary too'
LITE = b'{"op":"msgs","lite":true}'
TTL = 30.0


async def test_a_batch_reaches_a_process_only_while_it_is_subscribed(backend: Backend) -> None:
    a, heard_a = await backend.node("a")
    b, heard_b = await backend.node("b")
    token = await a.acquire_lease("room", "a", TTL)
    assert token is not None
    await b.subscribe("room")
    await b.subscribe("room")  # two local references
    await b.unsubscribe("room")  # one left: still subscribed
    assert await a.publish("room", FULL, LITE, 3, token)
    await heard_b.until(lambda: len(heard_b.batches) == 1)
    assert heard_b.batches == [("room", FULL, LITE)]  # the same bytes, lite included
    await b.unsubscribe("room")  # the last reference
    assert await a.publish("room", b"unheard", None, 4, token)
    await b.subscribe("room")
    assert await a.publish("room", FULL, None, 5, token)
    await heard_b.until(lambda: len(heard_b.batches) == 2)
    assert heard_b.batches[1] == ("room", FULL, None)
    assert heard_a.batches == []  # never subscribed: nothing for a


async def test_fates_ride_with_their_batch_to_every_subscribed_process(
        backend: Backend) -> None:
    a, heard_a = await backend.node("a")
    b, heard_b = await backend.node("b")
    _c, heard_c = await backend.node("c")
    token = await a.acquire_lease("room", "a", TTL)
    assert token is not None
    await b.subscribe("room")
    fates = encode_fates({"b": [(Address(conn=1, request=5, node="b"), Delivered(1, 40))]})
    assert await a.publish("room", FULL, LITE, 1, token, -1, fates)
    await heard_b.until(lambda: len(heard_b.fates) == 1)
    assert heard_b.batches == [("room", FULL, LITE)]  # the members' bytes unchanged
    assert heard_b.fates == [("room", fates)]
    assert await a.publish("room", FULL, None, 2, token)  # no fates: the batch alone
    await heard_b.until(lambda: len(heard_b.batches) == 2)
    assert heard_b.batches[1] == ("room", FULL, None) and len(heard_b.fates) == 1
    assert not await a.publish("room", FULL, None, 3, token + 1, -1, fates)  # refused
    assert await a.publish("room", b"last", None, 3, token)
    await heard_b.until(lambda: len(heard_b.batches) == 3)
    assert len(heard_b.fates) == 1
    assert heard_a.fates == heard_c.fates == []  # not subscribed: nothing


async def test_every_subscribed_process_gets_each_batch_once_in_order(backend: Backend) -> None:
    nodes = [await backend.node(name) for name in ("a", "b", "c")]
    for broker, _ in nodes:
        await broker.subscribe("room")
    a = nodes[0][0]
    token = await a.acquire_lease("room", "a", TTL)
    assert token is not None
    frames = [b"tick-%d" % i for i in range(1, 21)]
    await asyncio.gather(*(a.publish("room", f, None, i, token)
                           for i, f in enumerate(frames, 1)))
    for _, heard in nodes:  # the publisher's own broker included
        await heard.until(lambda h=heard: len(h.batches) == len(frames))  # type: ignore[misc]
        assert [full for _, full, _ in heard.batches] == frames
    assert await a.last_seq("room") == 20


async def test_a_lease_is_exclusive_and_its_token_fences_the_deposed_owner(
        backend: Backend) -> None:
    a, _ = await backend.node("a")
    b, heard_b = await backend.node("b")
    await b.subscribe("room")
    first = await a.acquire_lease("room", "a", TTL)
    assert first is not None
    assert await a.acquire_lease("room", "a", TTL) == first  # the holder's own token again
    assert await b.acquire_lease("room", "b", TTL) is None
    assert await a.owner_of("room") == "a" and await b.owner_of("room") == "a"
    assert not await b.renew_lease("room", "b", first, TTL)
    assert not await b.release_lease("room", "b", first)
    assert await a.publish("room", b"one", None, 1, first)
    assert await a.release_lease("room", "a", first)
    assert await a.owner_of("room") is None
    second = await b.acquire_lease("room", "b", TTL)
    assert second is not None and second > first
    assert not await a.publish("room", b"stale", None, 2, first)  # deposed: refused
    assert await a.last_seq("room") == 1  # and the seq did not move
    assert not await a.renew_lease("room", "a", first, TTL)
    assert await b.publish("room", b"two", None, 2, second)
    await heard_b.until(lambda: len(heard_b.batches) == 2)
    assert [full for _, full, _ in heard_b.batches] == [b"one", b"two"]


async def test_an_expired_lease_goes_to_another_node_with_a_larger_token(
        backend: Backend) -> None:
    a, _ = await backend.node("a")
    b, _ = await backend.node("b")
    first = await a.acquire_lease("room", "a", 0.2)
    assert first is not None
    assert await a.renew_lease("room", "a", first, 0.2)

    async def taken() -> bool:
        return await b.acquire_lease("room", "b", TTL) is not None

    await until_true(taken)
    second = await b.acquire_lease("room", "b", TTL)
    assert second is not None and second > first
    assert await a.owner_of("room") == "b"
    assert not await a.renew_lease("room", "a", first, TTL)
    assert not await a.publish("room", b"stale", None, 1, first)
    assert await b.renew_lease("room", "b", second, TTL)


async def test_the_seq_continues_across_owners_with_no_reuse(backend: Backend) -> None:
    a, _ = await backend.node("a")
    b, _ = await backend.node("b")
    assert await a.last_seq("room") == 0
    token_a = await a.acquire_lease("room", "a", TTL)
    assert token_a is not None
    for seq in (3, 7, 7, 10):  # a tick with no message keeps the seq
        assert await a.publish("room", b"x", None, seq, token_a)
    assert not await a.publish("room", b"x", None, 9, token_a)  # backwards: reuse, refused
    await a.release_lease("room", "a", token_a)
    token_b = await b.acquire_lease("room", "b", TTL)
    assert token_b is not None
    assert await b.last_seq("room") == 10  # the new owner continues at 11
    assert await b.publish("room", b"y", None, 11, token_b)
    assert await a.last_seq("room") == 11
    assert await b.last_seq("other") == 0


async def test_a_batch_that_does_not_follow_the_last_published_is_refused(
        backend: Backend) -> None:
    """A publish naming the seq it follows is accepted only right after that
    seq: a batch that never crossed (4..6 here) makes the next refused, so no
    member sees a gap; the owner then numbers on from ``last_seq``."""
    a, got = await backend.node("a")
    await a.subscribe("room")
    token = await a.acquire_lease("room", "a", TTL)
    assert token is not None
    assert await a.publish("room", b"1-3", None, 3, token, prev=0)
    assert not await a.publish("room", b"7-9", None, 9, token, prev=6)  # 4..6 never crossed
    assert await a.last_seq("room") == 3
    assert await a.publish("room", b"4-5", None, 5, token, prev=3)  # numbered on from 3
    assert a.publish_now("room", b"6", None, 6, token, prev=3) in (False, None)
    assert not await a.publish("room", b"6", None, 6, token, prev=3)  # 4..5 already there
    assert await a.publish("room", b"6", None, 6, token, prev=5)
    await got.until(lambda: len(got.batches) == 3)
    assert [full for _, full, _ in got.batches] == [b"1-3", b"4-5", b"6"]


async def test_control_reaches_the_addressed_node_only(backend: Backend) -> None:
    a, heard_a = await backend.node("a")
    b, heard_b = await backend.node("b")
    _, heard_c = await backend.node("c")
    reply_to = Address(conn=7, request={"id": "r1"}, node="a")
    sent = ForwardedSend("room", reply_to, {"text": "hi", "priority": 2})
    await a.control("b", sent)
    await heard_b.until(lambda: len(heard_b.controls) == 1)
    assert heard_b.controls == [("a", sent)]
    fates = [FateNotice(reply_to, Delivered(11, 1700000000123)),
             FateNotice(Address(rest=3, node="a"), Dropped(1700000000456)),
             FateNotice(reply_to, Failed(10010))]
    for fate in fates:
        await b.control("a", fate)
    await heard_a.until(lambda: len(heard_a.controls) == 3)
    assert heard_a.controls == [("b", f) for f in fates]
    await a.control(ALL, Destroy("marker"))
    await heard_c.until(lambda: len(heard_c.controls) == 1)
    assert heard_c.controls == [("a", Destroy("marker"))]  # nothing addressed to a or b
    await a.control("nobody", Kick("u", "kicked"))  # to a node that is not there: lost


async def test_control_many_hands_each_target_its_messages_in_order(backend: Backend) -> None:
    _a, heard_a = await backend.node("a")
    b, heard_b = await backend.node("b")
    _, heard_c = await backend.node("c")
    fates = [FateNotice(Address(rest=i, node="b"), Delivered(i, 1700000000000 + i))
             for i in range(1, 6)]
    sends = [ForwardedSend("room", Address(conn=i, request=i, node="a"), {"i": i})
             for i in range(3)]
    await b.control("a", Kick("first", "x"))
    await b.control_many({"a": fates, ALL: [Destroy("room")], "nobody": sends[:1]})
    await b.control_many({"c": sends, "a": []})
    # in order per channel (a node's own, and ALL's: on a cluster two masters)
    await heard_a.until(lambda: len(heard_a.controls) == 7)
    mine = [c for c in heard_a.controls if c != ("b", Destroy("room"))]
    assert mine == [("b", Kick("first", "x")), *[("b", f) for f in fates]]
    await heard_c.until(lambda: len(heard_c.controls) == 4)
    assert sorted(heard_c.controls, key=lambda c: not isinstance(c[1], Destroy)) == [
        ("b", Destroy("room")), *[("b", s) for s in sends]]
    await heard_b.until(lambda: len(heard_b.controls) == 1)
    assert heard_b.controls == [("b", Destroy("room"))]
    await b.control_many({})  # nothing to send: nothing sent


@pytest.mark.parametrize("message", [
    Kick("alice", "multi-login"), Kick("bob", "banned", "room"),
    Tips("room", [{"op": "join", "user": "alice"}, {"op": "quit", "user": "bob"}]),
    Destroy("room"), Broadcast({"text": "to every room", "n": [1, 2.5, None]}),
    MemberTips("room", {"type": "memberJoin", "members": ["alice"], "total": 2}),
])
async def test_control_to_all_reaches_every_node_the_sender_included(
        backend: Backend, message: Kick | Tips | Destroy | Broadcast | MemberTips) -> None:
    nodes = [await backend.node(name) for name in ("a", "b", "c")]
    await nodes[1][0].control(ALL, message)
    for _, heard in nodes:
        await heard.until(lambda h=heard: len(h.controls) == 1)  # type: ignore[misc]
        assert heard.controls == [("b", message)]


async def test_nodes_reflect_heartbeats_and_drop_the_expired(backend: Backend) -> None:
    a, _ = await backend.node("a")
    b, _ = await backend.node("b")
    await a.heartbeat("a", {"online": 12, "rooms": ["r1"]}, TTL)
    await b.heartbeat("b", {"online": 30}, 0.2)
    seen = await a.nodes()
    assert seen.get("a") == {"online": 12, "rooms": ["r1"]}
    assert set(seen) <= {"a", "b"}

    async def b_gone() -> bool:
        return set(await a.nodes()) == {"a"}

    await until_true(b_gone)  # b stopped beating: gone once its ttl is over
    beats = await b.heartbeat("b", {"online": 31}, TTL)  # the registry, in the same call
    assert beats == await b.nodes() == {"a": {"online": 12, "rooms": ["r1"]},
                                        "b": {"online": 31}}
    assert sum(info["online"] for info in (await a.nodes()).values()) == 43


async def test_ready_and_close(backend: Backend) -> None:
    a, heard = await backend.node("a")
    assert await a.ready()
    await a.subscribe("room")
    await a.close()
    backend.brokers.remove(a)
    b, _ = await backend.node("b")
    token = await b.acquire_lease("room", "b", TTL)
    assert token is not None and await b.publish("room", b"after close", None, 1, token)
    await b.control(ALL, Destroy("room"))
    assert heard.batches == [] and heard.controls == []


async def test_many_leases_are_taken_and_renewed_at_once(backend: Backend) -> None:
    a, _ = await backend.node("a")
    b, _ = await backend.node("b")
    rooms = [f"room-{i}" for i in range(12)]  # over every master of a cluster
    got = await a.acquire_leases("a", rooms, TTL)
    assert set(got) == set(rooms) and all(isinstance(t, int) for t in got.values())
    tokens = {gid: int(t) for gid, t in got.items() if isinstance(t, int)}
    assert await a.acquire_leases("a", rooms[:2], TTL) == {g: tokens[g] for g in rooms[:2]}
    assert await b.acquire_leases("b", rooms, TTL) == dict.fromkeys(rooms, "a")  # the holder
    assert await a.renew_leases("a", tokens, TTL) == set(rooms)
    assert await b.renew_leases("b", tokens, TTL) == set()  # not its leases
    assert await a.release_lease(rooms[0], "a", tokens[rooms[0]])
    took = await b.acquire_leases("b", rooms[:1], TTL)
    assert isinstance(took[rooms[0]], int)
    assert await a.renew_leases("a", tokens, TTL) == set(rooms[1:])  # taken over: not renewed
    assert await a.renew_leases("a", {}, TTL) == set()
    assert await a.acquire_leases("a", [], TTL) == {}


async def test_a_late_renewal_keeps_a_lease_nobody_took_with_its_token(
        backend: Backend) -> None:
    """A starved owner renews after its lease expired: kept if nobody took the
    room meanwhile (the fence is still its token), lost if somebody did."""
    a, _ = await backend.node("a")
    b, _ = await backend.node("b")
    first = await a.acquire_lease("room", "a", 0.2)
    assert first is not None

    async def expired() -> bool:
        return await a.owner_of("room") is None

    await until_true(expired)
    assert await a.renew_leases("a", {"room": first}, TTL) == {"room"}
    assert await b.owner_of("room") == "a"
    assert await b.acquire_lease("room", "b", TTL) is None
    assert await a.publish("room", b"kept", None, 1, first)  # the same token still fences
    assert await a.renew_lease("room", "a", first, 0.2)
    await until_true(expired)
    second = await b.acquire_lease("room", "b", TTL)
    assert second is not None and second > first
    assert await a.renew_leases("a", {"room": first}, TTL) == set()
    assert not await a.renew_lease("room", "a", first, TTL)
    assert await a.owner_of("room") == "b"


async def test_publish_now_is_done_at_once_in_memory_and_declined_on_redis(
        backend: Backend) -> None:
    a, heard = await backend.node("a")
    await a.subscribe("room")
    token = await a.acquire_lease("room", "a", TTL)
    assert token is not None
    done = a.publish_now("room", b"now", None, 1, token)
    if backend.target is None:  # in memory: handed to this process before it returns
        assert done is True and [full for _, full, _ in heard.batches] == [b"now"]
        assert a.publish_now("room", b"stale", None, 2, token + 1) is False
        assert await a.last_seq("room") == 1
    else:  # a round trip: the caller awaits ``publish`` instead
        assert done is None and await a.last_seq("room") == 0
