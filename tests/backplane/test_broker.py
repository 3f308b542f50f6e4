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
    MemberTips,
    RoomRefs,
    Tips,
    decode_control,
    decode_controls,
    deliver,
    encode_control,
    encode_controls,
    pack_batch,
    unpack_batch,
)
from livecast.core.fate import Address, Delivered, Dropped, Failed
from tests.backplane.conftest import Recorder


@pytest.mark.parametrize("message", [
    ForwardedSend("g", Address(conn=3, request="req-1", node="n1"), {"text": "hé", "p": 1}),
    FateNotice(Address(rest=9, node="n2"), Delivered(5, 17)),
    FateNotice(Address(conn=1, request={"id": 2}), Dropped(18, "MsgFreqCtrl")),
    FateNotice(Address(), Failed(10010)),
    Kick("u", "multi-login"), Tips("g", [{"op": "join"}]), Destroy("g"), Broadcast({"a": [1]}),
    MemberTips("g", {"type": "memberJoin", "members": ["a", "b"], "total": 3}),
    MemberTips("g", None, {"type": "memberQuit", "members": [], "total": 1}),
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


@given(full=st.binary(), lite=st.none() | st.binary())
def test_a_batch_unpacks_to_the_same_bytes(full: bytes, lite: bytes | None) -> None:
    assert unpack_batch(pack_batch(full, lite)) == (full, lite)


@pytest.mark.parametrize("data", [b"", b"X", b"L\x00\x00", b"L\x00\x00\x00\x09abc"])
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
