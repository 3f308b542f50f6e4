"""Messages: send_group_msg, send_group_system_notification, send_broadcast_msg,
and the AVChatRoom refusal of group_msg_get_simple (service group_open_http_svc).

References are to docs/rest.md (send_group_msg, send_group_system_notification,
send_broadcast_msg) and to docs/design.md (the room scheduler).

Invariants:
- a REST message enters the room through ``node.submit``, the same scheduler
  WebSocket sends go through: it shares the room's seq space, rate and
  priority queues; its ``nick``/``avatar`` are the sender's profile in
  ``node.profiles`` at submit time;
- send_group_msg answers when the message's fate is known (the ``fate``
  callback resolves a future): delivered (MsgSeq > 0) or dropped by the rate
  limit (MsgSeq 0, ``MsgDropReason`` "MsgFreqCtrl"); a waiting HTTP request
  that goes away never disturbs the message or other waiters (``shield``);
- ``Random`` de-duplication: a send with the same (GroupId, From_Account,
  Random) as an *admitted* send of the last 5 minutes is not delivered again;
  it gets the first send's answer (waiting for it if need be). A refused send
  (an error code) is not remembered, nor is an admitted one whose answer is
  an error certain that nothing was delivered (10010, 10002 at a shutdown):
  its retry with the same ``Random`` is a new send.  A cluster's 10002 whose
  fate is unknown (``UNSURE_INFOS``: it may have been delivered) stays
  remembered, so that its retry is not delivered twice;
- system notifications are tips: not rate limited, no seq, no webhooks (2.6).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from livecast.admin.state import Answer, SendKey
from livecast.admin.table import (
    UINT32_MAX,
    Body,
    Call,
    command,
    integer,
    refuse,
    required,
    room_of,
    strings,
    typed,
    user,
)
from livecast.core.callbacks import PLATFORM_REST
from livecast.core.fate import UNSURE_INFOS, Address
from livecast.core.group_fields import bad, utf8_len
from livecast.core.messages import (
    MAX_MSG_BYTES,
    check_size,
    message_size,
    validate_cloud_custom_data,
    validate_msg_body,
)
from livecast.core.scheduler import PRIORITY_NAMES, Priority, parse_priority
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.node.room import BroadcastOutgoing, Outgoing
from livecast.store.base import StoreError

SVC = "group_open_http_svc"
BROADCAST_INTERVAL = 1.0  # seconds between two broadcasts (2.11)
BROADCAST_MAX_BYTES = 12000  # 2.11: one broadcast message <= 12 000 bytes

log = logging.getLogger("livecast.admin")


@dataclass(frozen=True, slots=True)
class Send:
    """A validated send_group_msg / send_broadcast_msg request."""

    sender: str
    random: int
    priority: Priority
    body: list[dict[str, Any]]
    cloud_custom_data: str


def parse_send(body: Body, caller: str, *, priorities: bool = True) -> Send:
    """Everything a send carries, validated; nothing is looked up or changed."""
    sender = user(body, "From_Account", default=caller)
    random = integer(body, "Random", 0, UINT32_MAX)
    priority = Priority.NORMAL
    if priorities and "MsgPriority" in body:
        found = parse_priority(body["MsgPriority"])
        if found is None:
            raise bad(f"MsgPriority must be one of {', '.join(PRIORITY_NAMES)}")
        priority = found
    msg_body = validate_msg_body(required(body, "MsgBody"))
    ccd = validate_cloud_custom_data(body.get("CloudCustomData"))
    _check_controls(body)
    return Send(sender, random, priority, msg_body, ccd)


def _check_controls(body: Body) -> None:
    """Fields accepted for compatibility; none changes what an AVChatRoom does (2.5)."""
    for name in ("ForbidCallbackControl", "SendMsgControl"):
        if name in body:
            strings(body[name], name, most=16)
    for name in ("OnlineOnlyFlag", "SupportMessageExtension"):
        if name in body:
            integer(body, name, 0, 1)
    typed(body, "OfflinePushInfo", dict)
    typed(body, "GroupAtInfo", list)
    typed(body, "TopicId", str)
    if "To_Account" in body and strings(body["To_Account"], "To_Account", most=50):
        raise bad("To_Account (targeted group messages) is not supported in an AVChatRoom")


DUPLICATE = "Duplicate"  # MsgDropReason of a repeat whose first answer was lost in a restart


async def _claimed_before(node: Node, key: SendKey, now: float) -> bool:
    """Whether this (group, sender, Random) was claimed within 5 minutes by a
    send made before a restart or on another process, else claim it now: one
    atomic step in the store (``Store.seen``), so that of two concurrent
    repeats exactly one goes on.  The memory table answers repeats within one
    run.  A failing store does not stop sends: the check is then skipped."""
    try:
        return await node.store.seen(_dedup_key(key), now)
    except StoreError as err:
        log.warning("Random de-duplication skipped: %s", err)
        return False


def _dedup_key(key: SendKey) -> str:
    gid, sender, random = key
    return f"send\0{gid}\0{sender}\0{random}"


@command(SVC, "send_group_msg")
async def send_group_msg(call: Call, body: Body) -> Body:
    node = call.node
    room = room_of(node, body)
    send = parse_send(body, call.caller)
    check_size(send.body, send.cloud_custom_data)
    await node.load_profile(send.sender)  # its nick and avatar (before the record below)
    now = node.clock()
    key: SendKey = (room.group_id, send.sender, send.random)
    earlier = call.state.sends.find(key, now)
    if earlier is not None:
        return await asyncio.shield(earlier)
    waiter, answer = node.rest_waiter()
    nick, avatar = node.profiles.get(send.sender, ("", ""))
    forbid = body.get("ForbidCallbackControl") or ()
    msg = Outgoing(send.sender, nick, avatar, send.priority, send.random, send.body,
                   send.cloud_custom_data, Address(rest=waiter, node=node.node_id),
                   operator=call.caller,
                   client_ip=call.client_ip, platform=PLATFORM_REST,
                   before_callback="ForbidBeforeSendMsgCallback" not in forbid,
                   after_callback="ForbidAfterSendMsgCallback" not in forbid)
    try:  # the app admin may speak under mute-all; a muted or banned sender may not
        node.check_rest_send(room.group_id, msg)
    except LivecastError:
        node.rest_waiters.pop(waiter, None)
        raise
    call.state.sends.record(key, answer, now)  # before any await: a repeat waits on it
    if await _claimed_before(node, key, now):  # before a restart, or on another process
        node.rest_waiters.pop(waiter, None)
        duplicate = {"MsgSeq": 0, "MsgTime": int(now), "MsgDropReason": DUPLICATE}
        answer.set_result(duplicate)  # the repeats waiting here get it too
        return duplicate
    try:
        await node.send(room.group_id, msg)
    except LivecastError as err:
        await _forget(node, call, key)  # refused: not remembered
        node.rest_waiters.pop(waiter, None)
        answer.set_exception(err)
        answer.exception()  # retrieved here: waiters (repeats) re-raise it themselves
        raise
    try:
        return await asyncio.shield(answer)
    except LivecastError as err:  # failed after admission: the client is told so
        if err.info not in UNSURE_INFOS:  # certain that nothing was delivered
            await _forget(node, call, key)
        raise


async def _forget(node: Node, call: Call, key: SendKey) -> None:
    """A send that failed is not a duplicate of its retry (memory and store)."""
    call.state.sends.forget(key)
    try:
        await node.store.unsee(_dedup_key(key))
    except StoreError as err:
        log.warning("Random de-duplication not cleared: %s", err)


@command(SVC, "send_group_system_notification")
async def send_group_system_notification(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    if "ToMembers_Account" in body and strings(body["ToMembers_Account"], "ToMembers_Account"):
        raise bad("ToMembers_Account must be empty: an AVChatRoom notifies all online members")
    content = required(body, "Content")
    if not isinstance(content, str):
        raise bad("Content must be a string")
    size = utf8_len(content, "Content")
    if size > MAX_MSG_BYTES:
        raise LivecastError(Code.MSG_TOO_LONG, f"Content is {size} bytes, over {MAX_MSG_BYTES}")
    call.node.system_notification(room.group_id, content)
    return {}


async def _broadcast_elsewhere(node: Node, now: float) -> bool:
    """In a cluster the 1/s limit is the cluster's: one key set NX with a 1 s
    expiry in the shared store (Redis SET NX PX); True if another call took it."""
    if node.cluster is None:
        return False
    try:
        return await node.store.seen("broadcast-rate", now, BROADCAST_INTERVAL)
    except StoreError as err:
        raise LivecastError(Code.INTERNAL, "the broadcast limit could not be checked: "
                                           "try again") from err


@command(SVC, "send_broadcast_msg")
async def send_broadcast_msg(call: Call, body: Body) -> Body:
    node, state = call.node, call.state
    send = parse_send(body, call.caller, priorities=False)
    size = message_size(send.body, send.cloud_custom_data)
    if size > BROADCAST_MAX_BYTES:
        raise LivecastError(Code.MSG_TOO_LONG, f"broadcast is {size} bytes, over 12000")
    await node.load_profile(send.sender)
    now = node.clock()
    key: SendKey = ("", send.sender, send.random)
    earlier = state.sends.find(key, now)
    if earlier is not None:
        return await asyncio.shield(earlier)
    if now - state.last_broadcast < BROADCAST_INTERVAL or await _broadcast_elsewhere(node, now):
        raise LivecastError(Code.FREQ_LIMIT, "send_broadcast_msg: at most one call per second")
    state.last_broadcast = now
    state.broadcast_seq += 1
    nick, avatar = node.profiles.get(send.sender, ("", ""))
    for gid in list(node.rooms):
        node.submit(gid, BroadcastOutgoing(send.sender, nick, avatar, Priority.HIGH, send.random,
                                           send.body, send.cloud_custom_data,
                                           operator=call.caller, client_ip=call.client_ip,
                                           platform=PLATFORM_REST, before_callback=False))
    answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    answer.set_result({"MsgSeq": state.broadcast_seq})
    state.sends.record(key, answer, now)
    return {"MsgSeq": state.broadcast_seq}


command(SVC, "group_msg_get_simple")(
    refuse(Code.NO_ROAMING, "an AVChatRoom keeps no message history (10044)"))
