"""The broker's pure parts: control messages and batches on the wire, room references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.backplane.broker import (
    Broadcast,
    Destroy,
    FateNotice,
    ForwardedSend,
    Kick,
    MembersAnswer,
    MembersAsk,
    MemberTips,
    RoomRefs,
    Tips,
    decode_control,
    decode_controls,
    decode_fates,
    deliver,
    encode_control,
    encode_controls,
    encode_fates,
    hand_batch,
    pack_batch,
    unpack_batch,
)
from livecast.core.fate import Address, Delivered, Dropped, Failed
from tests.backplane.conftest import Recorder


@pytest.mark.parametrize("message", [
    ForwardedSend("g", Address(conn=3, request="req-1", node="n1"), {"text": "hé", "p": 1}),
    ForwardedSend("g", Address(rest=4, node="n1"), {"t": 2}, rides=True),
    FateNotice(Address(rest=9, node="n2"), Delivered(5, 17)),
    FateNotice(Address(conn=1, request={"id": 2}), Dropped(18, "MsgFreqCtrl")),
    FateNotice(Address(), Failed(10010)),
    Kick("u", "multi-login"), Tips("g", [{"op": "join"}]), Destroy("g"), Broadcast({"a": [1]}),
    MemberTips("g", {"type": "memberJoin", "members": ["a", "b"], "total": 3}),
    MemberTips("g", None, {"type": "memberQuit", "members": [], "total": 1}),
    MembersAsk("g", 12), MembersAnswer(12, [[3, "alice", "Alice", "http://a"]]),
    MembersAnswer(13),
])
def test_a_control_message_decodes_to_what_was_encoded(message: object) -> None:
    assert decode_control(encode_control("origin", message)) == ("origin", message)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"[]", b'{"o": "x"}', b'{"o": "x", "k": "fate", "a": []}'])
def test_a_malformed_control_message_is_a_value_error_family(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError, IndexError)):
        decode_control(data)


BUNDLE = [FateNotice(Address(rest=1, node="n"), Delivered(7, 17)),
          ForwardedSend("g", Address(conn=2, request="r", node="m"), {"t": 1}),
          Kick("u", "multi-login"), FateNotice(Address(rest=2, node="n"), Failed(10002, "retry"))]


def test_a_bundle_decodes_to_its_messages_in_order() -> None:
    assert decode_controls(encode_controls("origin", BUNDLE)) == ("origin", BUNDLE)
    one = encode_controls("origin", BUNDLE[:1])  # one message alone: as encode_control
    assert one == encode_control("origin", BUNDLE[0])
    assert decode_controls(one) == ("origin", BUNDLE[:1])


def test_a_malformed_message_in_a_bundle_costs_only_itself() -> None:
    data = (b'{"o":"n","b":[{"k":"kick","u":"a","r":"x","g":""},{"k":"fate","a":[]},'
            b'{"k":"nope"},7,{"k":"destroy","g":"room"}]}')
    heard = Recorder()
    deliver(heard, data)
    assert heard.controls == [("n", Kick("a", "x")), ("n", Destroy("room"))]
    deliver(heard, b'{"o":"n","b":3}')  # the whole bundle malformed: skipped, logged
    assert len(heard.controls) == 2


@given(full=st.binary(), lite=st.none() | st.binary(), fates=st.binary())
def test_a_batch_unpacks_to_the_same_bytes(full: bytes, lite: bytes | None,
                                           fates: bytes) -> None:
    assert unpack_batch(pack_batch(full, lite, fates)) == (full, lite, fates)
    if not fates:  # a batch without fates is packed as it always was
        assert pack_batch(full, lite, fates)[:1] in (b"F", b"L")


def test_fates_on_a_batch_reach_the_node_they_name_only() -> None:
    ws, rest = Address(conn=7, request="r-1", node="b"), Address(rest=3, node="b")
    other = Address(conn=9, request=4, node="c")
    data = encode_fates({"b": [(ws, Delivered(11, 500)), (rest, Delivered(12, 500))],
                         "c": [(other, Delivered(13, 501))]})
    assert decode_fates(data, "b") == [(ws, Delivered(11, 500)), (rest, Delivered(12, 500))]
    assert decode_fates(data, "c") == [(other, Delivered(13, 501))]
    assert decode_fates(data, "d") == []
    assert encode_fates({}) == b""
    with pytest.raises((ValueError, KeyError, TypeError, IndexError)):
        decode_fates(b'{"b":[[1,2]]}', "b")


def test_a_handler_hears_a_batchs_fates_after_the_batch() -> None:
    heard = Recorder()
    hand_batch(heard, "room", b"full", None, b'{"b":[]}')
    hand_batch(heard, "room", b"full2", None)  # no fates: on_batch only
    assert heard.batches == [("room", b"full", None), ("room", b"full2", None)]
    assert heard.fates == [("room", b'{"b":[]}')]


@pytest.mark.parametrize("data", [b"", b"X", b"L\x00\x00", b"L\x00\x00\x00\x09abc",
                                  b"R\x00\x00\x00\x02{}", b"R\x00"])
def test_anything_else_is_not_a_batch(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_batch(data)


async def test_a_failed_first_subscribe_leaves_no_reference() -> None:
    refs = RoomRefs()

    async def fails(group_id: str) -> None:
        raise OSError("down")

    with pytest.raises(OSError):
        await refs.add("g", fails)
    assert "g" not in refs and refs.counts == {}
    calls: list[str] = []

    async def note(group_id: str) -> None:
        calls.append(group_id)

    await refs.add("g", note)
    await refs.add("g", note)
    await refs.remove("g", note)
    await refs.remove("g", note)
    await refs.remove("g", note)  # one too many: nothing happens
    assert calls == ["g", "g"] and refs.counts == {}
