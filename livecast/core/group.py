"""The state of one group (an AVChatRoom): profile, custom data, counters, mutes, bans.

Pure model shared by the node (WebSocket ``join`` / ``getGroupInfo``,
docs/protocol.md) and the Tencent-compatible REST API. References are to
docs/rest.md: create_group, get_group_info, modify_group_base_info,
forbid_send_msg / get_group_muted_account, ban_group_member and friends,
group counters, error codes.

Invariants:
- every profile string is a ``str`` within its UTF-8 byte limit
  (``PROFILE_LIMITS``); ``app_defined`` holds at most ``APP_DEFINED_MAX_KEYS``
  (10, per group) keys of ``[A-Za-z0-9_]{1,16}`` with non-empty values of at most
  512 bytes; ``counters`` holds at most 20 keys of 1..128 bytes with signed
  int64 values;
- a mutating call validates its whole input before changing anything: it
  either raises ``LivecastError`` and leaves the group exactly as it was, or
  applies every part of the request;
- ``info_seq`` grows by one, and ``last_info_time`` becomes ``now``, exactly
  when ``modify`` changes something (``create`` starts at 0 with
  ``last_info_time == created``);
- ``mutes`` / ``bans`` map a user to the unix time (seconds) the restriction
  ends. "Forever" (``MuteTime`` / ``Duration`` == ``FOREVER``) is stored as
  ``float(FOREVER)`` and every end time is capped there, so the value is
  always JSON-safe and is reported on the wire as ``FOREVER`` (4294967295)
  itself, as Tencent's MuteTime/Duration spell it. An entry at FOREVER never
  expires (even past that instant, year 2106). Wire times are whole seconds,
  rounded up.
- expired mutes and bans are purged lazily: a lookup of an expired entry
  deletes it, a listing purges every expired entry, and an insertion purges
  when the table outgrows twice its live size at the last purge (at least
  64). So a table never holds more than ``max(64, 2 * live)`` entries, where
  ``live`` counts the entries that were in force at the last purge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from livecast.core.group_attrs import GroupAttrs
from livecast.core.group_fields import (
    APP_DEFINED_KEY_LIMIT,
    APP_DEFINED_MAX_KEYS,
    APP_DEFINED_VALUE_LIMIT,
    COUNTER_KEY_LIMIT,
    FOREVER,
    MAX_COUNTERS,
    PROFILE_ATTRS,
    PROFILE_LIMITS,
    USER_ID_LIMIT,
    apply_counter,
    bad,
    check_counter_mode,
    check_on_off,
    check_text,
    check_uint32,
    check_user,
    key_values,
    on_off,
    parse_app_defined,
    parse_counter_items,
    parse_counter_keys,
    upsert_app_defined,
)
from livecast.core.group_ids import is_valid_group_id, new_group_id, validate_custom_group_id
from livecast.errors import Code, LivecastError

__all__ = [
    "APP_DEFINED_KEY_LIMIT",
    "APP_DEFINED_MAX_KEYS",
    "APP_DEFINED_VALUE_LIMIT",
    "COUNTER_KEY_LIMIT",
    "FOREVER",
    "GROUP_TYPE",
    "MAX_COUNTERS",
    "MAX_MEMBER_NUM",
    "PROFILE_LIMITS",
    "Group",
    "is_valid_group_id",
    "new_group_id",
    "validate_custom_group_id",
]

GROUP_TYPE = "AVChatRoom"
MAX_MEMBER_NUM = 0  # get_group_info MaxMemberNum: 0 = no cap (AVChatRoom is unlimited)
APPLY_JOIN_OPTION = "FreeAccess"  # AVChatRoom joins never need approval (2.1)
_PURGE_FLOOR = 64
# create_group fields AVChatRoom refuses with 10007 (2.1).
_REFUSED_ON_CREATE = ("MemberList", "AppMemberDefinedData")


@dataclass(slots=True)
class Group:
    """One AVChatRoom. Build with ``Group.create``; see the module invariants."""

    group_id: str
    owner: str
    created: float
    name: str = ""
    introduction: str = ""
    notification: str = ""
    face_url: str = ""
    mute_all: bool = False
    app_defined: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    mutes: dict[str, float] = field(default_factory=dict)
    bans: dict[str, float] = field(default_factory=dict)
    info_seq: int = 0
    last_info_time: float = 0.0
    last_msg_time: float = 0.0
    rate: int | None = None  # per-room overrides; None = server default
    burst: int | None = None
    join_history: bool = True  # new members may ask for recent messages (livecast_ext)
    attrs: GroupAttrs = field(default_factory=GroupAttrs)  # custom attributes (group_attrs.py)
    _mute_mark: int = field(default=_PURGE_FLOOR, init=False, repr=False, compare=False)
    _ban_mark: int = field(default=_PURGE_FLOOR, init=False, repr=False, compare=False)

    # -- profile ---------------------------------------------------------

    @classmethod
    def create(cls, group_id: str, owner: str, now: float, fields: Mapping[str, object]) -> Group:
        """A new group from create_group's body (2.1).

        Reads ``Name``, ``Introduction``, ``Notification``, ``FaceUrl`` and
        ``AppDefinedData`` (an empty Value is skipped); other keys (``Type``,
        ``GroupId``, ``MaxMemberCount``, ``ApplyJoinOption``...) are the
        caller's business. A missing Name is "" (REST requires it itself).
        A non-empty ``MemberList`` / ``AppMemberDefinedData`` -> 10007; one
        that is not an array (``null`` included) -> 10004.
        """
        if not is_valid_group_id(group_id):
            raise LivecastError(Code.INVALID_GROUP_ID, "invalid GroupId")
        owner = check_text(owner, "Owner_Account", USER_ID_LIMIT)
        if not isinstance(fields, Mapping):
            raise bad("the request body must be an object")
        for refused in _REFUSED_ON_CREATE:
            if refused not in fields:
                continue
            if not isinstance(fields[refused], list):
                raise bad(f"{refused} must be an array")  # null too: a wrong type
            if fields[refused]:
                raise LivecastError(Code.NO_PERMISSION, f"AVChatRoom does not accept {refused}")
        profile = _parse_profile(fields)
        app: dict[str, str] = {}
        if "AppDefinedData" in fields:
            app = upsert_app_defined({}, parse_app_defined(fields["AppDefinedData"]))
        group = cls(group_id, owner, now, app_defined=app, last_info_time=now)
        for attr, value in profile.items():
            setattr(group, attr, value)
        return group

    def modify(self, fields: Mapping[str, object], now: float) -> dict[str, Any]:
        """modify_group_base_info (2.4): validate everything, then apply.

        Known fields: Name, Introduction, Notification, FaceUrl, MuteAllMember
        ("On"/"Off"), AppDefinedData (upsert by Key, empty Value deletes).
        Others (GroupId, MaxMemberNum, ApplyJoinOption...) are ignored.
        Returns the changed fields by Tencent name (for the ``groupInfo`` tip);
        AppDefinedData lists changed keys, deleted ones with Value "".
        """
        if not isinstance(fields, Mapping):
            raise bad("the request body must be an object")
        updates = _parse_profile(fields)
        changes: dict[str, Any] = {}
        for name, attr in PROFILE_ATTRS.items():
            if attr in updates and updates[attr] != getattr(self, attr):
                changes[name] = updates[attr]
        mute_all = self._plan_mute_all(fields, changes)
        new_app = self._plan_app_defined(fields, changes)
        if not changes:
            return {}
        for name, attr in PROFILE_ATTRS.items():
            if name in changes:
                setattr(self, attr, changes[name])
        if mute_all is not None:
            self.mute_all = mute_all
        if new_app is not None:
            self.app_defined = new_app
        self.info_seq += 1
        self.last_info_time = now
        return changes

    def _plan_mute_all(self, fields: Mapping[str, object], changes: dict[str, Any]) -> bool | None:
        if "MuteAllMember" not in fields:
            return None
        flag = check_on_off(fields["MuteAllMember"], "MuteAllMember")
        if flag == self.mute_all:
            return None
        changes["MuteAllMember"] = on_off(flag)
        return flag

    def _plan_app_defined(
        self, fields: Mapping[str, object], changes: dict[str, Any]
    ) -> dict[str, str] | None:
        if "AppDefinedData" not in fields:
            return None
        pairs = parse_app_defined(fields["AppDefinedData"])
        result = upsert_app_defined(self.app_defined, pairs)
        diff = []
        for key in dict.fromkeys(key for key, _ in pairs):
            if self.app_defined.get(key, "") != result.get(key, ""):
                diff.append({"Key": key, "Value": result.get(key, "")})
        if not diff:
            return None
        changes["AppDefinedData"] = diff
        return result

    def profile(self) -> dict[str, Any]:
        """The ``group`` object of the WebSocket join / getGroupInfo replies."""
        return {
            "Name": self.name,
            "Introduction": self.introduction,
            "Notification": self.notification,
            "FaceUrl": self.face_url,
            "AppDefinedData": key_values(self.app_defined),
            "MuteAllMember": on_off(self.mute_all),
        }

    def info(
        self,
        now: float,
        online: int,
        next_seq: int,
        base_filter: Sequence[str] | None = None,
        app_filter: Sequence[str] | None = None,
        *,
        appid: int | None = None,
        last_msg_time: float | None = None,
    ) -> dict[str, Any]:
        """One ``GroupInfo`` item of get_group_info (2.3).

        No filter: every field, ``AppDefinedData`` and ``MemberList: []``.
        ``base_filter`` keeps only the listed base fields (and drops
        ``MemberList``); ``AppDefinedData`` then appears only if listed there or
        if ``app_filter`` is given, which keeps only the listed keys.
        ``MemberNum`` is the online count; ``MaxMemberNum`` is 0 (no cap).
        ``Appid`` is included when ``appid`` is given.  ``next_seq`` and
        ``last_msg_time`` (default: the group's own): the room's message
        position, which in a cluster its owner knows.
        """
        base = self._base_info(online, next_seq, appid)
        if last_msg_time is not None:
            base["LastMsgTime"] = int(last_msg_time)
        item: dict[str, Any] = {"GroupId": self.group_id, "ErrorCode": 0, "ErrorInfo": ""}
        if base_filter is None:
            item.update(base)
        else:
            wanted = set(base_filter)
            item.update({k: v for k, v in base.items() if k in wanted})
        if app_filter is not None:
            item["AppDefinedData"] = key_values(self.app_defined, app_filter)
        elif base_filter is None or "AppDefinedData" in base_filter:
            item["AppDefinedData"] = key_values(self.app_defined)
        if base_filter is None:
            item["MemberList"] = []
        return item

    def _base_info(self, online: int, next_seq: int, appid: int | None) -> dict[str, Any]:
        base: dict[str, Any] = {"Type": GROUP_TYPE}
        if appid is not None:
            base["Appid"] = appid
        base.update(
            Name=self.name,
            Introduction=self.introduction,
            Notification=self.notification,
            FaceUrl=self.face_url,
            Owner_Account=self.owner,
            CreateTime=int(self.created),
            InfoSeq=self.info_seq,
            LastInfoTime=int(self.last_info_time),
            LastMsgTime=int(self.last_msg_time),
            NextMsgSeq=next_seq,
            MemberNum=online,
            MaxMemberNum=MAX_MEMBER_NUM,
            ApplyJoinOption=APPLY_JOIN_OPTION,
            MuteAllMember=on_off(self.mute_all),
        )
        return base

    # -- counters (2.12) -------------------------------------------------

    def counter_list(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``[{"Key","Value"}]`` of the existing counters among ``keys`` (all when None)."""
        return key_values(self.counters, parse_counter_keys(keys))

    def update_counters(self, items: object, mode: object) -> list[dict[str, Any]]:
        """update_group_counter: Set (default) / Increase / Decrease, all or nothing.

        A missing key starts at 0. Returns the resulting value of each touched
        key, in first-touch order. 10063 past MAX_COUNTERS keys, 10004 for a bad
        item or a result outside int64.
        """
        mode_name = check_counter_mode(mode)
        pairs = parse_counter_items(items)
        result = dict(self.counters)
        for key, value in pairs:
            result[key] = apply_counter(result.get(key, 0), mode_name, value, key)
        if len(result) > MAX_COUNTERS:
            raise LivecastError(
                Code.TOO_MANY_COUNTERS, f"a group holds at most {MAX_COUNTERS} counters"
            )
        self.counters.update(result)
        return [{"Key": key, "Value": result[key]} for key in dict.fromkeys(k for k, _ in pairs)]

    def delete_counters(self, keys: Sequence[str] | None) -> list[dict[str, Any]]:
        """delete_group_counter: the listed keys (all when None); returns what was deleted."""
        wanted = parse_counter_keys(keys)
        deleted = key_values(self.counters, wanted)
        for item in deleted:
            del self.counters[item["Key"]]
        return deleted

    # -- mutes (2.7) and bans (2.9) --------------------------------------

    def mute(self, user: str, seconds: int, now: float) -> float:
        """forbid_send_msg for one user: 0 unmutes (returns 0), FOREVER is permanent."""
        user = check_user(user)
        seconds = check_uint32(seconds, "MuteTime")
        if seconds == 0:
            self.mutes.pop(user, None)
            return 0.0
        until = _until(now, seconds)
        self._mute_mark = _store(self.mutes, self._mute_mark, user, until, now)
        return until

    def is_muted(self, user: str, now: float) -> bool:
        return _active(self.mutes, user, now)

    def muted_list(self, now: float) -> list[dict[str, Any]]:
        """get_group_muted_account's ``MutedAccountList``, by end time (then
        user): the same order whichever store kept them; purges expired mutes."""
        _purge(self.mutes, now)
        return [{"Member_Account": u, "MutedUntil": wire_time(t)} for u, t in _by_end(self.mutes)]

    def ban(self, user: str, seconds: int, now: float) -> float:
        """ban_group_member for one user; returns the ban's end time.

        ``Duration`` is 1..FOREVER seconds (FOREVER is permanent); 0 is refused
        with 10004, since lifting a ban is unban_group_member's job.
        """
        user = check_user(user)
        seconds = check_uint32(seconds, "Duration")
        if seconds == 0:
            raise bad("Duration must be at least 1 second (use unban_group_member to lift a ban)")
        until = _until(now, seconds)
        self._ban_mark = _store(self.bans, self._ban_mark, user, until, now)
        return until

    def unban(self, user: str) -> bool:
        """unban_group_member for one user; True if a ban entry was removed."""
        return self.bans.pop(check_user(user), None) is not None

    def is_banned(self, user: str, now: float) -> bool:
        return _active(self.bans, user, now)

    def heard_ban(self, user: str, until: float, now: float) -> None:
        """A ban made on another process (its end as stored), in force here
        before the room is read again."""
        self._ban_mark = _store(self.bans, self._ban_mark, user, until, now)

    def heard_tips(self, tips: Iterable[object], now: float) -> None:
        """What another process's tips of this room say of the send rule (a
        mute or unmute, mute-all), in force here before the room is read
        again (the stored room then replaces this one); anything else in
        them is left to that read."""
        for tip in tips:
            if not isinstance(tip, dict):
                continue
            if tip.get("type") == "mute" and isinstance(tip.get("member"), str):
                until = tip.get("until")
                if until == 0:
                    self.mutes.pop(tip["member"], None)
                elif isinstance(until, int) and until > 0:
                    self._mute_mark = _store(self.mutes, self._mute_mark, tip["member"],
                                             float(until), now)
            elif tip.get("type") == "groupInfo" and isinstance(tip.get("changes"), dict):
                mute_all = tip["changes"].get("MuteAllMember")
                if mute_all in ("On", "Off"):
                    self.mute_all = mute_all == "On"

    def banned_list(self, now: float) -> list[dict[str, Any]]:
        """get_group_ban_member's ``BannedAccountList``, by end time (then user),
        so that its pages hold still between calls; purges expired bans."""
        _purge(self.bans, now)
        return [{"Member_Account": u, "BannedUntil": wire_time(t)} for u, t in _by_end(self.bans)]



def _parse_profile(fields: Mapping[str, object]) -> dict[str, str]:
    """The present profile fields, validated, keyed by attribute name."""
    return {
        attr: check_text(fields[name], name, PROFILE_LIMITS[name])
        for name, attr in PROFILE_ATTRS.items()
        if name in fields
    }


def _until(now: float, seconds: int) -> float:
    """End time of a restriction of ``seconds`` (> 0), capped at FOREVER."""
    if seconds == FOREVER:
        return float(FOREVER)
    return min(now + seconds, float(FOREVER))


def wire_time(until: float) -> int:
    return min(math.ceil(until), FOREVER)


def _active(table: dict[str, float], user: str, now: float) -> bool:
    """True if ``user`` has an entry in force; deletes an expired one."""
    until = table.get(user)
    if until is None:
        return False
    if not _expired(until, now):
        return True
    del table[user]
    return False


def _expired(until: float, now: float) -> bool:
    """An entry ends at ``until``; one at FOREVER never does, whatever ``now``."""
    return until <= now and until < FOREVER


def _by_end(table: dict[str, float]) -> list[tuple[str, float]]:
    """A mute or ban table's entries by end time, then user: an order of the
    entries themselves (a Redis reload gives another dict order than SQLite's)."""
    return sorted(table.items(), key=lambda item: (item[1], item[0]))


def _purge(table: dict[str, float], now: float) -> None:
    for user in [u for u, until in table.items() if _expired(until, now)]:
        del table[user]


def _store(table: dict[str, float], mark: int, user: str, until: float, now: float) -> int:
    """Record ``user -> until``; purge when the table outgrows ``mark``; return the new mark."""
    table[user] = until
    if len(table) > mark:
        _purge(table, now)
        mark = max(_PURGE_FLOOR, 2 * len(table))
    return mark
