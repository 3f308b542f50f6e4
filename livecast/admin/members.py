"""Members of a live room: mute, ban, online count and list, and the refusals.

References are to docs/rest.md: forbid_send_msg (``MuteTime``, or the older
``ShutUpTime``) / get_group_muted_account (the older name
get_group_shutted_uin answers the older ``ShuttedUinList`` shape),
get_online_member_num / get_members / check_members, ban_group_member /
unban_group_member / get_group_ban_member, and the member APIs an
AVChatRoom refuses.

An AVChatRoom stores no member list: "members" are the logged-in
connections in the room right now (guests are not listed). Mute and ban
end times are whole unix seconds; 4294967295 means forever (core/group.py).
"""

from __future__ import annotations

import time
from typing import Any

from livecast.admin.table import (
    UINT32_MAX,
    Body,
    Call,
    command,
    integer,
    refuse,
    room_of,
    text,
    users,
)
from livecast.errors import Code

SVC = "group_open_http_svc"
AVC_SVC = "group_open_avchatroom_http_svc"
MAX_MUTE_ACCOUNTS = 500
MAX_BAN_ACCOUNTS = 20
MAX_BAN_PAGE = 100
DEFAULT_BAN_PAGE = 20
MAX_CHECK_ACCOUNTS = 500
DESCRIPTION_LIMIT = 1000


@command(SVC, "forbid_send_msg")
async def forbid_send_msg(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    accounts = users(body, "Members_Account", most=MAX_MUTE_ACCOUNTS)
    # ShutUpTime is the older name (the one Tencent's server SDKs still send).
    name = "MuteTime" if "MuteTime" in body or "ShutUpTime" not in body else "ShutUpTime"
    seconds = integer(body, name, 0, UINT32_MAX)
    await call.node.mute(room.group_id, accounts, seconds)
    return {}


@command(SVC, "get_group_muted_account")
async def get_group_muted_account(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    return {"GroupId": room.group_id,
            "MutedAccountList": room.group.muted_list(call.node.clock())}


@command(SVC, "get_group_shutted_uin")
async def get_group_shutted_uin(call: Call, body: Body) -> Body:
    """The older name answers in the older shape, the one its callers read."""
    room = room_of(call.node, body)
    muted = room.group.muted_list(call.node.clock())
    return {"GroupId": room.group_id,
            "ShuttedUinList": [{"Member_Account": m["Member_Account"],
                                "ShuttedUntil": m["MutedUntil"]} for m in muted]}


@command(SVC, "get_online_member_num")
async def get_online_member_num(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    return {"OnlineMemberNum": call.node.online(room.group_id)}


@command(SVC, "ban_group_member")
async def ban_group_member(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    accounts = users(body, "Members_Account", most=MAX_BAN_ACCOUNTS)
    seconds = integer(body, "Duration", 1, UINT32_MAX)
    text(body, "Description", DESCRIPTION_LIMIT, default="")
    await call.node.ban(room.group_id, accounts, seconds, call.caller, call.client_ip)
    return {}


@command(SVC, "unban_group_member")
async def unban_group_member(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    await call.node.unban(room.group_id, users(body, "Members_Account", most=MAX_BAN_ACCOUNTS))
    return {}


@command(SVC, "get_group_ban_member")
async def get_group_ban_member(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    limit = integer(body, "Limit", 1, MAX_BAN_PAGE, default=DEFAULT_BAN_PAGE)
    offset = integer(body, "Offset", 0, UINT32_MAX, default=0)
    banned = room.group.banned_list(call.node.clock())
    end = offset + limit
    return {"BannedAccountList": banned[offset:end],
            "NextOffset": end if end < len(banned) else 0}


async def _listing(call: Call, gid: str) -> list[dict[str, Any]]:
    """The room's members, one entry per user (its newest connection's), the
    newest first: made once and kept ``LISTING_TTL`` s, so the pages of one
    listing come from one snapshot and a big room is sorted once, not per page."""
    state = call.state
    kept = state.listing(gid, time.monotonic())
    if kept is not None:
        return kept
    members = await call.node.room_members(gid)  # every process's, in a cluster
    joined = state.joined_at(gid, [(nid, conn) for nid, conn, *_rest in members],
                             call.node.clock())
    seen: set[str] = set()
    online = []
    for (_nid, _conn, user, nick, avatar), at in sorted(
            zip(members, joined, strict=True), key=lambda entry: -entry[1]):
        if user not in seen:
            seen.add(user)
            online.append({"Member_Account": user, "JoinTime": int(at), "NickName": nick,
                           "Avatar": avatar})
    state.keep_listing(gid, time.monotonic(), online)
    return online


@command(AVC_SVC, "get_members")
async def get_members(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    start = integer(body, "Timestamp", 0, 2**63 - 1, default=0)
    if "Mark" in body:
        integer(body, "Mark", 0, UINT32_MAX)
    online = await _listing(call, room.group_id)
    end = start + call.state.members_page
    return {"MemberList": online[start:end], "NextTimestamp": end if end < len(online) else 0}


@command(AVC_SVC, "check_members")
async def check_members(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    wanted = users(body, "Member_Account", most=MAX_CHECK_ACCOUNTS)
    present = {user for _nid, _conn, user, _nick, _avatar
               in await call.node.room_members(room.group_id)}
    return {"Member_Account": [u for u in wanted if u in present]}


# 2.10: an AVChatRoom's members join through the SDK; REST cannot add, import or remove.
command(SVC, "add_group_member")(
    refuse(Code.NO_PERMISSION, "an AVChatRoom takes no members by REST: they join by SDK"))
command(SVC, "import_group_member")(
    refuse(Code.NO_PERMISSION, "an AVChatRoom cannot import members"))
command(SVC, "delete_group_member")(
    refuse(Code.BAD_PARAMETER, "an AVChatRoom cannot delete members: mute or ban them"))
