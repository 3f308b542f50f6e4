"""The OpenAPI 3.0 document of the REST API (docs/rest.md), served at
``GET /v4/openapi.json``.

Built from the command table: every ``(service, command)`` of ``COMMANDS`` is
a path, and only those (``tests/admin/test_openapi.py`` checks both ways), so
the document cannot list a command the server lacks or miss one it serves.
``BODIES`` holds each command's request fields, as docs/rest.md gives them;
a command without an entry there fails the build (``document`` raises), so a
new command cannot be added without its fields.  Bodies allow fields they do
not list (``additionalProperties``), as the handlers ignore unknown fields.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from livecast.admin.rest import COMMANDS

__all__ = ["BODIES", "OPENAPI_PATH", "document", "serve"]

OPENAPI_PATH = "/v4/openapi.json"
Schema = dict[str, Any]
UINT32 = 4294967295
INT64 = 2**63 - 1


def _str(most: int | None = None, least: int = 0, **extra: Any) -> Schema:
    s: Schema = {"type": "string", **extra}
    if most is not None:
        s["maxLength"] = most
    if least:
        s["minLength"] = least
    return s


def _int(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


def _arr(items: Schema, most: int, least: int = 0) -> Schema:
    return {"type": "array", "items": items, "maxItems": most, "minItems": least}


def _obj(required: tuple[str, ...] = (), **props: Schema) -> Schema:
    s: Schema = {"type": "object", "properties": props}
    if required:
        s["required"] = list(required)
    return s


GROUP_ID = _str(48, 1, pattern="^[ -~]+$", description="1..48 printable ASCII characters")
USER = _str(32, 1)
USERS = _arr(USER, 500, 1)
TEXT_ELEM = _obj(("MsgType", "MsgContent"), MsgType=_str(enum=["TIMTextElem"]),
                 MsgContent=_obj(("Text",), Text=_str()))
CUSTOM_ELEM = _obj(("MsgType", "MsgContent"), MsgType=_str(enum=["TIMCustomElem"]),
                   MsgContent=_obj(("Data",), Data=_str(), Desc=_str(), Ext=_str()))
FACE_ELEM = _obj(("MsgType", "MsgContent"), MsgType=_str(enum=["TIMFaceElem"]),
                 MsgContent=_obj(("Index",), Index={"type": "integer"}, Data=_str()))
MSG_BODY = _arr({"oneOf": [TEXT_ELEM, CUSTOM_ELEM, FACE_ELEM]}, 32, 1)
PRIORITY = _str(enum=["High", "Normal", "Low", "Lowest"])
KEY_VALUES = _arr(_obj(("Key", "Value"), Key=_str(), Value=_str()), 10)
ATTRS = _arr(_obj(("key", "value"), key=_str(32, 1), value=_str(4000)), 16)
ATTR_KEYS = _arr(_obj(("key",), key=_str(32, 1)), 16, 1)
COUNTERS = _arr(_obj(("Key", "Value"), Key=_str(128, 1), Value=_int(-INT64 - 1, INT64)), 20, 1)
ON_OFF = _str(enum=["On", "Off"])
GROUP = _obj(("GroupId",), GroupId=GROUP_ID)
PROFILE_ITEMS = _arr(_obj(("Tag", "Value"), Tag=_str(pattern="^Tag_Profile_"),
                          Value={"oneOf": [_str(500), _int(0, 2**64 - 1)]}), 64, 1)

BODIES: dict[str, Schema] = {
    "create_group": _obj(
        ("Type", "Name"), Type=_str(enum=["AVChatRoom"]), Name=_str(30, 1), GroupId=GROUP_ID,
        Owner_Account=USER, Introduction=_str(), Notification=_str(), FaceUrl=_str(),
        MaxMemberCount={"type": "integer"},
        ApplyJoinOption=_str(enum=["FreeAccess", "NeedPermission", "DisableApply"]),
        AppDefinedData=KEY_VALUES),
    "destroy_group": GROUP,
    "get_group_info": _obj(
        ("GroupIdList",), GroupIdList=_arr(GROUP_ID, 50, 1),
        ResponseFilter=_obj(GroupBaseInfoFilter=_arr(_str(), 50),
                            AppDefinedDataFilter_Group=_arr(_str(), 50))),
    "modify_group_base_info": _obj(
        ("GroupId",), GroupId=GROUP_ID, Name=_str(30, 1), Introduction=_str(),
        Notification=_str(), FaceUrl=_str(), MuteAllMember=ON_OFF, ShutUpAllMember=ON_OFF,
        MaxMemberNum={"type": "integer"}, AppDefinedData=KEY_VALUES),
    "get_appid_group_list": _obj(Limit=_int(0, 10000), Next={"type": "integer", "minimum": 0},
                                 GroupType=_str()),
    "send_group_msg": _obj(
        ("GroupId", "Random", "MsgBody"), GroupId=GROUP_ID, Random=_int(0, UINT32),
        MsgBody=MSG_BODY, MsgPriority=PRIORITY, From_Account=USER, CloudCustomData=_str(),
        ForbidCallbackControl=_arr(_str(), 4), SendMsgControl=_arr(_str(), 4),
        OnlineOnlyFlag=_int(0, 1)),
    "send_group_system_notification": _obj(("GroupId", "Content"), GroupId=GROUP_ID,
                                           Content=_str()),
    "send_broadcast_msg": _obj(("Random", "MsgBody"), Random=_int(0, UINT32), MsgBody=MSG_BODY,
                               From_Account=USER, CloudCustomData=_str()),
    "forbid_send_msg": _obj(("GroupId", "Members_Account"), GroupId=GROUP_ID,
                            Members_Account=USERS, MuteTime=_int(0, UINT32)),
    "get_group_muted_account": GROUP,
    "get_group_shutted_uin": GROUP,
    "get_online_member_num": GROUP,
    "ban_group_member": _obj(("GroupId", "Members_Account", "Duration"), GroupId=GROUP_ID,
                             Members_Account=_arr(USER, 20, 1), Duration=_int(1, UINT32),
                             Description=_str(1000)),
    "unban_group_member": _obj(("GroupId", "Members_Account"), GroupId=GROUP_ID,
                               Members_Account=_arr(USER, 20, 1)),
    "get_group_ban_member": _obj(("GroupId",), GroupId=GROUP_ID, Limit=_int(1, 100),
                                 Offset={"type": "integer", "minimum": 0}),
    "get_group_counter": _obj(("GroupId",), GroupId=GROUP_ID,
                              GroupCounterKeys=_arr(_str(128, 1), 20)),
    "update_group_counter": _obj(("GroupId", "GroupCounter"), GroupId=GROUP_ID,
                                 GroupCounter=COUNTERS,
                                 Mode=_str(enum=["Set", "Increase", "Decrease"])),
    "delete_group_counter": _obj(("GroupId",), GroupId=GROUP_ID,
                                 GroupCounterKeys=_arr(_str(128, 1), 20)),
    "modify_group_attr": _obj(("GroupId", "GroupAttr"), GroupId=GROUP_ID, GroupAttr=ATTRS),
    "set_group_attr": _obj(("GroupId", "GroupAttr"), GroupId=GROUP_ID, GroupAttr=ATTRS),
    "delete_group_attr": _obj(("GroupId", "GroupAttr"), GroupId=GROUP_ID, GroupAttr=ATTR_KEYS),
    "clear_group_attr": GROUP,
    "get_group_attr": GROUP,
    "add_group_member": GROUP,
    "import_group_member": GROUP,
    "delete_group_member": GROUP,
    "group_msg_get_simple": GROUP,
    "get_members": _obj(("GroupId",), GroupId=GROUP_ID, Timestamp={"type": "integer"},
                        Mark={"type": "integer"}),
    "check_members": _obj(("GroupId", "Member_Account"), GroupId=GROUP_ID,
                          Member_Account=USERS),
    "account_import": _obj(("UserID",), UserID=USER, Nick=_str(64), FaceUrl=_str(500)),
    "multiaccount_import": _obj(
        ("AccountList",), AccountList=_arr(_obj(("UserID",), UserID=USER, Nick=_str(64),
                                                FaceUrl=_str(500)), 100, 1)),
    "kick": _obj(("UserID",), UserID=USER),
    "portrait_set": _obj(("From_Account", "ProfileItem"), From_Account=USER,
                         ProfileItem=PROFILE_ITEMS),
    "portrait_get": _obj(("To_Account", "TagList"), To_Account=_arr(USER, 100, 1),
                         TagList=_arr(_str(pattern="^Tag_Profile_"), 64)),
    "set_room_rate": _obj(("GroupId", "Rate"), GroupId=GROUP_ID, Rate=_int(0, 100000),
                          Burst=_int(1, 100000)),
    "get_room_rate": GROUP,
    "set_room_history": _obj(("GroupId", "JoinHistory"), GroupId=GROUP_ID,
                             JoinHistory=_str(enum=["On", "Off"])),
    "get_room_history": _obj(("GroupId",), GroupId=GROUP_ID, Count=_int(1, 100000)),
}

ENVELOPE: Schema = {
    "type": "object",
    "required": ["ActionStatus", "ErrorCode", "ErrorInfo"],
    "properties": {"ActionStatus": _str(enum=["OK", "FAIL"]),
                   "ErrorCode": {"type": "integer"}, "ErrorInfo": _str(),
                   "ErrorDisplay": _str()},
}
QUERY = [
    ("sdkappid", {"type": "integer"}, "the app id the server is configured with"),
    ("identifier", _str(32, 1), "an app admin (LIVECAST_ADMINS)"),
    ("usersig", _str(least=1), "a UserSig of the identifier"),
    ("random", _int(0, UINT32), "accepted, not checked"),
    ("contenttype", _str(enum=["json"]), "accepted, not checked"),
]


def _operation(service: str, command: str) -> Schema:
    body = BODIES[command]
    return {"post": {
        "operationId": f"{service}.{command}",
        "tags": [service],
        "summary": f"{service}/{command} (docs/rest.md, {command})",
        "parameters": [{"name": name, "in": "query", "required": True, "schema": schema,
                        "description": text} for name, schema, text in QUERY],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {**body, "additionalProperties": True}}}},
        "responses": {"200": {
            "description": "Always HTTP 200: the envelope, ErrorCode 0 on success, "
                           "the command's own fields added",
            "content": {"application/json": {"schema": ENVELOPE}}}},
    }}


def document() -> Schema:
    """The OpenAPI document: one POST path per command of the table."""
    missing = sorted(f"{s}/{c}" for s, c in COMMANDS if c not in BODIES)
    if missing:
        raise RuntimeError(f"commands without a body in livecast/admin/openapi.py: {missing}")
    return {
        "openapi": "3.0.3",
        "info": {"title": "livecast REST API (Tencent Cloud Chat compatible)",
                 "version": "v4",
                 "description": "POST /v4/<service>/<command>; see docs/rest.md"},
        "paths": {f"/v4/{s}/{c}": _operation(s, c) for s, c in sorted(COMMANDS)},
    }


async def serve(request: web.Request) -> web.Response:
    """``GET /v4/openapi.json``: needs no credentials (it describes, it holds no data)."""
    return web.Response(body=_BYTES, content_type="application/json")


_BYTES = orjson.dumps(document())
