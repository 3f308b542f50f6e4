"""Group custom attributes (livecast/core/group_attrs.py): limits, all-or-nothing
writes, the attribute version and the compare-and-set rule of member writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.group_attrs import (
    KEY_LIMIT,
    KEY_NOT_FOUND,
    KEY_TOO_LONG,
    MAX_KEYS,
    MEMBER_WRITES_PER_S,
    STALE_WRITE,
    TOO_LARGE,
    TOO_MANY_KEYS,
    TOTAL_LIMIT,
    VALUE_LIMIT,
    VALUE_TOO_LONG,
    WRITE_FREQ_LIMIT,
    GroupAttrs,
    parse_item_keys,
    parse_items,
    parse_key_list,
    parse_map,
)
from livecast.core.protocol import FrameError, Request, parse_frame
from livecast.errors import LivecastError
from livecast.gateway.ws import OPS


def code_of(fn: object, *args: object) -> int:
    with pytest.raises(LivecastError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value.code


def test_modify_upserts_and_bumps_seq_only_on_change() -> None:
    a = GroupAttrs()
    change = a.modify([("pinned", "hello"), ("stage", "intro")])
    assert change is not None and change.seq == 1 and a.seq == 1
    assert change.tip() == {"type": "groupAttributes", "attrSeq": 1,
                            "groupAttributes": {"pinned": "hello", "stage": "intro"}}
    assert a.modify([("stage", "intro")]) is None and a.seq == 1
    change = a.modify([("stage", "q&a")])
    assert change is not None and change.values == {"pinned": "hello", "stage": "q&a"}
    assert a.seq == 2
    assert a.items() == [{"key": "pinned", "value": "hello"}, {"key": "stage", "value": "q&a"}]
    assert a.get(["stage", "nope"]) == {"stage": "q&a"}


def test_replace_delete_and_clear() -> None:
    a = GroupAttrs()
    a.modify([("a", "1"), ("b", "2")])
    change = a.replace([("c", "3")])
    assert change is not None and a.values == {"c": "3"} and a.seq == 2
    assert a.replace([("c", "3")]) is None
    a.modify([("d", "4")])
    assert code_of(a.delete, ["c", "missing"]) == KEY_NOT_FOUND
    assert a.values == {"c": "3", "d": "4"} and a.seq == 3
    change = a.delete(["c"])
    assert change is not None and a.values == {"d": "4"} and a.seq == 4
    assert a.delete(None) is not None and a.values == {} and a.seq == 5
    assert a.delete(None) is None and a.seq == 5  # clearing nothing is no change


def test_key_and_value_limits_in_bytes() -> None:
    a = GroupAttrs()
    a.modify([("k" * KEY_LIMIT, "v" * VALUE_LIMIT)])
    assert code_of(a.modify, [("k" * (KEY_LIMIT + 1), "v")]) == KEY_TOO_LONG  # checked again
    assert code_of(parse_map, {"k" * (KEY_LIMIT + 1): "v"}) == KEY_TOO_LONG
    assert code_of(parse_map, {"é" * 17: "v"}) == KEY_TOO_LONG  # 34 bytes
    assert code_of(parse_map, {"k": "v" * (VALUE_LIMIT + 1)}) == VALUE_TOO_LONG
    assert code_of(parse_map, {"k": "€" * 1334}) == VALUE_TOO_LONG  # 4002 bytes
    assert code_of(parse_map, {"": "v"}) == 10004
    assert code_of(parse_map, {"k": 1}) == 10004
    assert code_of(parse_map, {"k": "\ud800"}) == 10004
    assert code_of(parse_map, ["k"]) == 10004
    assert parse_map({"k": ""}) == [("k", "")]


def test_key_count_and_total_size_limits_change_nothing() -> None:
    a = GroupAttrs()
    a.modify([(f"k{i}", "x") for i in range(MAX_KEYS)])
    before = dict(a.values)
    assert code_of(a.modify, [("k0", "y"), ("one-more", "x")]) == TOO_MANY_KEYS
    assert a.values == before and a.seq == 1
    a.replace([])
    assert TOTAL_LIMIT == 16_000  # Tencent's documented total
    four = [(f"k{i}", "v" * (VALUE_LIMIT - 2)) for i in range(4)]  # exactly 16,000 bytes
    assert a.replace(four) is not None
    assert code_of(a.modify, [("k4", "v")]) == TOO_LARGE
    assert code_of(a.replace, [(f"k{i}", "v" * VALUE_LIMIT) for i in range(4)]) == TOO_LARGE
    assert len(a.values) == 4


def test_rest_item_shapes() -> None:
    assert parse_items([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]) == [
        ("a", "1"), ("a", "2")]
    for bad in ({"key": "a", "value": "1"}, [{"Key": "a", "Value": "1"}], [{"key": "a"}],
                [{"key": 1, "value": "1"}], [{"key": "a", "value": None}], ["a"]):
        assert code_of(parse_items, bad) == 10004, bad
    assert parse_item_keys([{"key": "a"}, {"key": "b", "value": "x"}, {"key": "a"}]) == [
        "a", "b"]
    for bad_keys in ([], [{}], [{"key": ""}], "a", None):
        assert code_of(parse_item_keys, bad_keys) == 10004, bad_keys
    assert parse_key_list(["b", "a", "b"]) == ["b", "a"]
    assert code_of(parse_key_list, ["a", 1]) == 10004


def test_member_writes_compare_and_set_then_budget() -> None:
    a = GroupAttrs()
    now = 1000.0
    a.member_write(0, now)
    a.modify([("pinned", "first")])
    assert code_of(a.member_write, 0, now) == STALE_WRITE  # wrote against attrSeq 0, now 1
    for _ in range(MEMBER_WRITES_PER_S - 1):
        a.member_write(1, now)
    assert code_of(a.member_write, 1, now) == WRITE_FREQ_LIMIT
    a.member_write(1, now + 1.0)  # the budget refills with time


_keys = st.text(min_size=1, max_size=6)
_values = st.text(max_size=20)
_ops = st.lists(st.one_of(
    st.tuples(st.just("modify"), st.lists(st.tuples(_keys, _values), max_size=6)),
    st.tuples(st.just("replace"), st.lists(st.tuples(_keys, _values), max_size=20)),
    st.tuples(st.just("delete"), st.lists(_keys, max_size=3)),
    st.tuples(st.just("clear"), st.none()),
), max_size=30)


@given(_ops)
def test_any_sequence_keeps_the_invariants(ops: list[tuple[str, object]]) -> None:
    """Against a plain dict model: a refused write changes nothing, an accepted
    one applies wholly, seq counts exactly the writes that changed something,
    and the store never passes its limits."""
    a = GroupAttrs()
    model: dict[str, str] = {}
    changes = 0
    for op, arg in ops:
        before = dict(model)
        try:
            if op == "modify":
                model.update(arg)  # type: ignore[arg-type]
                change = a.modify(list(arg))  # type: ignore[call-overload]
            elif op == "replace":
                model = dict(arg)  # type: ignore[call-overload]
                change = a.replace(list(arg))  # type: ignore[call-overload]
            elif op == "delete":
                keys = list(dict.fromkeys(arg))  # type: ignore[call-overload]
                model = {k: v for k, v in model.items() if k not in keys}
                change = a.delete(keys)
            else:
                model = {}
                change = a.delete(None)
        except LivecastError as err:
            assert err.code in (TOO_MANY_KEYS, KEY_NOT_FOUND)
            model = before
            assert a.values == before
            continue
        changes += change is not None
        assert (change is not None) == (model != before)
        assert a.values == model and a.seq == changes
        assert len(a.values) <= MAX_KEYS


@pytest.mark.parametrize(("frame", "expected"), [
    ('{"op":"getGroupAttributes","id":1,"groupId":"g"}', {"groupId": "g"}),
    ('{"op":"getGroupAttributes","id":1,"groupId":"g","keyList":["a","a"]}',
     {"groupId": "g", "keyList": ["a"]}),
    ('{"op":"setGroupAttributes","id":1,"groupId":"g","groupAttributes":{"a":"1"},"attrSeq":3}',
     {"groupId": "g", "groupAttributes": [("a", "1")], "attrSeq": 3}),
    ('{"op":"deleteGroupAttributes","id":1,"groupId":"g","attrSeq":0}',
     {"groupId": "g", "attrSeq": 0}),
])
def test_protocol_parses_the_attribute_ops(frame: str, expected: dict[str, object]) -> None:
    parsed = parse_frame(frame, OPS)
    assert isinstance(parsed, Request) and parsed.args == expected


@pytest.mark.parametrize(("frame", "code", "violation"), [
    ('{"op":"setGroupAttributes","id":1,"groupId":"g","groupAttributes":{"a":"1"}}', 10004, True),
    ('{"op":"setGroupAttributes","id":1,"groupId":"g","groupAttributes":[],"attrSeq":0}',
     10004, True),
    ('{"op":"initGroupAttributes","id":1,"groupId":"g","groupAttributes":{"a":1},"attrSeq":0}',
     10004, False),
    ('{"op":"setGroupAttributes","id":1,"groupId":"g","groupAttributes":{"%s":"1"},"attrSeq":0}'
     % ("k" * 33), KEY_TOO_LONG, False),
    ('{"op":"getGroupAttributes","id":1,"groupId":"g","keyList":"a"}', 10004, True),
    ('{"op":"deleteGroupAttributes","id":1,"groupId":"g","attrSeq":"0"}', 10004, True),
])
def test_protocol_refuses_bad_attribute_frames(frame: str, code: int, violation: bool) -> None:
    parsed = parse_frame(frame, OPS)
    assert isinstance(parsed, FrameError)
    assert (parsed.code, parsed.violation, parsed.id) == (code, violation, 1)
