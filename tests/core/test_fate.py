"""The send rule and a message's fate as values (livecast/core/fate.py)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.fate import (
    Address,
    Delivered,
    Dropped,
    Failed,
    delivered_reply,
    fate_reply,
    rest_answer,
    send_refusal,
)
from livecast.core.group import Group
from livecast.core.protocol import reply
from livecast.errors import Code

T0 = 1_700_000_000.0


def code_of(refusal: tuple[int, str] | None) -> int:
    return 0 if refusal is None else refusal[0]


def test_a_member_may_send() -> None:
    g = Group.create("room", "host", T0, {})
    assert send_refusal(g, "bob", T0) is None


def test_not_a_member_is_refused_10007() -> None:
    g = Group.create("room", "host", T0, {})
    assert code_of(send_refusal(g, "bob", T0, member=False)) == Code.NO_PERMISSION


def test_banned_is_refused_10007_until_the_ban_ends() -> None:
    g = Group.create("room", "host", T0, {})
    g.ban("bob", 60, T0)
    refusal = send_refusal(g, "bob", T0 + 1)
    assert refusal is not None and refusal[0] == Code.NO_PERMISSION and "banned" in refusal[1]
    assert send_refusal(g, "bob", T0 + 60) is None


def test_personal_mute_binds_everyone_admins_and_owner_too() -> None:
    g = Group.create("room", "host", T0, {})
    for user in ("bob", "host", "administrator"):
        g.mute(user, 60, T0)
        assert code_of(send_refusal(g, user, T0 + 1, is_admin=True)) == Code.MUTED
        assert send_refusal(g, user, T0 + 60, is_admin=True) is None


def test_mute_all_spares_admins_and_the_owner() -> None:
    g = Group.create("room", "host", T0, {})
    g.modify({"MuteAllMember": "On"}, T0)
    assert code_of(send_refusal(g, "bob", T0)) == Code.MUTED
    assert send_refusal(g, "host", T0) is None
    assert send_refusal(g, "administrator", T0, is_admin=True) is None
    g.modify({"MuteAllMember": "Off"}, T0)
    assert send_refusal(g, "bob", T0) is None


def test_mute_all_without_an_owner_spares_no_member() -> None:
    g = Group.create("room", "", T0, {})
    g.modify({"MuteAllMember": "On"}, T0)
    assert code_of(send_refusal(g, "", T0)) == Code.MUTED


@given(st.integers(1, 10**6), st.integers(0, 2**53))
def test_a_delivered_fate_answers_its_seq_and_time(seq: int, time_ms: int) -> None:
    assert fate_reply(Delivered(seq, time_ms)) == (
        0, "", {"msgSeq": seq, "msgTime": time_ms, "dropReason": ""})
    assert rest_answer(Delivered(seq, time_ms)) == {
        "MsgSeq": seq, "MsgTime": time_ms // 1000, "MsgDropReason": ""}


def test_a_dropped_fate_is_a_success_with_a_reason_and_no_seq() -> None:
    assert fate_reply(Dropped(1234)) == (
        0, "", {"msgSeq": 0, "msgTime": 1234, "dropReason": "MsgFreqCtrl"})
    assert rest_answer(Dropped(5678)) == {"MsgSeq": 0, "MsgTime": 5, "MsgDropReason": "MsgFreqCtrl"}


def test_a_failed_fate_is_its_code_with_a_reason() -> None:
    code, info, fields = fate_reply(Failed(Code.GROUP_NOT_FOUND))
    assert (code, fields) == (Code.GROUP_NOT_FOUND, {}) and "destroyed" in info
    code, info, fields = fate_reply(Failed(Code.INTERNAL))
    assert code == Code.INTERNAL and "shut down" in info


def test_addresses_and_deliveries_are_values() -> None:
    """Equal by their fields and hashable (an Address keys a cluster's
    forwarded sends), however they were built."""
    a = Address(3, 7, 0, "n1")
    assert a == Address(conn=3, request=7, node="n1") and a != Address(3, 8, 0, "n1")
    assert {a: 1}[Address(conn=3, request=7, node="n1")] == 1
    assert Delivered(5, 17) == Delivered(seq=5, time_ms=17) != Delivered(5, 18)
    assert len({Delivered(5, 17), Delivered(5, 17)}) == 1


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(max_size=64),
       st.integers(min_value=1, max_value=2**53), st.integers(min_value=0, max_value=2**45))
def test_a_delivered_reply_is_the_reply_of_its_fate_encoded(
        rid: int | str, seq: int, time_ms: int) -> None:
    """The bytes made without a dict are those of the reply dict encoded,
    for any id a request may carry (escapes and non-ASCII text included)."""
    code, info, fields = fate_reply(Delivered(seq, time_ms))
    assert delivered_reply(rid, seq, time_ms) == orjson.dumps(reply(rid, code, info, **fields))
