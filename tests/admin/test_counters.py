"""get/update/delete_group_counter (livecast/admin/counters.py) over real HTTP;
members receive every change as a ``counters`` tip."""

from __future__ import annotations

from typing import Any

from tests.admin.conftest import fails, ok, rest
from tests.conftest import Live

G = "group_open_http_svc"
INT64_MAX = 2**63 - 1


async def call(live: Live, command: str, body: Any) -> dict[str, Any]:
    return await rest(live, G, command, body)


async def counters(live: Live, gid: str, **body: Any) -> list[dict[str, Any]]:
    r = ok(await call(live, "get_group_counter", {"GroupId": gid, **body}))
    return list(r["GroupCounter"])


async def test_set_increase_decrease_and_the_tips(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    five_likes = [{"Key": "like", "Value": 5}, {"Key": "gift", "Value": 1}]
    r = ok(await call(live, "update_group_counter", {"GroupId": gid, "GroupCounter": five_likes}))
    assert r["GroupCounter"] == [{"Key": "like", "Value": 5}, {"Key": "gift", "Value": 1}]
    tip = await alice.next_push("tips")
    assert {"type": "counters", "counters": r["GroupCounter"]} in tip["tips"]
    r = ok(await call(live, "update_group_counter", {
        "GroupId": gid, "Mode": "Increase", "GroupCounter": [{"Key": "like", "Value": 3},
                                                             {"Key": "view", "Value": 2}]}))
    assert r["GroupCounter"] == [{"Key": "like", "Value": 8}, {"Key": "view", "Value": 2}]
    r = ok(await call(live, "update_group_counter", {
        "GroupId": gid, "Mode": "Decrease", "GroupCounter": [{"Key": "gift", "Value": 4}]}))
    assert r["GroupCounter"] == [{"Key": "gift", "Value": -3}]
    assert await counters(live, gid, GroupCounterKeys=["like", "nope"]) == [
        {"Key": "like", "Value": 8}]
    assert len(await counters(live, gid)) == 3


async def test_delete_some_then_all(live: Live) -> None:
    gid = await live.room("r1")
    alice = await live.client("alice", join=gid)
    ok(await call(live, "update_group_counter", {
        "GroupId": gid, "GroupCounter": [{"Key": k, "Value": 1} for k in ("a", "b", "c")]}))
    await alice.next_push("tips")
    ok(await call(live, "delete_group_counter", {"GroupId": gid, "GroupCounterKeys": ["a"]}))
    tip = await alice.next_push("tips")
    assert tip["tips"][0]["type"] == "counters"
    assert [c["Key"] for c in await counters(live, gid)] == ["b", "c"]
    ok(await call(live, "delete_group_counter", {"GroupId": gid}))
    assert await counters(live, gid) == []


async def test_the_21st_key_answers_10063_and_changes_nothing(live: Live) -> None:
    gid = await live.room("r1")
    twenty = [{"Key": f"k{i}", "Value": i} for i in range(20)]
    ok(await call(live, "update_group_counter", {"GroupId": gid, "GroupCounter": twenty}))
    fails(await call(live, "update_group_counter", {
        "GroupId": gid, "GroupCounter": [{"Key": "k0", "Value": 99}, {"Key": "k20", "Value": 1}]}),
          10063)
    assert (await counters(live, gid, GroupCounterKeys=["k0"])) == [{"Key": "k0", "Value": 0}]


async def test_bad_counter_requests_change_nothing(live: Live) -> None:
    gid = await live.room("r1")
    ok(await call(live, "update_group_counter", {
        "GroupId": gid, "GroupCounter": [{"Key": "like", "Value": INT64_MAX}]}))
    bad: list[dict[str, Any]] = [
        {"GroupCounter": []}, {"GroupCounter": {"Key": "a", "Value": 1}},
        {"GroupCounter": [{"Key": "a"}]}, {"GroupCounter": [{"Key": "", "Value": 1}]},
        {"GroupCounter": [{"Key": "x" * 129, "Value": 1}]},
        {"GroupCounter": [{"Key": "a", "Value": "1"}]},
        {"GroupCounter": [{"Key": "a", "Value": 1.0}]},
        {"GroupCounter": [{"Key": "a", "Value": INT64_MAX + 1}]},
        {"GroupCounter": [{"Key": "a", "Value": 1}], "Mode": "set"},
        {"GroupCounter": [{"Key": "a", "Value": 1}], "Mode": None},
        {"GroupCounter": [{"Key": "a", "Value": 1}, {"Key": "like", "Value": 1}],
         "Mode": "Increase"},  # like would overflow int64
    ]
    for change in bad:
        fails(await call(live, "update_group_counter", {"GroupId": gid, **change}), 10004)
    fails(await call(live, "update_group_counter", {"GroupId": gid}), 10004)
    assert await counters(live, gid) == [{"Key": "like", "Value": INT64_MAX}]
    for name in ("get_group_counter", "delete_group_counter"):
        fails(await call(live, name, {"GroupId": gid, "GroupCounterKeys": "like"}), 10004)
        fails(await call(live, name, {"GroupId": gid, "GroupCounterKeys": [""]}), 10004)
        # null is a wrong type, not "every key" (left out, it is)
        fails(await call(live, name, {"GroupId": gid, "GroupCounterKeys": None}), 10004)
        fails(await call(live, name, {"GroupId": "nope"}), 10010)
    assert await counters(live, gid) == [{"Key": "like", "Value": INT64_MAX}]
