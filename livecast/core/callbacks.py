"""Webhook bodies, query strings and reply parsing (docs/webhooks.md).  Pure: every time comes in as
``now`` (unix seconds); nothing here does I/O.

Invariants:
- every body carries ``CallbackCommand``, ``GroupId``, ``Type`` ("AVChatRoom")
  and ``EventTime`` (an integer, milliseconds, 3.1), then the fields of its
  command exactly as the reference lists them;
- the query string is ``SdkAppid``, ``CallbackCommand``, ``contenttype=json``,
  ``ClientIP``, ``OptPlatform`` in that order, then ``Sign`` and
  ``RequestTime`` when a token is configured (3.1, 3.3);
- a reply parses to a ``Verdict`` only when it is HTTP 200, a JSON object, an
  integer ``ErrorCode`` the command defines, a string ``ErrorInfo`` (or
  none) and, for an allowing before-send reply, a valid replacement; anything
  else is a ``Failure`` (3.1: "non-200 or non-JSON = failure").

Decisions on points the reference leaves open ([U]), written up in
docs/webhooks.md:
- before-send, after-send and send-exception bodies carry the message
  priority as an extra field ``MsgPriority`` ("High" ... "Lowest"), the name
  send_group_msg uses (2.5); ``MsgId`` and ``GroupAtInfo`` are omitted
  (livecast has no client message ids and AVChatRoom has no @ lists);
- ``MsgTime`` of after-send is in seconds, as in send_group_msg's answer;
- AVChatRoom keeps no member list: after-create and after-destroyed send
  ``MemberList: []``; after-create's ``UserDefinedDataList`` is the group's
  ``AppDefinedData``;
- after-info-changed reports only what Tencent reports (Name, Introduction,
  Notification, FaceUrl); a change of nothing else (AppDefinedData,
  MuteAllMember) builds no body (``None``);
- every join is a self-join (``JoinType`` "Apply"); ``Operator_Account`` of
  a join or a quit is the member (the first one of an aggregated list);
- a reply's ``ActionStatus`` is not read (Tencent decides on ``ErrorCode``);
  ``MsgBody`` / ``CloudCustomData`` present as ``null`` count as absent; an
  invalid replacement (``validate_msg_body``, or the message over 12 KB with
  it) makes the callback a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from livecast.core.group import GROUP_TYPE
from livecast.core.messages import check_size, validate_msg_body
from livecast.core.signing import tencent_sign
from livecast.errors import Code, LivecastError

BEFORE_SEND = "Group.CallbackBeforeSendMsg"
AFTER_SEND = "Group.CallbackAfterSendMsg"
SEND_EXCEPTION = "Group.CallbackSendMsgException"
BEFORE_JOIN = "Group.CallbackBeforeApplyJoinGroup"
AFTER_JOIN = "Group.CallbackAfterNewMemberJoin"
AFTER_EXIT = "Group.CallbackAfterMemberExit"
AFTER_CREATE = "Group.CallbackAfterCreateGroup"
AFTER_INFO_CHANGED = "Group.CallbackAfterGroupInfoChanged"
AFTER_DESTROYED = "Group.CallbackAfterGroupDestroyed"
COMMANDS: tuple[str, ...] = (BEFORE_SEND, AFTER_SEND, SEND_EXCEPTION, BEFORE_JOIN, AFTER_JOIN,
                             AFTER_EXIT, AFTER_CREATE, AFTER_INFO_CHANGED, AFTER_DESTROYED)

PLATFORM_REST = "RESTAPI"  # OptPlatform of REST calls
PLATFORM_WEB = "Web"       # OptPlatform of WebSocket clients
DROP_REASON = "Callback"   # the sender's dropReason after a silent drop (ErrorCode 2)
CUSTOM_CODES = range(10100, 10201)  # group pre-webhook custom codes, passed to the sender
INFO_CHANGED_FIELDS = ("Name", "Introduction", "Notification", "FaceUrl")
#: ErrorInfo of Group.CallbackSendMsgException per ErrorCode (3.6).
EXCEPTION_INFO: Mapping[int, str] = {
    Code.FREQ_LIMIT: "msg count exceeds limit,please retry later",
    Code.MUTED: "the sender is muted in this group",
    Code.GROUP_NOT_FOUND: "the group was destroyed before the message was delivered",
}


def event_time(now: float) -> int:
    """``EventTime``: integer milliseconds (3.1)."""
    return int(now * 1000)


def _event(command: str, group_id: str, now: float, **fields: Any) -> dict[str, Any]:
    """A body: the common head, ``fields`` in order, ``EventTime`` last (as the samples)."""
    body: dict[str, Any] = {"CallbackCommand": command, "GroupId": group_id, "Type": GROUP_TYPE}
    body.update(fields)
    body["EventTime"] = event_time(now)
    return body


def _message(command: str, group_id: str, from_account: str, operator: str, random: int,
             msg_body: list[dict[str, Any]], cloud_custom_data: str, priority: str,
             now: float, **extra: Any) -> dict[str, Any]:
    return _event(command, group_id, now, From_Account=from_account, Operator_Account=operator,
                  Random=random, **extra, OnlineOnlyFlag=0, MsgBody=msg_body,
                  CloudCustomData=cloud_custom_data, MsgPriority=priority)


def before_send(group_id: str, from_account: str, operator: str, random: int,
                msg_body: list[dict[str, Any]], cloud_custom_data: str, priority: str,
                now: float) -> dict[str, Any]:
    """Group.CallbackBeforeSendMsg (3.4); ``operator`` is who issued the send."""
    return _message(BEFORE_SEND, group_id, from_account, operator, random, msg_body,
                    cloud_custom_data, priority, now)


def after_send(group_id: str, from_account: str, operator: str, random: int,
               msg_body: list[dict[str, Any]], cloud_custom_data: str, priority: str,
               seq: int, msg_time_ms: int, now: float) -> dict[str, Any]:
    """Group.CallbackAfterSendMsg (3.5): a delivered message; ``MsgTime`` in seconds."""
    return _message(AFTER_SEND, group_id, from_account, operator, random, msg_body,
                    cloud_custom_data, priority, now, MsgSeq=seq, MsgTime=msg_time_ms // 1000)


def send_exception(group_id: str, from_account: str, operator: str, random: int,
                   msg_body: list[dict[str, Any]], cloud_custom_data: str, priority: str,
                   code: int, now: float, info: str | None = None) -> dict[str, Any]:
    """Group.CallbackSendMsgException (3.6): before-send fields + ErrorCode/ErrorInfo
    (10023 for a rate-limit drop, 10017 for a muted sender, 10010 for a message
    still waiting when its group was destroyed, the refusal's own code and
    ``info`` for a sender banned, gone from the room or disconnected while its
    before-send was answered)."""
    body = _message(SEND_EXCEPTION, group_id, from_account, operator, random, msg_body,
                    cloud_custom_data, priority, now)
    body["ErrorCode"] = int(code)
    body["ErrorInfo"] = EXCEPTION_INFO.get(code, "") if info is None else info
    return body


def before_join(group_id: str, requestor: str, now: float, apply_msg: str = "") -> dict[str, Any]:
    """Group.CallbackBeforeApplyJoinGroup (3.7)."""
    return _event(BEFORE_JOIN, group_id, now, Requestor_Account=requestor, ApplyMsg=apply_msg)


def _accounts(members: Sequence[str]) -> list[dict[str, str]]:
    if not members:
        raise ValueError("a member event needs at least one member")
    return [{"Member_Account": m} for m in members]


def after_join(group_id: str, members: Sequence[str], now: float) -> dict[str, Any]:
    """Group.CallbackAfterNewMemberJoin (3.8): self-joins, possibly aggregated."""
    accounts = _accounts(members)
    return _event(AFTER_JOIN, group_id, now, JoinType="Apply", Operator_Account=members[0],
                  NewMemberList=accounts)


def after_exit(group_id: str, members: Sequence[str], now: float, exit_type: str = "Quit",
               operator: str | None = None) -> dict[str, Any]:
    """Group.CallbackAfterMemberExit (3.9): ``Quit`` (operator: the member) or
    ``Kicked`` (operator: the admin who banned)."""
    if exit_type not in ("Quit", "Kicked"):
        raise ValueError(f"ExitType {exit_type!r}")
    accounts = _accounts(members)
    return _event(AFTER_EXIT, group_id, now, ExitType=exit_type,
                  Operator_Account=members[0] if operator is None else operator,
                  ExitMemberList=accounts)


def after_create(group_id: str, owner: str, operator: str, name: str,
                 app_defined: Mapping[str, str], now: float) -> dict[str, Any]:
    """Group.CallbackAfterCreateGroup (3.12; Tencent's page 34369)."""
    return _event(AFTER_CREATE, group_id, now, Operator_Account=operator, Owner_Account=owner,
                  Name=name, MemberList=[],
                  UserDefinedDataList=[{"Key": k, "Value": v} for k, v in app_defined.items()])


def after_info_changed(group_id: str, operator: str, changes: Mapping[str, Any],
                       now: float) -> dict[str, Any] | None:
    """Group.CallbackAfterGroupInfoChanged (3.12; page 34378): the changed Name,
    Introduction, Notification, FaceUrl; None when none of them changed."""
    changed = {k: changes[k] for k in INFO_CHANGED_FIELDS if k in changes}
    if not changed:
        return None
    return _event(AFTER_INFO_CHANGED, group_id, now, Operator_Account=operator, **changed)


def after_destroyed(group_id: str, owner: str, name: str, now: float) -> dict[str, Any]:
    """Group.CallbackAfterGroupDestroyed (3.12; page 34377)."""
    return _event(AFTER_DESTROYED, group_id, now, Owner_Account=owner, Name=name, MemberList=[])


def query(sdkappid: int, command: str, client_ip: str, platform: str, token: str,
          request_time: int) -> list[tuple[str, str]]:
    """The query string appended to the callback URL (3.1, 3.3), in order."""
    params = [("SdkAppid", str(sdkappid)), ("CallbackCommand", command),
              ("contenttype", "json"), ("ClientIP", client_ip), ("OptPlatform", platform)]
    if token:
        params += [("Sign", tencent_sign(token, request_time)),
                   ("RequestTime", str(request_time))]
    return params


# ------------------------------------------------------------------ replies
class Action(StrEnum):
    ALLOW = "allow"
    REJECT = "reject"  # answer the sender with ``code`` / ``info``
    DROP = "drop"      # answer success with dropReason "Callback"; deliver nothing


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a send or a join.  ``msg_body`` / ``cloud_custom_data``
    are replacements (None: keep the original); ``failed`` marks a verdict
    that the failure policy gave, not the backend."""

    action: Action
    code: int = 0
    info: str = ""
    msg_body: list[dict[str, Any]] | None = None
    cloud_custom_data: str | None = None
    failed: bool = False

    def message(self, msg_body: list[dict[str, Any]],
                cloud_custom_data: str) -> tuple[list[dict[str, Any]], str]:
        """The message to deliver: the replacements over the originals."""
        return (msg_body if self.msg_body is None else self.msg_body,
                cloud_custom_data if self.cloud_custom_data is None else self.cloud_custom_data)


@dataclass(frozen=True, slots=True)
class Failure:
    """The callback failed (timeout, transport, HTTP status, unparsable reply)."""

    reason: str


ALLOW = Verdict(Action.ALLOW)
DROP = Verdict(Action.DROP)


def failure_verdict(fail_closed: bool) -> Verdict:
    """The failure policy (3.2): allow (fail open, Tencent's default) or 80003."""
    if fail_closed:
        return Verdict(Action.REJECT, Code.CALLBACK_FAILED,
                       "the app backend's callback failed", failed=True)
    return Verdict(Action.ALLOW, failed=True)


def _envelope(status: int, data: bytes) -> tuple[int, str, dict[str, Any]] | Failure:
    """``(ErrorCode, ErrorInfo, reply)`` of a reply, or why it is unusable."""
    if status != 200:
        return Failure(f"HTTP {status}")
    try:
        obj = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))  # a BOM some stacks write
    except orjson.JSONDecodeError:
        return Failure("reply is not JSON")
    if not isinstance(obj, dict):
        return Failure("reply is not a JSON object")
    code, info = obj.get("ErrorCode"), obj.get("ErrorInfo")
    if not isinstance(code, int) or isinstance(code, bool):
        return Failure("ErrorCode is not an integer")
    if info is None:  # absent, or null (a serializer's default for an unset field)
        info = ""
    if not isinstance(info, str):
        return Failure("ErrorInfo is not a string")
    return code, info, obj


def _refusal(code: int, info: str) -> Verdict | None:
    """1 -> 10016; a custom code 10100..10200 -> itself; else None."""
    if code == 1:
        return Verdict(Action.REJECT, Code.CALLBACK_REJECTED,
                       info or "rejected by the app backend")
    if code in CUSTOM_CODES:
        return Verdict(Action.REJECT, code, info)
    return None


def parse_before_join(status: int, data: bytes) -> Verdict | Failure:
    """A Group.CallbackBeforeApplyJoinGroup reply (3.7): 0, 1, 10100..10200."""
    env = _envelope(status, data)
    if isinstance(env, Failure):
        return env
    code, info, _ = env
    if code == 0:
        return ALLOW
    return _refusal(code, info) or Failure(f"unexpected ErrorCode {code}")


def parse_before_send(status: int, data: bytes, sent: Mapping[str, Any]) -> Verdict | Failure:
    """A Group.CallbackBeforeSendMsg reply (3.4): 0 (with replacements), 1, 2,
    10100..10200.  ``sent`` is the body that was sent (for the size check)."""
    env = _envelope(status, data)
    if isinstance(env, Failure):
        return env
    code, info, reply = env
    if code == 0:
        return _allow_with(reply, sent)
    if code == 2:
        return DROP
    return _refusal(code, info) or Failure(f"unexpected ErrorCode {code}")


def _allow_with(reply: Mapping[str, Any], sent: Mapping[str, Any]) -> Verdict | Failure:
    new_body, new_ccd = reply.get("MsgBody"), reply.get("CloudCustomData")
    if new_body is None and new_ccd is None:
        return ALLOW
    try:
        if new_body is not None:
            validate_msg_body(new_body)
        if new_ccd is not None and not isinstance(new_ccd, str):
            return Failure("CloudCustomData replacement is not a string")
        verdict = Verdict(Action.ALLOW, msg_body=new_body, cloud_custom_data=new_ccd)
        check_size(*verdict.message(sent["MsgBody"], sent["CloudCustomData"]))
    except LivecastError as err:
        return Failure(f"invalid replacement: {err.info}")
    return verdict
