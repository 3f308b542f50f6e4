"""Group custom attributes over REST (livecast/admin/attrs.py), over real HTTP:
modify/set/delete/clear_group_attr and get_group_attr, Tencent's limits and
codes, and the ``groupAttributes`` tip every member receives on each change."""

from __future__ import annotations

from typing import Any

import pytest

from livecast.client import Client
from tests.admin.conftest import fails, ok, rest
from tests.conftest import Live

G = "group_open_http_svc"
ATTR = "group_open_attr_http_svc"


async def call(live: Live, command: str, body: Any) -> dict[str, Any]:
    return await rest(live, G, command, body)


async def attrs(live: Live, gid: str) -> list[dict[str, str]]:
    return list(ok(await rest(live, ATTR, "get_group_attr", {"GroupId": gid}))["GroupAttrAry"])


def kv(**pairs: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in pairs.items()]


async def attr_tip(c: Client) -> dict[str, Any]:
    """The next ``groupAttributes`` tip (member tips are skipped); a change is one tip."""
    while True:
        push = await c.next_push("tips")
        tips = [t for t in push["tips"] if t["type"] == "groupAttributes"]
        if tips:
            assert len(tips) == 1, push
            return tips[0]


async def test_modify_set_delete_clear_and_one_tip_per_change(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    bob = await live.client(None, join=gid)  # a guest gets the tips too
    assert await attrs(live, gid) == []
    ok(await call(live, "modify_group_attr", {"GroupId": gid,
                                              "GroupAttr": kv(pinned="Buy now!", stage="intro")}))
    for c in (alice, bob):
        assert await attr_tip(c) == {"type": "groupAttributes", "attrSeq": 1,
                                     "groupAttributes": {"pinned": "Buy now!", "stage": "intro"}}
    ok(await call(live, "modify_group_attr", {"GroupId": gid, "GroupAttr": kv(stage="q&a")}))
    assert (await attr_tip(alice))["groupAttributes"] == {"pinned": "Buy now!", "stage": "q&a"}
    assert await attrs(live, gid) == kv(pinned="Buy now!", stage="q&a")
    ok(await call(live, "delete_group_attr", {"GroupId": gid, "GroupAttr": [{"key": "stage"}]}))
    assert await attr_tip(alice) == {"type": "groupAttributes", "attrSeq": 3,
                                     "groupAttributes": {"pinned": "Buy now!"}}
    ok(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": kv(product="sku-1")}))
    assert (await attr_tip(alice))["groupAttributes"] == {"product": "sku-1"}
    assert await attrs(live, gid) == kv(product="sku-1")
    ok(await call(live, "clear_group_attr", {"GroupId": gid}))
    assert await attr_tip(alice) == {"type": "groupAttributes", "attrSeq": 5,
                                     "groupAttributes": {}}
    assert await attrs(live, gid) == []
    r = await alice.request("getGroupAttributes", groupId=gid)
    assert (r["code"], r["groupAttributes"], r["attrSeq"]) == (0, {}, 5)


async def test_a_write_that_changes_nothing_pushes_no_tip(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "modify_group_attr", {"GroupId": gid, "GroupAttr": kv(a="1")}))
    await attr_tip(alice)
    ok(await call(live, "modify_group_attr", {"GroupId": gid, "GroupAttr": kv(a="1")}))
    ok(await call(live, "clear_group_attr", {"GroupId": gid}))
    # the tip after the no-op modify is the clear's: seq 2, not 3
    assert await attr_tip(alice) == {"type": "groupAttributes", "attrSeq": 2,
                                     "groupAttributes": {}}


async def test_limits_answer_tencents_codes_and_change_nothing(live: Live) -> None:
    gid = await live.room("r1")
    ok(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": kv(keep="me")}))
    cases: list[tuple[list[dict[str, str]], int]] = [
        ([{"key": "k" * 33, "value": "v"}], 10045),
        ([{"key": "é" * 17, "value": "v"}], 10045),
        ([{"key": "k", "value": "v" * 4001}], 10046),
        ([{"key": f"k{i}", "value": "v"} for i in range(16)], 10047),
        ([{"key": f"k{i}", "value": "v" * 4000} for i in range(5)], 10048),
    ]
    for items, code in cases:
        fails(await call(live, "modify_group_attr", {"GroupId": gid, "GroupAttr": items}), code)
    assert await attrs(live, gid) == kv(keep="me")
    sixteen = [{"key": "k" * 32 if i == 0 else f"k{i}", "value": "v"} for i in range(16)]
    ok(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": sixteen}))
    fails(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": [
        {"key": f"k{i}", "value": "v"} for i in range(17)]}), 10047)
    assert len(await attrs(live, gid)) == 16
    four = [{"key": f"big{i}", "value": "v" * 4000} for i in range(4)]  # 16,016 bytes
    fails(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": four}), 10048)
    four = [{"key": f"big{i}", "value": "v" * 3996} for i in range(4)]  # 16,000 bytes
    ok(await call(live, "set_group_attr", {"GroupId": gid, "GroupAttr": four}))
    fails(await call(live, "delete_group_attr", {"GroupId": gid, "GroupAttr": [
        {"key": "big0"}, {"key": "never-set"}]}), 10050)
    assert len(await attrs(live, gid)) == 4


@pytest.mark.parametrize("body", [
    {}, {"GroupAttr": kv(a="1")}, {"GroupId": 5, "GroupAttr": kv(a="1")},
    {"GroupId": "r1"}, {"GroupId": "r1", "GroupAttr": {"key": "a", "value": "1"}},
    {"GroupId": "r1", "GroupAttr": []}, {"GroupId": "r1", "GroupAttr": [{"key": "a"}]},
    {"GroupId": "r1", "GroupAttr": [{"key": "", "value": "1"}]},
    {"GroupId": "r1", "GroupAttr": [{"key": "a", "value": 1}]},
    {"GroupId": "r1", "GroupAttr": [{"Key": "a", "Value": "1"}]},
])
async def test_bad_modify_requests_answer_10004(live: Live, body: dict[str, Any]) -> None:
    await live.room("r1")
    fails(await call(live, "modify_group_attr", body), 10004)
    assert await attrs(live, "r1") == []


async def test_unknown_or_invalid_group(live: Live) -> None:
    for command, body in (("modify_group_attr", {"GroupAttr": kv(a="1")}),
                          ("set_group_attr", {"GroupAttr": kv(a="1")}),
                          ("delete_group_attr", {"GroupAttr": [{"key": "a"}]}),
                          ("clear_group_attr", {})):
        fails(await call(live, command, {"GroupId": "nope", **body}), 10010)
        fails(await call(live, command, {"GroupId": "bad id\n", **body}), 10015)
    fails(await rest(live, ATTR, "get_group_attr", {"GroupId": "nope"}), 10010)
    fails(await rest(live, ATTR, "get_group_attr", {}), 10004)
    fails(await rest(live, ATTR, "no_such_command", {"GroupId": "nope"}), 10003)


async def test_members_who_join_later_get_the_attributes(live: Live) -> None:
    gid = await live.room("r1")
    ok(await call(live, "modify_group_attr", {"GroupId": gid, "GroupAttr": kv(pinned="hi")}))
    carol = await live.client("carol")
    r = await carol.join(gid)
    assert (r["groupAttributes"], r["attrSeq"]) == ({"pinned": "hi"}, 1)
