"""Group attributes over the WebSocket (livecast/gateway/ws.py): the attributes
in the join reply, ``getGroupAttributes``, the ``groupAttributes`` tip to every
member, and member writes under LIVECAST_MEMBER_ATTRS with compare-and-set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from livecast.errors import LivecastError
from livecast.node.node import Node
from livecast.store.sqlite import SqliteStore
from tests.admin.conftest import ManualClock
from tests.admin.test_attrs import attr_tip
from tests.conftest import Live, LiveFactory, base_settings, start_live


async def test_every_member_gets_one_tip_per_change(live: Live) -> None:
    gid = await live.room("r1")
    members = [await live.client(u, join=gid) for u in ("alice", "bob", "carol")]
    members.append(await live.client(None, join=gid))  # a guest
    outsider = await live.client("dave")
    await live.rest("group_open_http_svc", "modify_group_attr",
                    {"GroupId": gid, "GroupAttr": [{"key": "pinned", "value": "hello"}]})
    await live.rest("group_open_http_svc", "modify_group_attr",
                    {"GroupId": gid, "GroupAttr": [{"key": "stage", "value": "intro"}]})
    for c in members:
        assert await attr_tip(c) == {"type": "groupAttributes", "attrSeq": 1,
                                     "groupAttributes": {"pinned": "hello"}}
        assert await attr_tip(c) == {"type": "groupAttributes", "attrSeq": 2,
                                     "groupAttributes": {"pinned": "hello", "stage": "intro"}}
    r = await outsider.ping()  # the outsider got nothing before its pong
    assert r["code"] == 0 and outsider._pushes.empty()


async def test_join_and_get_return_the_attributes(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice")
    r = await alice.join(gid)
    assert (r["groupAttributes"], r["attrSeq"]) == ({}, 0)
    await live.rest("group_open_http_svc", "set_group_attr", {"GroupId": gid, "GroupAttr": [
        {"key": "pinned", "value": "hi"}, {"key": "product", "value": "sku-9"}]})
    bob = await live.client("bob")
    r = await bob.join(gid)
    assert (r["groupAttributes"], r["attrSeq"]) == ({"pinned": "hi", "product": "sku-9"}, 1)
    r = await bob.request("getGroupAttributes", groupId=gid, keyList=["product", "nope"])
    assert (r["code"], r["groupAttributes"], r["attrSeq"]) == (0, {"product": "sku-9"}, 1)
    r = await bob.request("getGroupAttributes", groupId=gid)
    assert r["groupAttributes"] == {"pinned": "hi", "product": "sku-9"}
    carol = await live.client("carol")
    assert (await carol.request("getGroupAttributes", groupId=gid))["code"] == 10007
    assert (await carol.request("getGroupAttributes", groupId="nope"))["code"] == 10010


async def test_member_writes_are_refused_when_the_setting_is_off(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    for op, fields in (("setGroupAttributes", {"groupAttributes": {"a": "1"}}),
                       ("initGroupAttributes", {"groupAttributes": {"a": "1"}}),
                       ("deleteGroupAttributes", {})):
        r = await alice.request(op, groupId=gid, attrSeq=0, **fields)
        assert r["code"] == 10007 and "app backend" in r["info"], r
    assert live.node.room(gid).group.attrs.values == {}


async def test_member_writes_compare_and_set(live_factory: LiveFactory) -> None:
    live = await live_factory(member_attrs=True)
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    r = await alice.request("setGroupAttributes", groupId=gid, attrSeq=0,
                            groupAttributes={"pinned": "from alice"})
    assert (r["code"], r["attrSeq"], r["groupAttributes"]) == (0, 1, {"pinned": "from alice"})
    for c in (alice, bob):  # the writer is a member too: it gets the tip as well
        assert (await attr_tip(c))["groupAttributes"] == {"pinned": "from alice"}
    # bob writes against the version he saw at join (0): stale
    r = await bob.request("setGroupAttributes", groupId=gid, attrSeq=0,
                          groupAttributes={"pinned": "from bob"})
    assert r["code"] == 10056, r
    seen = (await bob.request("getGroupAttributes", groupId=gid))["attrSeq"]
    r = await bob.request("initGroupAttributes", groupId=gid, attrSeq=seen,
                          groupAttributes={"stage": "q&a"})
    assert (r["code"], r["attrSeq"], r["groupAttributes"]) == (0, 2, {"stage": "q&a"})
    assert await attr_tip(alice) == {"type": "groupAttributes", "attrSeq": 2,
                                     "groupAttributes": {"stage": "q&a"}}
    r = await alice.request("deleteGroupAttributes", groupId=gid, attrSeq=2, keyList=["nope"])
    assert r["code"] == 10050
    r = await alice.request("deleteGroupAttributes", groupId=gid, attrSeq=2, keyList=["stage"])
    assert (r["code"], r["attrSeq"], r["groupAttributes"]) == (0, 3, {})
    r = await alice.request("setGroupAttributes", groupId=gid, attrSeq=3,
                            groupAttributes={"k" * 33: "v"})
    assert r["code"] == 10045


async def test_member_writes_need_a_speaking_member(live_factory: LiveFactory) -> None:
    live = await live_factory(member_attrs=True)
    gid = await live.room("r1")
    guest = await live.client(None, join=gid)
    outsider = await live.client("dave")
    muted = await live.client("mallory", join=gid)
    await live.node.mute(gid, ["mallory"], 60)
    write = {"groupId": gid, "attrSeq": 0, "groupAttributes": {"a": "1"}}
    assert (await guest.request("setGroupAttributes", **write))["code"] == 10007
    assert (await outsider.request("setGroupAttributes", **write))["code"] == 10007
    assert (await muted.request("setGroupAttributes", **write))["code"] == 10017
    assert live.node.room(gid).group.attrs.seq == 0


@pytest.fixture
async def clocked_members(clock: ManualClock) -> AsyncIterator[Live]:
    settings = base_settings(member_attrs=True)
    live = await start_live(settings, Node(settings, clock=clock))
    yield live
    for c in live.clients:
        await c.close()
    await live.server.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_member_writes_share_five_a_second_per_group(clocked_members: Live,
                                                           clock: ManualClock) -> None:
    live = clocked_members
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    seq = 0
    for i in range(5):
        r = await alice.request("setGroupAttributes", groupId=gid, attrSeq=seq,
                                groupAttributes={"n": str(i)})
        assert r["code"] == 0, r
        seq = r["attrSeq"]
    r = await alice.request("setGroupAttributes", groupId=gid, attrSeq=seq,
                            groupAttributes={"n": "6"})
    assert r["code"] == 10049
    r = await live.rest("group_open_http_svc", "modify_group_attr",
                        {"GroupId": gid, "GroupAttr": [{"key": "n", "value": "admin"}]})
    assert r["ErrorCode"] == 0  # admins are not counted
    clock.advance(1.0)
    r = await alice.request("setGroupAttributes", groupId=gid, attrSeq=seq + 1,
                            groupAttributes={"n": "later"})
    assert r["code"] == 0, r


async def test_two_writes_at_one_attr_seq_one_wins_on_a_real_store(tmp_path: Path) -> None:
    settings = base_settings(member_attrs=True)
    live = await start_live(settings, Node(settings, store=await SqliteStore.open(tmp_path)))
    try:
        gid = await live.room("r1")
        for user in ("alice", "bob"):
            await live.client(user, join=gid)
        hub, node = live.node.hub, live.node
        writes = [node.member_write_attrs(next(iter(hub.sessions[user])), gid, 0,
                                          lambda a, u=user: a.modify([("pinned", u)]))
                  for user in ("alice", "bob")]
        # the first holds the room's lock while its store write is on a thread
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert not isinstance(results[0], BaseException)
        assert isinstance(results[1], LivecastError) and results[1].code == 10056
        assert (node.room(gid).group.attrs.values, node.room(gid).group.attrs.seq) == (
            {"pinned": "alice"}, 1)
    finally:
        for c in live.clients:
            await c.close()
        await live.server.close()
