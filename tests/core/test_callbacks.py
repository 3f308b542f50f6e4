"""Callback bodies (reference section 3), the query string, and reply parsing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core import callbacks as cb
from livecast.core.callbacks import Action, Failure, Verdict
from livecast.core.messages import MAX_MSG_BYTES
from livecast.core.signing import tencent_sign

NOW = 1670574414.123456
TEXT = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}]
LIKE = [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "like"}}]


def sent(body: list[dict[str, Any]] = TEXT, ccd: str = "") -> dict[str, Any]:
    return cb.before_send("@TGS#2J4SZEAEL", "jared", "jared", 7, body, ccd, "Normal", NOW)


def reply(code: object = 0, status: int = 200, **fields: object) -> tuple[int, bytes]:
    return status, orjson.dumps({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": code,
                                 **fields})


# ------------------------------------------------------------------ bodies
def test_before_send_body() -> None:
    body = cb.before_send("@TGS#2J4SZEAEL", "jared", "admin", 123456, LIKE, "ccd", "Low", NOW)
    assert body == {
        "CallbackCommand": "Group.CallbackBeforeSendMsg", "GroupId": "@TGS#2J4SZEAEL",
        "Type": "AVChatRoom", "From_Account": "jared", "Operator_Account": "admin",
        "Random": 123456, "OnlineOnlyFlag": 0, "MsgBody": LIKE, "CloudCustomData": "ccd",
        "MsgPriority": "Low", "EventTime": 1670574414123}
    assert list(body)[-1] == "EventTime" and type(body["EventTime"]) is int


def test_after_send_body_has_seq_and_time_in_seconds() -> None:
    body = cb.after_send("g1", "jared", "jared", 9, TEXT, "", "High", 17, 1490686222987, NOW)
    assert body["CallbackCommand"] == "Group.CallbackAfterSendMsg"
    assert (body["MsgSeq"], body["MsgTime"], body["MsgPriority"]) == (17, 1490686222, "High")
    assert body["MsgBody"] == TEXT and body["OnlineOnlyFlag"] == 0 and body["Random"] == 9
    assert "GroupAtInfo" not in body and "MsgId" not in body


@pytest.mark.parametrize(("code", "info"), [
    (10023, "msg count exceeds limit,please retry later"),
    (10017, "the sender is muted in this group"),
    (10010, "the group was destroyed before the message was delivered"),
])
def test_send_exception_is_before_send_plus_error(code: int, info: str) -> None:
    body = cb.send_exception("g1", "u", "u", 1, TEXT, "x", "Lowest", code, NOW)
    before = cb.before_send("g1", "u", "u", 1, TEXT, "x", "Lowest", NOW)
    assert body.pop("ErrorCode") == code and body.pop("ErrorInfo") == info
    assert body == {**before, "CallbackCommand": "Group.CallbackSendMsgException"}
    assert cb.send_exception("g1", "u", "u", 1, TEXT, "", "Low", code, NOW,
                             info="own")["ErrorInfo"] == "own"


def test_before_join_body() -> None:
    assert cb.before_join("@TGS#2J4SZEAEL", "jared", NOW) == {
        "CallbackCommand": "Group.CallbackBeforeApplyJoinGroup", "GroupId": "@TGS#2J4SZEAEL",
        "Type": "AVChatRoom", "Requestor_Account": "jared", "ApplyMsg": "",
        "EventTime": 1670574414123}


def test_after_join_single_and_aggregated() -> None:
    assert cb.after_join("g1", ["jared"], NOW) == {
        "CallbackCommand": "Group.CallbackAfterNewMemberJoin", "GroupId": "g1",
        "Type": "AVChatRoom", "JoinType": "Apply", "Operator_Account": "jared",
        "NewMemberList": [{"Member_Account": "jared"}], "EventTime": 1670574414123}
    many = cb.after_join("g1", ["a", "b"], NOW)
    assert many["Operator_Account"] == "a"
    assert many["NewMemberList"] == [{"Member_Account": "a"}, {"Member_Account": "b"}]


def test_after_exit_quit_and_kicked() -> None:
    assert cb.after_exit("g1", ["jared"], NOW) == {
        "CallbackCommand": "Group.CallbackAfterMemberExit", "GroupId": "g1",
        "Type": "AVChatRoom", "ExitType": "Quit", "Operator_Account": "jared",
        "ExitMemberList": [{"Member_Account": "jared"}], "EventTime": 1670574414123}
    kicked = cb.after_exit("g1", ["jared"], NOW, "Kicked", operator="administrator")
    assert (kicked["ExitType"], kicked["Operator_Account"]) == ("Kicked", "administrator")


def test_member_events_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        cb.after_join("g1", [], NOW)
    with pytest.raises(ValueError):
        cb.after_exit("g1", [], NOW)
    with pytest.raises(ValueError):
        cb.after_exit("g1", ["a"], NOW, "Left")


def test_after_create_body() -> None:
    body = cb.after_create("g1", "leckie", "administrator", "MyFirstGroup",
                           {"Live": "on", "Likes": "3"}, NOW)
    assert body == {
        "CallbackCommand": "Group.CallbackAfterCreateGroup", "GroupId": "g1",
        "Type": "AVChatRoom", "Operator_Account": "administrator", "Owner_Account": "leckie",
        "Name": "MyFirstGroup", "MemberList": [],
        "UserDefinedDataList": [{"Key": "Live", "Value": "on"}, {"Key": "Likes", "Value": "3"}],
        "EventTime": 1670574414123}


def test_after_info_changed_reports_only_tencent_fields() -> None:
    changes = {"Notification": "New", "FaceUrl": "http://f", "MuteAllMember": "On",
               "AppDefinedData": [{"Key": "Likes", "Value": "9"}]}
    assert cb.after_info_changed("g1", "administrator", changes, NOW) == {
        "CallbackCommand": "Group.CallbackAfterGroupInfoChanged", "GroupId": "g1",
        "Type": "AVChatRoom", "Operator_Account": "administrator", "Notification": "New",
        "FaceUrl": "http://f", "EventTime": 1670574414123}
    assert cb.after_info_changed("g1", "a", {"AppDefinedData": []}, NOW) is None
    assert cb.after_info_changed("g1", "a", {"Name": ""}, NOW) is not None


def test_after_destroyed_body() -> None:
    assert cb.after_destroyed("g1", "leckie", "MyFirstGroup", NOW) == {
        "CallbackCommand": "Group.CallbackAfterGroupDestroyed", "GroupId": "g1",
        "Type": "AVChatRoom", "Owner_Account": "leckie", "Name": "MyFirstGroup",
        "MemberList": [], "EventTime": 1670574414123}


def test_every_command_is_listed_once() -> None:
    assert len(set(cb.COMMANDS)) == len(cb.COMMANDS) == 9
    assert all(c.startswith("Group.Callback") for c in cb.COMMANDS)


# ------------------------------------------------------------------ query string
def test_query_without_token() -> None:
    assert cb.query(1400000000, cb.AFTER_SEND, "10.0.0.7", "Web", "", 1669872112) == [
        ("SdkAppid", "1400000000"), ("CallbackCommand", "Group.CallbackAfterSendMsg"),
        ("contenttype", "json"), ("ClientIP", "10.0.0.7"), ("OptPlatform", "Web")]


def test_query_with_token_carries_the_tencent_vector() -> None:
    params = cb.query(1400000000, cb.BEFORE_SEND, "", "RESTAPI", "xxxxyyyy", 1669872112)
    assert params[-2:] == [
        ("Sign", "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"),
        ("RequestTime", "1669872112")]
    assert params[-2][1] == tencent_sign("xxxxyyyy", 1669872112)


# ------------------------------------------------------------------ before-send replies
@pytest.mark.parametrize(("raw", "expected"), [
    (reply(0), cb.ALLOW),
    (reply(1), Verdict(Action.REJECT, 10016, "rejected by the app backend")),
    (reply(1, ErrorInfo="no links"), Verdict(Action.REJECT, 10016, "no links")),
    (reply(2), cb.DROP),
    (reply(10100, ErrorInfo="level too low"), Verdict(Action.REJECT, 10100, "level too low")),
    (reply(10200), Verdict(Action.REJECT, 10200, "")),
    (reply(1, ErrorInfo=None), Verdict(Action.REJECT, 10016, "rejected by the app backend")),
    ((200, b"\xef\xbb\xbf" + reply(1, ErrorInfo="bom")[1]), Verdict(Action.REJECT, 10016, "bom")),
])
def test_before_send_verdicts(raw: tuple[int, bytes], expected: Verdict) -> None:
    assert cb.parse_before_send(*raw, sent()) == expected


@pytest.mark.parametrize("raw", [
    reply(10099), reply(10201), reply(3), reply(-1), reply(10016), reply(80003),
    reply(0, status=500), reply(0, status=204), reply("0"), reply(True), reply(0.0),
    reply(None), reply(1, ErrorInfo=5), (200, b"not json"), (200, b"[0]"), (200, b""),
    (200, b'{"ActionStatus":"OK"}'),
])
def test_before_send_failures(raw: tuple[int, bytes]) -> None:
    assert isinstance(cb.parse_before_send(*raw, sent()), Failure)


def test_before_send_replacements() -> None:
    v = cb.parse_before_send(*reply(0, MsgBody=LIKE, CloudCustomData="new"), sent())
    assert v == Verdict(Action.ALLOW, msg_body=LIKE, cloud_custom_data="new")
    assert isinstance(v, Verdict) and v.message(TEXT, "old") == (LIKE, "new")
    only_ccd = cb.parse_before_send(*reply(0, CloudCustomData=""), sent(ccd="old"))
    assert isinstance(only_ccd, Verdict) and only_ccd.message(TEXT, "old") == (TEXT, "")
    nulls = cb.parse_before_send(*reply(0, MsgBody=None, CloudCustomData=None), sent())
    assert nulls == cb.ALLOW and cb.ALLOW.message(TEXT, "x") == (TEXT, "x")


@pytest.mark.parametrize("fields", [
    {"MsgBody": []},
    {"MsgBody": "text"},
    {"MsgBody": [{"MsgType": "TIMRelayElem", "MsgContent": {}}]},
    {"MsgBody": LIKE + LIKE},
    {"CloudCustomData": 5},
    {"MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * MAX_MSG_BYTES}}]},
])
def test_invalid_replacement_is_a_failure(fields: dict[str, Any]) -> None:
    assert isinstance(cb.parse_before_send(*reply(0, **fields), sent()), Failure)


def test_replacement_size_counts_the_kept_original() -> None:
    big = "y" * (MAX_MSG_BYTES - 100)
    v = cb.parse_before_send(*reply(0, CloudCustomData=big), sent(ccd="x"))
    assert isinstance(v, Verdict)
    fat_body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "z" * 200}}]
    assert isinstance(cb.parse_before_send(*reply(0, CloudCustomData=big), sent(fat_body)),
                      Failure)


# ------------------------------------------------------------------ before-join replies
@pytest.mark.parametrize(("raw", "expected"), [
    (reply(0), cb.ALLOW),
    (reply(1), Verdict(Action.REJECT, 10016, "rejected by the app backend")),
    (reply(10100, ErrorInfo="VIP only"), Verdict(Action.REJECT, 10100, "VIP only")),
    (reply(10200), Verdict(Action.REJECT, 10200, "")),
])
def test_before_join_verdicts(raw: tuple[int, bytes], expected: Verdict) -> None:
    assert cb.parse_before_join(*raw) == expected


@pytest.mark.parametrize("raw", [
    reply(2), reply(10099), reply(10201), reply(0, status=500), (200, b"<html>"), reply("1"),
])
def test_before_join_failures(raw: tuple[int, bytes]) -> None:
    assert isinstance(cb.parse_before_join(*raw), Failure)


def test_join_replacements_are_ignored() -> None:
    assert cb.parse_before_join(*reply(0, MsgBody="whatever")) == cb.ALLOW


def test_failure_policy() -> None:
    assert cb.failure_verdict(False) == Verdict(Action.ALLOW, failed=True)
    closed = cb.failure_verdict(True)
    assert (closed.action, closed.code, closed.failed) == (Action.REJECT, 80003, True)


@given(status=st.integers(100, 599), data=st.binary(max_size=64))
def test_parsers_never_raise_on_arbitrary_bytes(status: int, data: bytes) -> None:
    for result in (cb.parse_before_send(status, data, sent()), cb.parse_before_join(status, data)):
        assert isinstance(result, Verdict | Failure)
        if status != 200:
            assert isinstance(result, Failure)


@given(code=st.integers(-(2**63), 2**63 - 1), info=st.text(max_size=10))
def test_only_defined_codes_give_a_verdict(code: int, info: str) -> None:
    send = cb.parse_before_send(*reply(code, ErrorInfo=info), sent())
    join = cb.parse_before_join(*reply(code, ErrorInfo=info))
    assert isinstance(send, Verdict) == (code in (0, 1, 2) or 10100 <= code <= 10200)
    assert isinstance(join, Verdict) == (code in (0, 1) or 10100 <= code <= 10200)
    if isinstance(send, Verdict) and send.action is Action.REJECT:
        assert send.code == (10016 if code == 1 else code)
