"""The admin layer's own state (livecast/admin/state.py): the Random
de-duplication log and the ordinals behind get_appid_group_list's cursor.

Pure-ish: a manual clock (plain floats), a Node that never touches a socket.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.admin.state import AdminState, SendLog
from livecast.node.node import Node
from tests.conftest import base_settings


def _answer(n: int) -> asyncio.Future[dict[str, int]]:
    loop = asyncio.new_event_loop()
    try:
        fut: asyncio.Future[dict[str, int]] = loop.create_future()
        fut.set_result({"n": n})
        return fut
    finally:
        loop.close()


def test_an_entry_lives_for_the_window_and_no_longer() -> None:
    log = SendLog(window=300.0, cap=10)
    ans = _answer(1)
    log.record(("g", "u", 1), ans, 1000.0)
    assert log.find(("g", "u", 1), 1299.9) is ans
    assert log.find(("g", "u", 2), 1000.0) is None
    assert log.find(("g", "u", 1), 1300.0) is None and len(log) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100)), max_size=60),
       st.integers(1, 8))
def test_the_log_is_bounded_and_forgets_only_old_entries(ops: list[tuple[int, float]],
                                                         cap: int) -> None:
    log = SendLog(window=50.0, cap=cap)
    now = 0.0
    recorded: dict[int, float] = {}
    for key, step in ops:
        now += step
        found = log.find(("g", "u", key), now)
        if found is None:
            log.record(("g", "u", key), _answer(key), now)
            recorded[key] = now
        else:
            assert now - recorded[key] < 50.0  # only live entries are found
        assert len(log) <= cap


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["create", "destroy", "change", "list"]), max_size=40), st.data())
def test_ordinals_grow_with_creation_and_never_change(ops: list[str], data: st.DataObject) -> None:
    asyncio.run(_ordinals(ops, data))


async def _ordinals(ops: list[str], data: st.DataObject) -> None:
    node = Node(base_settings())
    state = AdminState()
    given_to: dict[str, int] = {}
    names = iter(f"g{i % 7}-{i}" if i % 3 else f"g{i % 7}" for i in range(1000))
    for op in ops:
        if op == "create":
            gid = next(names)
            if gid not in node.rooms:
                await node.create_group("", {"Name": "n"}, gid)
                given_to.pop(gid, None)
        elif op == "destroy" and node.rooms:
            gid = data.draw(st.sampled_from(sorted(node.rooms)))
            await node.destroy_group(gid)
            given_to.pop(gid, None)
        elif op == "change" and node.rooms:  # a changed room keeps its place
            gid = data.draw(st.sampled_from(sorted(node.rooms)))
            await node.modify_group(gid, {"Name": f"n{len(ops)}"}, "administrator")
        numbered = state.numbered_rooms(node)
        assert [gid for _n, gid in numbered] == list(node.rooms)  # creation order
        assert [n for n, _g in numbered] == sorted({n for n, _g in numbered})
        for n, gid in numbered:
            assert given_to.setdefault(gid, n) == n
