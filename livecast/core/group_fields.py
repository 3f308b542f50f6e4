"""Limits and validators for group profile fields, custom data and counters.

Reference: docs/rest.md: create_group and modify_group_base_info (profile
limits, ``AppDefinedData``), forbid_send_msg and ban_group_member (uint32
durations), group counters, Error codes.

Invariants:
- every validator either returns a value of the checked type within its
  limits or raises ``LivecastError`` (10004 ``BAD_PARAMETER`` unless stated),
  with an ``info`` that names the field and the limit; validators never
  mutate their input;
- string lengths are measured in UTF-8 bytes; a string that cannot be
  encoded (a lone surrogate) is refused;
- integers are ``int`` and never ``bool``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from livecast.errors import Code, LivecastError

FOREVER = 4294967295  # uint32 max: "permanent" for MuteTime / Duration (2.7, 2.9)
UINT32_MAX = 4294967295
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

PROFILE_LIMITS = {"Name": 30, "Introduction": 240, "Notification": 300, "FaceUrl": 100}
# Tencent field name -> Group attribute name.
PROFILE_ATTRS = {
    "Name": "name",
    "Introduction": "introduction",
    "Notification": "notification",
    "FaceUrl": "face_url",
}
APP_DEFINED_VALUE_LIMIT = 512
APP_DEFINED_KEY_LIMIT = 16
APP_DEFINED_MAX_KEYS = 10  # per group (Tencent: per app, declared in the console)
MAX_COUNTERS = 20
COUNTER_KEY_LIMIT = 128
COUNTER_MODES = ("Set", "Increase", "Decrease")
USER_ID_LIMIT = 32  # UserID <= 32 bytes (section 4.1)

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def bad(info: str) -> LivecastError:
    """A 10004 error naming what was wrong."""
    return LivecastError(Code.BAD_PARAMETER, info)


def utf8_len(value: str, field: str) -> int:
    """Length of ``value`` in UTF-8 bytes; 10004 if it is not encodable."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad(f"{field} is not valid UTF-8 text") from None


def check_text(value: object, field: str, limit: int, *, min_bytes: int = 0) -> str:
    """A ``str`` of ``min_bytes``..``limit`` UTF-8 bytes."""
    if not isinstance(value, str):
        raise bad(f"{field} must be a string")
    size = utf8_len(value, field)
    if size > limit:
        raise bad(f"{field} is {size} bytes, the limit is {limit} UTF-8 bytes")
    if size < min_bytes:
        raise bad(f"{field} must not be empty")
    return value


def check_int(value: object, field: str, low: int, high: int) -> int:
    """An ``int`` (not ``bool``) within ``low``..``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{field} must be an integer")
    if not low <= value <= high:
        raise bad(f"{field} must be within {low}..{high}")
    return value


def check_uint32(value: object, field: str) -> int:
    return check_int(value, field, 0, UINT32_MAX)


def check_user(value: object, field: str = "Member_Account") -> str:
    """A non-empty user id of at most USER_ID_LIMIT bytes."""
    return check_text(value, field, USER_ID_LIMIT, min_bytes=1)


def check_on_off(value: object, field: str) -> bool:
    """``"On"`` -> True, ``"Off"`` -> False (exact spelling, section 2.4)."""
    if value == "On":
        return True
    if value == "Off":
        return False
    raise bad(f'{field} must be "On" or "Off"')


def on_off(flag: bool) -> str:
    return "On" if flag else "Off"


def check_app_key(key: object) -> str:
    """An ``AppDefinedData`` key: 1..16 bytes of ``[A-Za-z0-9_]``."""
    if not isinstance(key, str):
        raise bad("AppDefinedData Key must be a string")
    if not 1 <= len(key) <= APP_DEFINED_KEY_LIMIT or not _KEY_CHARS.issuperset(key):
        raise bad(
            f"AppDefinedData Key {key[:32]!r} must be 1..{APP_DEFINED_KEY_LIMIT} "
            "characters of [A-Za-z0-9_]"
        )
    return key


def parse_app_defined(items: object) -> list[tuple[str, str]]:
    """``[{"Key","Value"}, ...]`` -> ``[(key, value), ...]`` in request order."""
    if not isinstance(items, list):
        raise bad("AppDefinedData must be an array of {Key, Value}")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, Mapping) or "Key" not in item or "Value" not in item:
            raise bad("each AppDefinedData item must be an object with Key and Value")
        key = check_app_key(item["Key"])
        value = check_text(item["Value"], f"AppDefinedData[{key}].Value", APP_DEFINED_VALUE_LIMIT)
        pairs.append((key, value))
    return pairs


def upsert_app_defined(
    current: Mapping[str, str], pairs: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """A new map: ``current`` with ``pairs`` upserted; an empty value deletes.

    Raises 10004 when the result would hold more than APP_DEFINED_MAX_KEYS keys.
    """
    result = dict(current)
    for key, value in pairs:
        if value:
            result[key] = value
        else:
            result.pop(key, None)
    if len(result) > APP_DEFINED_MAX_KEYS:
        raise bad(
            f"AppDefinedData would hold {len(result)} keys, the limit is {APP_DEFINED_MAX_KEYS}"
        )
    return result


def key_values(data: Mapping[str, Any], keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``[{"Key","Value"}]`` for ``keys`` present in ``data`` (all when None), in ``data`` order."""
    if keys is None:
        return [{"Key": k, "Value": v} for k, v in data.items()]
    wanted = set(keys)
    return [{"Key": k, "Value": v} for k, v in data.items() if k in wanted]


def check_counter_key(key: object) -> str:
    """A group counter key: 1..128 UTF-8 bytes (section 2.12)."""
    return check_text(key, "GroupCounter Key", COUNTER_KEY_LIMIT, min_bytes=1)


def parse_counter_items(items: object) -> list[tuple[str, int]]:
    """``[{"Key","Value"}, ...]`` -> ``[(key, int64), ...]``; at least one item."""
    if not isinstance(items, list) or not items:
        raise bad("GroupCounter must be a non-empty array of {Key, Value}")
    pairs: list[tuple[str, int]] = []
    for item in items:
        if not isinstance(item, Mapping) or "Key" not in item or "Value" not in item:
            raise bad("each GroupCounter item must be an object with Key and Value")
        key = check_counter_key(item["Key"])
        pairs.append(
            (key, check_int(item["Value"], f"GroupCounter[{key}].Value", INT64_MIN, INT64_MAX))
        )
    return pairs


def parse_counter_keys(keys: object) -> list[str] | None:
    """``GroupCounterKeys``: None (meaning all) or a list of counter keys."""
    if keys is None:
        return None
    if not isinstance(keys, list | tuple):
        raise bad("GroupCounterKeys must be an array of strings")
    return [check_counter_key(key) for key in keys]


def check_counter_mode(mode: object) -> str:
    """``Set`` (also when None), ``Increase`` or ``Decrease``."""
    if mode is None:
        return "Set"
    if mode not in COUNTER_MODES:
        raise bad('Mode must be "Set", "Increase" or "Decrease"')
    assert isinstance(mode, str)
    return mode


def apply_counter(current: int, mode: str, value: int, key: str) -> int:
    """The counter's new value; 10004 if it would leave the int64 range."""
    if mode == "Set":
        return value
    result = current + value if mode == "Increase" else current - value
    if not INT64_MIN <= result <= INT64_MAX:
        raise bad(f"GroupCounter {key!r} would overflow the signed int64 range")
    return result
