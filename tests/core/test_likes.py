"""core/likes.py: the like rule, exact per-room totals, the jittered write-back schedule."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core import callbacks
from livecast.core.likes import Like, LikeRule, LikeTally, recognise, recognise_message
from livecast.core.scheduler import PRIORITY_NAMES

RULE = LikeRule()


def body(data: Any = None, priority: str | None = "Low", group: object = "r1",
         elems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Group.CallbackBeforeSendMsg body whose one TIMCustomElem carries ``data``."""
    if data is None:
        data = {"type": "like"}
    raw = data if isinstance(data, str) else json.dumps(data)
    out: dict[str, Any] = {
        "CallbackCommand": "Group.CallbackBeforeSendMsg", "GroupId": group, "Type": "AVChatRoom",
        "From_Account": "alice", "Operator_Account": "alice", "Random": 7, "OnlineOnlyFlag": 0,
        "MsgBody": elems if elems is not None else [
            {"MsgType": "TIMCustomElem", "MsgContent": {"Data": raw, "Desc": "", "Ext": ""}}],
        "CloudCustomData": "", "EventTime": 1700000000000,
    }
    if priority is not None:
        out["MsgPriority"] = priority
    return out


# ------------------------------------------------------------------ the rule
@pytest.mark.parametrize("priority", ["Low", "Lowest", None])
def test_low_lowest_or_unsent_priority_is_a_like(priority: str | None) -> None:
    assert recognise(body(priority=priority), RULE) == Like("r1", 1)


@pytest.mark.parametrize("priority", ["High", "Normal", "low", "", 2])
def test_other_priorities_are_not_likes(priority: Any) -> None:
    b = body()
    b["MsgPriority"] = priority
    assert recognise(b, RULE) is None


def test_require_priority_refuses_a_body_without_it() -> None:
    strict = LikeRule(require_priority=True)
    assert recognise(body(priority=None), strict) is None
    assert recognise(body(priority="Lowest"), strict) == Like("r1", 1)


def test_empty_priorities_accept_any_priority() -> None:
    assert recognise(body(priority="High"), LikeRule(priorities=frozenset())) == Like("r1", 1)


@pytest.mark.parametrize(("count", "likes"), [(1, 1), (7, 7), (1000, 1000), (1001, 1000),
                                              (2**64 - 1, 1000)])
def test_count_is_taken_and_capped(count: int, likes: int) -> None:
    assert recognise(body({"type": "like", "count": count}), RULE) == Like("r1", likes)


@pytest.mark.parametrize("count", [0, -3, 1.5, 2.0, "3", True, None, [1], {"n": 1}, 2**64])
def test_a_bad_count_is_not_a_like(count: Any) -> None:
    assert recognise(body({"type": "like", "count": count}), RULE) is None


@pytest.mark.parametrize("data", [
    {"type": "gift"}, {"kind": "like"}, {"type": "Like"}, [{"type": "like"}], "like",
    "{not json", "", "null", '"like"',
])
def test_other_custom_data_is_not_a_like(data: Any) -> None:
    raw = data if isinstance(data, str) else orjson.dumps(data).decode()
    assert recognise(body(raw), RULE) is None


def test_the_rule_is_configurable() -> None:
    rule = LikeRule(type_field="kind", type_value="heart", count_field="n", max_count=5)
    assert recognise(body({"kind": "heart", "n": 9}), rule) == Like("r1", 5)
    assert recognise(body({"type": "like"}), rule) is None


@pytest.mark.parametrize("elems", [
    [],
    [{"MsgType": "TIMTextElem", "MsgContent": {"Text": '{"type":"like"}'}}],
    [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": '{"type":"like"}'}}] * 2,
    [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": {"type": "like"}}}],
    [{"MsgType": "TIMCustomElem", "MsgContent": "x"}],
    ["TIMCustomElem"],
])
def test_message_bodies_without_one_custom_like_are_not_likes(elems: Any) -> None:
    assert recognise(body(elems=elems), RULE) is None


def test_a_like_beside_a_text_element_counts() -> None:
    elems = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}},
             {"MsgType": "TIMCustomElem", "MsgContent": {"Data": '{"type":"like","count":2}'}}]
    assert recognise(body(elems=elems), RULE) == Like("r1", 2)


@pytest.mark.parametrize("group", [None, "", 5, "x" * 49, "bad\nid"])
def test_a_bad_group_id_is_not_a_like(group: object) -> None:
    assert recognise(body(group=group), RULE) is None


@pytest.mark.parametrize("raw", [None, [], "x", 3, {"MsgBody": None}])
def test_junk_bodies_are_not_likes(raw: Any) -> None:
    assert recognise(raw, RULE) is None


# ------------------------------------------------------------------ the tally
def fixed(value: float) -> LikeTally:
    return LikeTally(lambda: value)


def test_jitter_spans_min_to_max_uniformly() -> None:
    for r, due in ((0.0, 13.0), (0.5, 14.0), (0.999, 14.998)):
        tally = fixed(r)
        tally.add("r1", 1, 10.0)
        assert tally.due("r1") == pytest.approx(due)


def test_first_flush_reads_the_base_and_writes_base_plus_likes() -> None:
    tally = fixed(0.0)
    tally.add("r1", 2, 0.0)
    tally.add("r1", 3, 1.0)
    assert tally.due("r1") == 3.0  # the second like does not move the schedule
    assert tally.take_due(2.99) == []
    assert tally.take_due(3.0) == ["r1"]
    assert tally.needs_base("r1")
    tally.set_base("r1", 100)
    assert tally.total("r1") == 105
    tally.written("r1", 105, 3.5)
    assert tally.due("r1") is None and tally.pending() == []
    assert tally.take_due(1e9) == [] and tally.take_all() == []


def test_likes_during_a_write_are_scheduled_when_it_ends() -> None:
    tally = fixed(0.5)
    tally.add("r1", 1, 0.0)
    (gid,) = tally.take_due(4.0)
    tally.set_base(gid, 0)
    total = tally.total(gid)
    tally.add("r1", 4, 4.1)  # in flight: not scheduled, not taken again
    assert tally.due("r1") is None and tally.take_due(100.0) == [] and tally.take_all() == []
    tally.written(gid, total, 4.2)
    assert tally.due("r1") == pytest.approx(8.2)
    assert tally.take_due(8.2) == ["r1"] and tally.total("r1") == 5


def test_a_failed_write_is_retried_at_the_next_flush() -> None:
    tally = fixed(0.0)
    tally.add("r1", 1, 0.0)
    assert tally.take_due(3.0) == ["r1"]
    tally.failed("r1", 3.1)
    assert tally.due("r1") == pytest.approx(6.1) and tally.needs_base("r1")
    assert tally.take_due(6.1) == ["r1"]


def test_forget_and_forget_idle() -> None:
    tally = fixed(0.0)
    tally.add("gone", 1, 0.0)
    tally.add("idle", 1, 0.0)
    tally.add("busy", 1, 0.0)
    for gid in tally.take_due(3.0):
        tally.set_base(gid, 0)
        if gid != "busy":
            tally.written(gid, tally.total(gid), 3.0)
    tally.forget("gone")
    assert tally.forget_idle(599.0, 600.0) == []
    assert tally.forget_idle(600.0, 600.0) == ["idle"]  # "busy" is still in flight
    assert "idle" not in tally and "busy" in tally and len(tally) == 1
    tally.add("idle", 2, 601.0)  # seen again: re-read from the server
    assert tally.needs_base("idle") and tally.counted("idle") == 2


def test_bad_arguments_are_programmer_errors() -> None:
    with pytest.raises(ValueError):
        LikeTally(random.random, 5.0, 3.0)
    with pytest.raises(ValueError):
        fixed(0.0).add("r1", 0, 0.0)
    with pytest.raises(ValueError):
        LikeRule(max_count=0)
    tally = fixed(0.0)
    tally.add("r1", 1, 0.0)
    with pytest.raises(ValueError):
        tally.total("r1")


# ---------------------------------------------------------- the properties
ROOMS = ("a", "b", "c")
event = st.one_of(
    st.tuples(st.just("like"), st.sampled_from(ROOMS), st.integers(1, 50),
              st.floats(0, 3, allow_nan=False)),
    st.tuples(st.just("flush"), st.sampled_from(ROOMS), st.booleans(),
              st.floats(0, 6, allow_nan=False)),
)


class Model:
    """Drives a LikeTally as the service does and checks invariants 1 to 4."""

    def __init__(self, rand: random.Random, bases: dict[str, int]) -> None:
        self.tally = LikeTally(rand.random, 3.0, 5.0)
        self.bases = bases
        self.now = 1000.0
        self.offered = dict.fromkeys(ROOMS, 0)
        self.stored: dict[str, int] = {}  # what the server holds
        self.last_end: dict[str, float] = {}

    def check_due(self, gid: str, since: float) -> None:
        due = self.tally.due(gid)
        assert due is not None and since + 3.0 <= due <= since + 5.0 + 1e-9

    def like(self, gid: str, n: int, dt: float) -> None:
        self.now += dt
        before = self.tally.due(gid)
        self.tally.add(gid, n, self.now)
        self.offered[gid] += n
        if before is None:
            self.check_due(gid, self.now)
        else:
            assert self.tally.due(gid) == before

    def flush(self, ok: bool, dt: float) -> None:
        self.now += dt
        for gid in self.tally.take_due(self.now):
            assert self.offered[gid] > 0  # rooms without likes are never flushed
            assert self.now - self.last_end.get(gid, -1e9) >= 3.0
            self.write(gid, ok)

    def write(self, gid: str, ok: bool) -> None:
        if self.tally.needs_base(gid):
            self.tally.set_base(gid, self.bases[gid])
        total = self.tally.total(gid)
        assert total == self.bases[gid] + self.offered[gid]  # exact
        assert total != self.stored.get(gid)  # only changed rooms are written
        self.last_end[gid] = self.now
        if ok:
            self.stored[gid] = total
            self.tally.written(gid, total, self.now)
        else:
            self.tally.failed(gid, self.now)
            self.check_due(gid, self.now)


@given(st.lists(event, max_size=80), st.randoms(use_true_random=False),
       st.dictionaries(st.sampled_from(ROOMS), st.integers(0, 10**6)))
def test_totals_are_exact_and_flushes_follow_the_schedule(
        events: list[tuple[Any, ...]], rand: random.Random, given_bases: dict[str, int]) -> None:
    bases = {gid: given_bases.get(gid, 0) for gid in ROOMS}
    m = Model(rand, bases)
    for kind, gid, arg, dt in events:
        if kind == "like":
            m.like(gid, arg, dt)
        else:
            m.flush(arg, dt)
    for gid in ROOMS:
        due = m.tally.due(gid)
        assert (due is None) == (gid not in m.tally.pending())
    m.flush(True, 5.0)  # every pending room is due within 5 s
    assert m.tally.pending() == []
    for gid in ROOMS:
        if m.offered[gid]:
            assert m.stored[gid] == bases[gid] + m.offered[gid]
        else:
            assert gid not in m.stored and gid not in m.tally


@given(st.lists(st.tuples(st.sampled_from(ROOMS), st.integers(1, 10**6)), max_size=200))
def test_the_sum_equals_the_likes_offered(likes: list[tuple[str, int]]) -> None:
    tally = fixed(0.25)
    for i, (gid, n) in enumerate(likes):
        tally.add(gid, n, float(i))
    for gid in tally.take_all():
        tally.set_base(gid, 0)
        assert tally.total(gid) == sum(n for g, n in likes if g == gid)


# ---------------------------------------------- the in-process counter's view
_counts = st.none() | st.integers(-2, 2**65) | st.floats(allow_nan=False) | st.text(max_size=3)
_payloads = st.builds(
    lambda kind, count: {"type": kind} | ({} if count is None else {"count": count}),
    st.sampled_from(["like", "gift", "Like"]), _counts)


def _dump(payload: dict[str, Any]) -> str:
    """JSON text of ``payload``; counts past 64 bits as plain digits too."""
    try:
        return orjson.dumps(payload).decode()
    except TypeError:  # orjson refuses integers over 64 bits; the JSON text allows them
        return json.dumps(payload)


_data = _payloads.map(_dump) | st.text(max_size=12)
_custom = st.builds(lambda d: {"MsgType": "TIMCustomElem", "MsgContent": {"Data": d}}, _data)
_text = st.just({"MsgType": "TIMTextElem", "MsgContent": {"Text": '{"type":"like"}'}})
_rules = st.builds(LikeRule, priorities=st.sampled_from(
    [frozenset({"Low", "Lowest"}), frozenset(), frozenset({"High"})]),
    max_count=st.integers(1, 5), require_priority=st.booleans())


@given(group=st.sampled_from(["r1", "@TGS#aB3", "", "bad id"]),
       priority=st.sampled_from(PRIORITY_NAMES), elems=st.lists(_custom | _text, max_size=3),
       rule=_rules)
def test_a_message_is_a_like_exactly_when_its_before_send_body_is(
        group: str, priority: str, elems: list[dict[str, Any]], rule: LikeRule) -> None:
    """The in-process counter (recognise_message) and ``livecast counter`` (recognise on
    the callback body the node would post) count the same likes."""
    posted = callbacks.before_send(group, "alice", "alice", 7, elems, "", priority, 1e9)
    assert recognise_message(group, priority, elems, rule) == recognise(
        orjson.loads(orjson.dumps(posted)), rule)


def test_recognise_message_counts_a_low_like_and_skips_normal_chat() -> None:
    like = [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": '{"type":"like","count":4}'}}]
    assert recognise_message("r1", "Low", like, RULE) == Like("r1", 4)
    assert recognise_message("r1", "Normal", like, RULE) is None


def test_next_due_is_the_earliest_scheduled_write() -> None:
    tally = LikeTally(lambda: 0.5)
    assert tally.next_due() is None
    tally.add("b", 1, 10.0)
    tally.add("a", 1, 8.0)
    assert tally.next_due() == 12.0  # 8 + 3 + 2 * 0.5
    assert tally.take_due(12.0) == ["a"]
    assert tally.next_due() == 14.0
