"""livecast.core.protocol: client frames (spec/websocket.md) and reply builders."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.core import protocol
from livecast.core.messages import MAX_MSG_BYTES, message_size
from livecast.core.protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    Request,
    error_reply,
    kicked,
    reply,
)
from livecast.errors import Code, LivecastError
from livecast.gateway.ws import OPS
from tests.strategies import json_values

TEXT = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
CODES = {int(c) for c in Code}


def parse_frame(data: str | bytes) -> Request | FrameError:
    """The parse against the served op table (``gateway.ws.OPS``)."""
    return protocol.parse_frame(data, OPS)


def frame(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def ok(data: str | bytes) -> Request:
    result = parse_frame(data)
    assert isinstance(result, Request), result
    return result


def err(data: str | bytes) -> FrameError:
    result = parse_frame(data)
    assert isinstance(result, FrameError), result
    return result


# -- happy paths ------------------------------------------------------------------


def test_the_op_table_is_the_contract() -> None:
    assert set(OPS) == {
        "login",
        "join",
        "quit",
        "send",
        "getGroupInfo",
        "getOnlineMemberNum",
        "setMyProfile",
        "getMyProfile",
        "ping",
        "getGroupAttributes",
        "setGroupAttributes",
        "initGroupAttributes",
        "deleteGroupAttributes",
    }


def test_login() -> None:
    req = ok(frame(op="login", id=1, sdkAppId=1400000000, userId="alice", userSig="sig"))
    assert req == Request("login", 1, {"sdkAppId": 1400000000, "userId": "alice", "userSig": "sig"})


@pytest.mark.parametrize("op", ["join", "quit", "getGroupInfo", "getOnlineMemberNum"])
def test_group_ops(op: str) -> None:
    req = ok(frame(op=op, id="r-1", groupId="live-1"))
    assert req == Request(op, "r-1", {"groupId": "live-1"})


def test_send_fills_defaults() -> None:
    req = ok(frame(op="send", id=7, groupId="live-1", msgBody=TEXT))
    assert req == Request(
        "send",
        7,
        {
            "groupId": "live-1",
            "msgBody": TEXT,
            "priority": "Normal",
            "random": 0,
            "cloudCustomData": "",
        },
    )


@pytest.mark.parametrize("priority", ["High", "Normal", "Low", "Lowest"])
def test_send_with_every_field(priority: str) -> None:
    data = frame(
        op="send",
        id=8,
        groupId="live-1",
        msgBody=TEXT,
        priority=priority,
        random=4294967295,
        cloudCustomData='{"lvl":3}',
    )
    args = ok(data).args
    assert args["priority"] == priority
    assert args["random"] == 4294967295
    assert args["cloudCustomData"] == '{"lvl":3}'


def test_send_null_optionals_mean_defaults() -> None:
    data = frame(
        op="send", groupId="g", msgBody=TEXT, priority=None, random=None, cloudCustomData=None
    )
    args = ok(data).args
    assert (args["priority"], args["random"], args["cloudCustomData"]) == ("Normal", 0, "")


def test_set_my_profile_fields_are_optional() -> None:
    assert ok(frame(op="setMyProfile", id=1)).args == {}
    assert ok(frame(op="setMyProfile", nick=None)).args == {}
    assert ok(frame(op="setMyProfile", nick="Alice")).args == {"nick": "Alice"}
    req = ok(frame(op="setMyProfile", nick="", avatar="https://a/x.png"))
    assert req.args == {"nick": "", "avatar": "https://a/x.png"}


@pytest.mark.parametrize("op", ["getMyProfile", "ping"])
def test_ops_without_fields(op: str) -> None:
    assert ok(frame(op=op, id=3)) == Request(op, 3, {})


def test_id_is_optional_int_or_string() -> None:
    assert ok(frame(op="ping")).id is None
    assert ok(frame(op="ping", id=None)).id is None
    assert ok(frame(op="ping", id=0)).id == 0
    assert ok(frame(op="ping", id=-5)).id == -5
    assert ok(frame(op="ping", id="")).id == ""
    assert ok(frame(op="ping", id="x" * 64)).id == "x" * 64


def test_text_frames_and_bytes_both_parse() -> None:
    data = '{"op":"join","id":"é","groupId":"g"}'
    assert ok(data) == ok(data.encode()) == Request("join", "é", {"groupId": "g"})


def test_unknown_envelope_and_op_fields_ignored() -> None:
    req = ok(frame(op="join", id=2, groupId="g", v=2, trace={"a": [1]}, extra=None))
    assert req == Request("join", 2, {"groupId": "g"})


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"op":"ping"',
        b"\xff\xfe{}",
        b'{"op":"ping","id":"\xc3"}',
        '{"op":"ping","id":"\ud800"}',
        b"[]",
        b'"ping"',
        b"null",
        b"42",
        b'[{"op":"ping","id":1}]',
    ],
)
def test_not_a_json_object_is_a_violation_without_id(data: str | bytes) -> None:
    assert err(data) == FrameError(Code.BAD_PARAMETER, err(data).info, None, True)


def test_frame_too_large_refused_safely() -> None:
    pad = "x" * MAX_FRAME_BYTES
    for data in (frame(op="ping", id=1, pad=pad), frame(op="ping", id=1, pad=pad).decode()):
        e = err(data)
        assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, None, True)


def test_frame_size_counts_utf8_bytes_of_text() -> None:
    # 22000 three-byte characters: 22000 chars but 66000 bytes > 65536
    data = '{"op":"ping","id":1,"pad":"' + "€" * 22000 + '"}'
    assert len(data) < MAX_FRAME_BYTES
    assert err(data).id is None
    small = '{"op":"ping","id":1,"pad":"' + "€" * 21000 + '"}'
    assert ok(small).op == "ping"


@pytest.mark.parametrize("bad_id", [1.5, 1.0, True, False, [1], {"a": 1}, "x" * 65])
def test_bad_id_is_a_violation_without_id(bad_id: object) -> None:
    e = err(frame(op="ping", id=bad_id))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, None, True)


@pytest.mark.parametrize("good_id", [-(2**63), 0, 2**64 - 1])
def test_int_ids_at_the_64_bit_bounds_are_accepted(good_id: int) -> None:
    assert ok(frame(op="ping", id=good_id)).id == good_id


@pytest.mark.parametrize("op", ["nope", "Login", "", 5, None, ["ping"], True])
def test_unknown_or_missing_op(op: object) -> None:
    e = err(frame(op=op, id=9))
    assert (e.code, e.id, e.violation) == (Code.BAD_COMMAND, 9, True)
    e = err(frame(id=10))
    assert (e.code, e.id, e.violation) == (Code.BAD_COMMAND, 10, True)


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "login", "userId": "a", "userSig": "s"},
        {"op": "login", "sdkAppId": 1, "userSig": "s"},
        {"op": "login", "sdkAppId": 1, "userId": "a"},
        {"op": "login", "sdkAppId": None, "userId": "a", "userSig": "s"},
        {"op": "join"},
        {"op": "quit", "groupId": None},
        {"op": "getGroupInfo"},
        {"op": "getOnlineMemberNum"},
        {"op": "send", "msgBody": TEXT},
        {"op": "send", "groupId": "g"},
    ],
)
def test_missing_required_field_is_a_violation(fields: dict[str, Any]) -> None:
    e = err(frame(id="q", **fields))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, "q", True)
    assert e.info.startswith("missing ")


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "login", "sdkAppId": "1400000000", "userId": "a", "userSig": "s"},
        {"op": "login", "sdkAppId": True, "userId": "a", "userSig": "s"},
        {"op": "login", "sdkAppId": 1.0, "userId": "a", "userSig": "s"},
        {"op": "login", "sdkAppId": 1, "userId": 7, "userSig": "s"},
        {"op": "login", "sdkAppId": 1, "userId": "a", "userSig": ["s"]},
        {"op": "join", "groupId": 12},
        {"op": "send", "groupId": "g", "msgBody": {"MsgType": "TIMTextElem"}},
        {"op": "send", "groupId": "g", "msgBody": "hi"},
        {"op": "send", "groupId": "g", "msgBody": TEXT, "priority": 1},
        {"op": "send", "groupId": "g", "msgBody": TEXT, "random": "1"},
        {"op": "send", "groupId": "g", "msgBody": TEXT, "random": 1.0},
        {"op": "send", "groupId": "g", "msgBody": TEXT, "random": True},
        {"op": "send", "groupId": "g", "msgBody": TEXT, "cloudCustomData": {"a": 1}},
        {"op": "setMyProfile", "nick": 5},
        {"op": "setMyProfile", "avatar": ["x"]},
    ],
)
def test_wrong_type_is_a_violation(fields: dict[str, Any]) -> None:
    e = err(frame(id=4, **fields))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 4, True)


@pytest.mark.parametrize(
    "group_id",
    ["", "x" * 49, "lïve", "live\n1", "tab\there", "\x7f", "ａ"],
)
@pytest.mark.parametrize("op", ["join", "quit", "send", "getGroupInfo", "getOnlineMemberNum"])
def test_bad_group_id_is_10015_not_a_violation(op: str, group_id: str) -> None:
    e = err(frame(op=op, id=5, groupId=group_id, msgBody=TEXT))
    assert (e.code, e.id, e.violation) == (Code.INVALID_GROUP_ID, 5, False)


@pytest.mark.parametrize("group_id", ["x" * 48, "@TGS#2J4SZEAEL", "live room ~!", " "])
def test_good_group_ids(group_id: str) -> None:
    assert ok(frame(op="join", groupId=group_id)).args["groupId"] == group_id


@pytest.mark.parametrize("user_id", ["", "x" * 33, "ålice", "bob\x00", "a\nb"])
def test_bad_user_id_is_10004_not_a_violation(user_id: str) -> None:
    e = err(frame(op="login", id=1, sdkAppId=1, userId=user_id, userSig="s"))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 1, False)


def test_user_id_of_32_printable_bytes_accepted() -> None:
    user_id = "a_b-C.9@" * 4
    assert ok(frame(op="login", sdkAppId=1, userId=user_id, userSig="")).args["userId"] == user_id


@pytest.mark.parametrize("priority", ["high", "Urgent", "", "NORMAL"])
def test_bad_priority_is_not_a_violation(priority: str) -> None:
    e = err(frame(op="send", id=6, groupId="g", msgBody=TEXT, priority=priority))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 6, False)


@pytest.mark.parametrize("field", [{"history": -1}, {"history": 1001}, {"history": 5000},
                                   {"sinceSeq": -1}, {"sinceSeq": 2**53 + 1},
                                   {"historyEpoch": -5}, {"historyEpoch": 2**63 + 1}])
def test_a_join_history_field_out_of_range_is_not_a_violation(field: dict[str, int]) -> None:
    e = err(frame(op="join", id=7, groupId="g", **field))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 7, False)


@pytest.mark.parametrize("random", [-1, 4294967296, 2**63])
def test_random_out_of_range_is_not_a_violation(random: int) -> None:
    e = err(frame(op="send", id=6, groupId="g", msgBody=TEXT, random=random))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 6, False)


@pytest.mark.parametrize(
    "body",
    [
        [],
        [{"MsgType": "TIMTextElem", "MsgContent": {}}],
        [{"MsgType": "TIMBogusElem", "MsgContent": {}}],
        [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "a"}}] * 2,
    ],
)
def test_malformed_message_body_is_10004_not_a_violation(body: list[Any]) -> None:
    e = err(frame(op="send", id=11, groupId="g", msgBody=body))
    assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 11, False)


def send_of_size(nbytes: int, cloud: str = "") -> bytes:
    empty = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": ""}}]
    text = "a" * (nbytes - message_size(empty, cloud))
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}]
    assert message_size(body, cloud) == nbytes
    return frame(op="send", id=12, groupId="g", msgBody=body, cloudCustomData=cloud)


def test_message_of_exactly_12288_bytes_accepted() -> None:
    assert ok(send_of_size(MAX_MSG_BYTES)).op == "send"
    assert ok(send_of_size(MAX_MSG_BYTES, cloud="c" * 100)).op == "send"


def test_message_over_12_kb_is_80002_carrying_the_id() -> None:
    for data in (send_of_size(MAX_MSG_BYTES + 1), send_of_size(MAX_MSG_BYTES + 1, "c" * 100)):
        e = err(data)
        assert (e.code, e.id, e.violation) == (Code.MSG_TOO_LONG, 12, False)
        assert error_reply(e) == {"op": "reply", "id": 12, "code": 80002, "info": e.info}


def test_profile_length_limits_in_utf8_bytes() -> None:
    assert ok(frame(op="setMyProfile", nick="n" * 64, avatar="a" * 500)).args["nick"] == "n" * 64
    assert ok(frame(op="setMyProfile", nick="€" * 21)).args["nick"] == "€" * 21  # 63 bytes
    for fields in ({"nick": "n" * 65}, {"nick": "€" * 22}, {"avatar": "a" * 501}):
        e = err(frame(op="setMyProfile", id=13, **fields))
        assert (e.code, e.id, e.violation) == (Code.BAD_PARAMETER, 13, False)


def test_frame_without_id_gets_no_reply_even_on_error() -> None:
    e = err(frame(op="join", groupId=""))
    assert (e.code, e.id) == (Code.INVALID_GROUP_ID, None)
    assert error_reply(e) is None


# -- builders ---------------------------------------------------------------------


def test_reply_builder() -> None:
    assert reply(7) == {"op": "reply", "id": 7, "code": 0, "info": ""}
    r = reply("a", Code.MUTED, "muted", until=5)
    assert r == {"op": "reply", "id": "a", "code": 10017, "info": "muted", "until": 5}
    assert type(r["code"]) is int
    assert list(reply(1, msgSeq=3, msgTime=4)) == ["op", "id", "code", "info", "msgSeq", "msgTime"]
    assert orjson.loads(orjson.dumps(reply(None, serverTime=1))) == {
        "op": "reply",
        "id": None,
        "code": 0,
        "info": "",
        "serverTime": 1,
    }


def test_error_reply_of_a_refused_frame() -> None:
    e = err(frame(op="nope", id="z"))
    assert error_reply(e) == {"op": "reply", "id": "z", "code": 10003, "info": e.info}


def test_kicked_builder() -> None:
    for reason in ("multiLogin", "banned", "groupDestroyed", "slow"):
        assert kicked(reason) == {"op": "kicked", "reason": reason}
    with pytest.raises(ValueError):
        kicked("bored")


# -- no input can raise -------------------------------------------------------------

FIELD_NAMES = sorted({f.name for row in OPS.values() for f in row.spec.fields})
element = st.fixed_dictionaries(
    {
        "MsgType": st.sampled_from(["TIMTextElem", "TIMCustomElem", "TIMFaceElem"]) | st.text(),
        "MsgContent": st.dictionaries(st.sampled_from(["Text", "Data", "Index"]), json_values),
    }
)
field_value = (
    json_values
    | st.integers()
    | st.sampled_from(["High", "Normal", "Low", "Lowest", "live-1", "alice"])
    | st.lists(element, max_size=3)
)
random_frames = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(OPS)) | json_values},
    optional={
        "id": json_values | st.integers() | st.text(max_size=70),
        **{name: field_value for name in FIELD_NAMES},
    },
)


def check_outcome(result: Request | FrameError) -> None:
    if isinstance(result, Request):
        assert result.op in OPS
        names = {f.name for f in OPS[result.op].spec.fields}
        required = {f.name for f in OPS[result.op].spec.fields if f.required}
        assert required <= set(result.args) <= names
        orjson.dumps(reply(result.id, **result.args))
    else:
        assert isinstance(result, FrameError)
        assert result.code in CODES and result.code != 0
        assert isinstance(result.info, str)
        reply_ = error_reply(result)
        assert (reply_ is None) == (result.id is None)
        orjson.dumps(reply_)


def safe_dumps(value: object) -> bytes | None:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # st.integers() beyond 64 bits
        return None


@settings(max_examples=500, deadline=None)
@given(random_frames)
def test_random_frames_never_raise(fields: dict[str, Any]) -> None:
    data = safe_dumps(fields)
    if data is not None:
        check_outcome(parse_frame(data))
        check_outcome(parse_frame(data.decode()))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_values_never_raise(value: object) -> None:
    check_outcome(parse_frame(orjson.dumps(value)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check_outcome(parse_frame(data))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters() | st.characters(categories=["Cs"]), max_size=200))
def test_arbitrary_text_never_raises(data: str) -> None:
    check_outcome(parse_frame(data))


@pytest.mark.parametrize("field", ["nick", "avatar"])
def test_a_lone_surrogate_is_an_invalid_field_answered_with_its_id(field: str) -> None:
    frame = '{"op":"setMyProfile","id":7,"' + field + '":"a\\ud800b"}'
    err = parse_frame(frame.encode())
    assert isinstance(err, FrameError)
    assert (err.code, err.id, err.violation) == (Code.BAD_PARAMETER, 7, False)
    assert "surrogate" in err.info


def test_a_lone_surrogate_without_a_usable_id_is_a_violation() -> None:
    err = parse_frame(b'{"op":"send","id":[1],"msgBody":"\\udfff"}')
    assert isinstance(err, FrameError) and err.id is None and err.violation


@pytest.mark.parametrize("frame", [
    b'{"op":"ping","id":1,"x":NaN}', b'{"op":"nope","id":1,"x":Infinity}',
    b'{"op":"ping","id":1,"x":-Infinity}', b'{"op":"ping","id":1,"x":1e400}',
])
def test_what_only_a_lenient_parser_reads_is_not_json(frame: bytes) -> None:
    err = parse_frame(frame)  # a violation (counted toward 4009), not a bad field
    assert isinstance(err, FrameError)
    assert (err.code, err.id, err.violation) == (Code.BAD_PARAMETER, None, True)
    assert err.info == "frame is not valid JSON"


# -- the send's common shape, validated in one step -----------------------------

GENERAL_SEND = dataclasses.replace(protocol.SEND, quick=None)  # the field checks alone
text_element = st.builds(lambda t: {"MsgType": "TIMTextElem", "MsgContent": {"Text": t}},
                         st.text(max_size=30))
custom_element = st.builds(
    lambda d, extra: {"MsgType": "TIMCustomElem", "MsgContent": {"Data": d, **extra}},
    st.text(max_size=30),
    st.dictionaries(st.sampled_from(["Desc", "Ext", "Sound", "Other"]),
                    st.text(max_size=8) | st.integers(min_value=-9, max_value=9), max_size=3))
odd_element = (element | st.builds(lambda e, k, v: {**e, k: v}, text_element,
                                   st.sampled_from(["Extra", "MsgType"]), json_values)
               | json_values)
send_fields = st.fixed_dictionaries(
    {"groupId": st.sampled_from(["live-1", "", "x" * 48, "x" * 49, "caf\u00e9", "a\tb"])
     | json_values,
     "msgBody": st.lists(text_element | custom_element | odd_element, max_size=4)
     | json_values},
    optional={"priority": st.sampled_from(["High", "Normal", "Low", "Lowest", "normal"])
              | json_values,
              "random": st.integers(min_value=-2, max_value=2**32 + 1) | json_values,
              "cloudCustomData": st.text(max_size=10) | json_values,
              "op": st.just("send"), "extra": json_values})


def general_args(frame: dict[str, Any]) -> dict[str, Any] | FrameError:
    try:
        return protocol._parse_args(GENERAL_SEND, frame)
    except LivecastError as exc:
        return FrameError(exc.code, exc.info, None, False)


@settings(max_examples=1000, deadline=None)
@given(send_fields)
def test_a_send_validated_in_one_step_gets_the_field_checks_own_args(
        frame: dict[str, Any]) -> None:
    """Whatever the one-step check accepts, the field checks accept too, with
    the same args in the same order; anything else is left to them."""
    frame = orjson.loads(orjson.dumps(frame))  # as a client's frame comes: parsed JSON
    quick = protocol._quick_send(frame)
    if quick is not None:
        general = general_args(frame)
        assert isinstance(general, dict)
        assert list(quick.items()) == list(general.items())


def test_the_common_sends_are_validated_in_one_step() -> None:
    """Chat text, a gift's custom element, defaults filled in: the one step
    takes them (the test above is not vacuous), a malformed one is left."""
    text = {"groupId": "live-1", "msgBody": [{"MsgType": "TIMTextElem",
                                              "MsgContent": {"Text": "hi"}}]}
    gift = {"groupId": "live-1", "priority": "High", "random": 7, "cloudCustomData": "c",
            "msgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "rose"}},
                        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{}", "Desc": "g"}}]}
    for frame in (text, gift):
        assert protocol._quick_send(frame) == general_args(frame)
    two_customs = {**gift, "msgBody": gift["msgBody"][1:] * 2}
    assert protocol._quick_send(two_customs) is None
    assert isinstance(general_args(two_customs), FrameError)
    too_long = {**text, "cloudCustomData": "x" * MAX_MSG_BYTES}
    assert protocol._quick_send(too_long) is None
    assert general_args(too_long).code == Code.MSG_TOO_LONG  # type: ignore[union-attr]
