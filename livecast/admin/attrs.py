"""Group custom attributes: modify_group_attr, set_group_attr,
delete_group_attr, clear_group_attr (group_open_http_svc) and get_group_attr
(group_open_attr_http_svc), as Tencent serves them on AVChatRoom.

Requests name the group with ``GroupId`` and carry ``GroupAttr: [{key,
value}]`` (lower-case ``key``/``value``, as Tencent's); get_group_attr answers
``GroupAttrAry`` in the same shape. The store, its limits (16 keys, key 32
bytes, value 4,000 bytes, 16,000 bytes in all) and its codes are
core/group_attrs.py's; the node pushes each change to the room's members as
one ``groupAttributes`` tip. Admin writes are never compare-and-set checked.
"""

from __future__ import annotations

from livecast.admin.table import Body, Call, command, required, room_of
from livecast.core.group_attrs import parse_item_keys, parse_items
from livecast.core.group_fields import bad

SVC = "group_open_http_svc"
ATTR_SVC = "group_open_attr_http_svc"


@command(ATTR_SVC, "get_group_attr")
async def get_group_attr(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    return {"GroupAttrAry": room.group.attrs.items()}


@command(SVC, "modify_group_attr")
async def modify_group_attr(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    pairs = parse_items(required(body, "GroupAttr"))
    if not pairs:
        raise bad("GroupAttr must hold at least one item")
    await call.node.write_attrs(room.group_id, lambda attrs: attrs.modify(pairs))
    return {}


@command(SVC, "set_group_attr")
async def set_group_attr(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    pairs = parse_items(required(body, "GroupAttr"))
    await call.node.write_attrs(room.group_id, lambda attrs: attrs.replace(pairs))
    return {}


@command(SVC, "delete_group_attr")
async def delete_group_attr(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    keys = parse_item_keys(required(body, "GroupAttr"))
    await call.node.write_attrs(room.group_id, lambda attrs: attrs.delete(keys))
    return {}


@command(SVC, "clear_group_attr")
async def clear_group_attr(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    await call.node.write_attrs(room.group_id, lambda attrs: attrs.delete(None))
    return {}
