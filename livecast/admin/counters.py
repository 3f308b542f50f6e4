"""Group counters: get_group_counter, update_group_counter, delete_group_counter.

docs/rest.md (group counters): at most 20 keys per group (10063 past that),
keys of 1..128 bytes, signed int64 values, ``Mode`` Set (the default when
omitted), Increase or Decrease. Validation and the all-or-nothing update are
core/group.py's; the node pushes every change to the room's members as a
``counters`` tip (docs/protocol.md, "How totals reach a page").
"""

from __future__ import annotations

from livecast.admin.table import Body, Call, command, required, room_of
from livecast.core.group_fields import bad, parse_counter_keys

SVC = "group_open_http_svc"


def _keys(body: Body) -> list[str] | None:
    """``GroupCounterKeys``: absent means every key; null is a wrong type (it
    does not mean every key: a delete of them all is asked for by leaving it out)."""
    if "GroupCounterKeys" not in body:
        return None
    keys = body["GroupCounterKeys"]
    if keys is None:
        raise bad("GroupCounterKeys must be an array of strings, not null")
    return parse_counter_keys(keys)


@command(SVC, "get_group_counter")
async def get_group_counter(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    return {"GroupCounter": room.group.counter_list(_keys(body))}


@command(SVC, "update_group_counter")
async def update_group_counter(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    items = required(body, "GroupCounter")
    mode = body.get("Mode")
    if "Mode" in body and not isinstance(mode, str):
        raise bad('Mode must be "Set", "Increase" or "Decrease"')
    return {"GroupCounter": await call.node.update_counters(room.group_id, items, mode)}


@command(SVC, "delete_group_counter")
async def delete_group_counter(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    await call.node.delete_counters(room.group_id, _keys(body))
    return {}
