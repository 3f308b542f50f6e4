"""Group lifecycle and profile: create_group, destroy_group, get_group_info,
modify_group_base_info, get_appid_group_list (service group_open_http_svc).

References are to docs/rest.md: create_group, destroy_group,
get_group_info, modify_group_base_info, get_appid_group_list, and the
Tencent page of get_appid_group_list (Limit <= 10000, Next cursor, GroupType).
The group model and its byte limits live in core/group.py; this module adds
the request shapes, the fields livecast ignores but type-checks
(``MaxMemberCount``/``MaxMemberNum``, ``ApplyJoinOption``) and the listing
cursor. Every handler validates the whole request before it changes anything.
"""

from __future__ import annotations

from typing import Any

from livecast.admin.table import (
    UINT32_MAX,
    Body,
    Call,
    array,
    command,
    integer,
    one_of,
    required,
    room_of,
    strings,
    text,
    user,
)
from livecast.core.group import PROFILE_LIMITS, is_valid_group_id, validate_custom_group_id
from livecast.core.group_fields import bad
from livecast.errors import Code, LivecastError

SVC = "group_open_http_svc"
AVCHATROOM = "AVChatRoom"
# Every Type Tencent knows (2.1, with the old names); only AVChatRoom is served.
GROUP_TYPES = ("Public", "Private", "Work", "ChatRoom", "Meeting", "AVChatRoom", "BChatRoom",
               "Community")
JOIN_OPTIONS = ("FreeAccess", "NeedPermission", "DisableApply")
MAX_INFO_IDS = 50
LIST_LIMIT = 10000
_FILTERS = ("GroupBaseInfoFilter", "MemberInfoFilter", "AppDefinedDataFilter_Group",
            "AppDefinedDataFilter_GroupMember")


def _check_ignored(body: Body, max_field: str) -> None:
    """Fields Tencent documents that mean nothing for an AVChatRoom: typed, then ignored."""
    if max_field in body:
        integer(body, max_field, 0, UINT32_MAX)
    one_of(body, "ApplyJoinOption", JOIN_OPTIONS)


@command(SVC, "create_group")
async def create_group(call: Call, body: Body) -> Body:
    kind = required(body, "Type")
    if not isinstance(kind, str) or kind not in GROUP_TYPES:
        raise bad(f"Type must be one of {', '.join(GROUP_TYPES)}")
    if kind != AVCHATROOM:
        raise LivecastError(Code.NO_PERMISSION, "livecast serves AVChatRoom groups only")
    text(body, "Name", PROFILE_LIMITS["Name"], min_bytes=1)
    owner = user(body, "Owner_Account", default="")
    gid = validate_custom_group_id(body["GroupId"]) if "GroupId" in body else None
    _check_ignored(body, "MaxMemberCount")
    group = await call.node.create_group(owner, body, gid, call.caller, call.client_ip)
    return {"GroupId": group.group_id}


@command(SVC, "destroy_group")
async def destroy_group(call: Call, body: Body) -> Body:
    await call.node.destroy_group(room_of(call.node, body).group_id, call.client_ip)
    return {}


@command(SVC, "get_group_info")
async def get_group_info(call: Call, body: Body) -> Body:
    ids = array(body, "GroupIdList", most=MAX_INFO_IDS)
    for gid in ids:
        if not isinstance(gid, str):
            raise bad("GroupIdList must hold strings")
    base, app = _filters(body)
    return {"GroupInfo": [await _info(call, gid, base, app) for gid in ids]}


def _filters(body: Body) -> tuple[list[str] | None, list[str] | None]:
    """``ResponseFilter``: the base-field and AppDefinedData filters (None = no filter)."""
    if "ResponseFilter" not in body:
        return None, None
    flt = body["ResponseFilter"]
    if not isinstance(flt, dict):
        raise bad("ResponseFilter must be an object")
    lists = {name: strings(flt[name], name) for name in _FILTERS if name in flt}
    return lists.get("GroupBaseInfoFilter"), lists.get("AppDefinedDataFilter_Group")


async def _info(call: Call, gid: str, base: list[str] | None,
                app: list[str] | None) -> dict[str, Any]:
    """One GroupInfo item; a missing or invalid group carries its own ErrorCode (2.3)."""
    node = call.node
    if not is_valid_group_id(gid):
        return {"GroupId": gid, "ErrorCode": int(Code.INVALID_GROUP_ID),
                "ErrorInfo": "invalid GroupId"}
    room = node.rooms.get(gid)
    if room is None:
        return {"GroupId": gid, "ErrorCode": int(Code.GROUP_NOT_FOUND),
                "ErrorInfo": "group does not exist"}
    next_seq, last_msg_time = await node.message_position(gid)
    return room.group.info(node.clock(), node.online(gid), next_seq, base, app,
                           appid=node.settings.sdkappid, last_msg_time=last_msg_time)


@command(SVC, "modify_group_base_info")
async def modify_group_base_info(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    _check_ignored(body, "MaxMemberNum")
    if "Name" in body:
        text(body, "Name", PROFILE_LIMITS["Name"], min_bytes=1)
    fields = body
    if "ShutUpAllMember" in body and "MuteAllMember" not in body:
        fields = {**body, "MuteAllMember": body["ShutUpAllMember"]}  # the older name
    await call.node.modify_group(room.group_id, fields, call.caller, call.client_ip)
    return {}


@command(SVC, "get_appid_group_list")
async def get_appid_group_list(call: Call, body: Body) -> Body:
    limit = integer(body, "Limit", 0, LIST_LIMIT, default=0) or LIST_LIMIT
    after = integer(body, "Next", 0, 2**63 - 1, default=0)
    # "" is no filter: tencentcloud-sdk-python-im sends it by default.
    kind = None if body.get("GroupType") == "" else one_of(body, "GroupType", GROUP_TYPES)
    rooms = [] if kind not in (None, AVCHATROOM) else call.state.numbered_rooms(call.node)
    page = [(n, gid) for n, gid in rooms if n > after][:limit]
    more = bool(page) and page[-1][0] < rooms[-1][0]
    return {"TotalCount": len(rooms), "GroupIdList": [{"GroupId": gid} for _n, gid in page],
            "Next": page[-1][0] if more else 0}
