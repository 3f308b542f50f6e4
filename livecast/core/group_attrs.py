"""Group custom attributes of one AVChatRoom: a small key/value store for the
room's live state (the product on sale, the stage of the show, a pinned message).

Served to the app backend by the REST commands ``modify_group_attr``,
``set_group_attr``, ``delete_group_attr``, ``clear_group_attr`` and
``get_group_attr`` (Tencent's group custom attributes), and to members over
the WebSocket (``getGroupAttributes``, the ``groupAttributes`` tip, and, when
the server allows it, member writes under a compare-and-set rule).

Invariants:
- ``values`` holds at most ``MAX_KEYS`` (16) keys; every key is a non-empty
  string of at most ``KEY_LIMIT`` (32) UTF-8 bytes, every value a string of
  at most ``VALUE_LIMIT`` (4,000) bytes, and the keys and values together
  weigh at most ``TOTAL_LIMIT`` (16,000 bytes, as Tencent);
- a write validates its whole input first: it either raises
  ``LivecastError`` and leaves the attributes exactly as they were, or
  applies every part of the request;
- ``seq`` (the attribute version) grows by one exactly when a write changes
  something; a write that changes nothing returns ``None`` and keeps ``seq``;
- compare-and-set (member writes only): a write that names a ``seq`` other
  than the current one changes nothing and raises 10056; the member reads
  the attributes again (``getGroupAttributes`` or the latest tip) and retries.
- member writes share one budget per group, ``MEMBER_WRITES_PER_S`` (5) a
  second; past it they are refused with 10049. REST writes are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livecast.core.bucket import TokenBucket
from livecast.core.group_fields import bad
from livecast.errors import Code, LivecastError

MAX_KEYS = 16
KEY_LIMIT = 32
VALUE_LIMIT = 4000
TOTAL_LIMIT = 16_000
MEMBER_WRITES_PER_S = 5

# Tencent's group attribute codes (errors.Code)
KEY_TOO_LONG = Code.ATTR_KEY_TOO_LONG
VALUE_TOO_LONG = Code.ATTR_VALUE_TOO_LONG
TOO_MANY_KEYS = Code.ATTR_TOO_MANY_KEYS
TOO_LARGE = Code.ATTR_TOO_LARGE
WRITE_FREQ_LIMIT = Code.ATTR_WRITE_FREQ_LIMIT
KEY_NOT_FOUND = Code.ATTR_KEY_NOT_FOUND
STALE_WRITE = Code.ATTR_STALE_WRITE

Pairs = list[tuple[str, str]]


def _utf8(value: str, name: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad(f"{name} is not valid UTF-8") from None


def check_key(key: object) -> str:
    """A key: a non-empty string of at most KEY_LIMIT bytes (10004 / 10045)."""
    if not isinstance(key, str):
        raise bad("an attribute key must be a string")
    if not key:
        raise bad("an attribute key must not be empty")
    if _utf8(key, "an attribute key") > KEY_LIMIT:
        raise LivecastError(KEY_TOO_LONG, f"attribute key {key[:40]!r} is over "
                                          f"{KEY_LIMIT} bytes")
    return key


def check_value(key: str, value: object) -> str:
    """A value: a string of at most VALUE_LIMIT bytes (10004 / 10046)."""
    if not isinstance(value, str):
        raise bad(f"the value of attribute {key!r} must be a string")
    if _utf8(value, f"the value of attribute {key!r}") > VALUE_LIMIT:
        raise LivecastError(VALUE_TOO_LONG, f"the value of attribute {key!r} is over "
                                            f"{VALUE_LIMIT} bytes")
    return value


def parse_items(items: object, name: str = "GroupAttr") -> Pairs:
    """REST ``[{"key": k, "value": v}]`` (lower-case names, as Tencent's)."""
    if not isinstance(items, list):
        raise bad(f"{name} must be an array of {{key, value}} objects")
    pairs: Pairs = []
    for item in items:
        if not isinstance(item, dict) or "key" not in item or "value" not in item:
            raise bad(f"each {name} item must be an object with key and value")
        key = check_key(item["key"])
        pairs.append((key, check_value(key, item["value"])))
    return pairs


def parse_item_keys(items: object, name: str = "GroupAttr") -> list[str]:
    """REST ``[{"key": k}]`` of delete_group_attr (a ``value`` is ignored)."""
    if not isinstance(items, list) or not items:
        raise bad(f"{name} must be a non-empty array of {{key}} objects")
    keys = []
    for item in items:
        if not isinstance(item, dict) or "key" not in item:
            raise bad(f"each {name} item must be an object with a key")
        keys.append(check_key(item["key"]))
    return list(dict.fromkeys(keys))


def parse_map(values: object, name: str = "groupAttributes") -> Pairs:
    """WebSocket ``{"key": "value", ...}``."""
    if not isinstance(values, dict):
        raise bad(f"{name} must be an object of string values")
    return [(check_key(k), check_value(k, v)) for k, v in values.items()]


def parse_key_list(keys: object, name: str = "keyList") -> list[str]:
    """WebSocket ``["key", ...]``; duplicates are removed, order kept."""
    if not isinstance(keys, list):
        raise bad(f"{name} must be an array of strings")
    return list(dict.fromkeys(check_key(k) for k in keys))


def check_totals(values: Mapping[str, str]) -> None:
    """Every limit of a planned result: each key and value (parsers check them
    first; checked again so that no caller can store past them), 10047, 10048."""
    for key, value in values.items():
        check_value(check_key(key), value)
    if len(values) > MAX_KEYS:
        raise LivecastError(TOO_MANY_KEYS, f"a group holds at most {MAX_KEYS} attributes")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if total > TOTAL_LIMIT:
        raise LivecastError(TOO_LARGE, f"the attributes would weigh {total} bytes, "
                                       f"at most {TOTAL_LIMIT}")


@dataclass(frozen=True, slots=True)
class AttrChange:
    """A write that changed something: every attribute after it, and its seq."""

    values: dict[str, str]
    seq: int

    def tip(self) -> dict[str, Any]:
        """The ``groupAttributes`` tip members receive for this change."""
        return {"type": "groupAttributes", "groupAttributes": dict(self.values),
                "attrSeq": self.seq}


@dataclass(slots=True)
class GroupAttrs:
    """One group's attributes; see the module invariants."""

    values: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    _writes: TokenBucket | None = field(default=None, repr=False, compare=False)

    def keep_limit(self, before: GroupAttrs) -> None:
        """These attributes (read again from the store) replace ``before``:
        the members' write budget spent on it carries over."""
        self._writes = before._writes

    def get(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """The attributes named in ``keys`` that exist (all of them when None)."""
        if keys is None:
            return dict(self.values)
        return {k: self.values[k] for k in keys if k in self.values}

    def items(self, keys: Iterable[str] | None = None) -> list[dict[str, str]]:
        """``GroupAttrAry``: ``[{"key", "value"}]`` in insertion order."""
        return [{"key": k, "value": v} for k, v in self.get(keys).items()]

    def modify(self, pairs: Pairs) -> AttrChange | None:
        """Upsert (modify_group_attr, setGroupAttributes)."""
        result = dict(self.values)
        result.update(pairs)
        return self._commit(result)

    def replace(self, pairs: Pairs) -> AttrChange | None:
        """Replace every attribute (set_group_attr, initGroupAttributes)."""
        return self._commit(dict(pairs))

    def delete(self, keys: list[str] | None) -> AttrChange | None:
        """Delete ``keys`` (every key when None); a missing key is 10050."""
        if keys is None:
            return self._commit({})
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise LivecastError(KEY_NOT_FOUND, f"no attribute {missing[0]!r} in this group")
        wanted = set(keys)
        return self._commit({k: v for k, v in self.values.items() if k not in wanted})

    def _commit(self, result: dict[str, str]) -> AttrChange | None:
        check_totals(result)
        if result == self.values:  # the same attributes, whatever their order
            return None
        self.values = result
        self.seq += 1
        return AttrChange(dict(result), self.seq)

    def check_seq(self, seq: int) -> None:
        """The compare-and-set check: a write made at ``seq`` must find the
        attributes still at it (10056)."""
        if seq != self.seq:
            raise LivecastError(STALE_WRITE, f"stale write: the attributes are at attrSeq "
                                             f"{self.seq}, not {seq}; read them again")

    def member_write(self, seq: int, now: float) -> None:
        """Admit a member's write: the compare-and-set check (10056), then the
        group's member-write budget (10049). Call before the write itself."""
        self.check_seq(seq)
        if self._writes is None:
            self._writes = TokenBucket(MEMBER_WRITES_PER_S, MEMBER_WRITES_PER_S, now)
        if not self._writes.try_take(now):
            raise LivecastError(WRITE_FREQ_LIMIT, f"at most {MEMBER_WRITES_PER_S} attribute "
                                                  f"writes a second per group")
