"""Tests of livecast.core.group (group state) and its id helpers."""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.core.group import (
    APP_DEFINED_KEY_LIMIT,
    APP_DEFINED_MAX_KEYS,
    APP_DEFINED_VALUE_LIMIT,
    COUNTER_KEY_LIMIT,
    FOREVER,
    MAX_COUNTERS,
    PROFILE_LIMITS,
    Group,
    is_valid_group_id,
    new_group_id,
    validate_custom_group_id,
)
from livecast.errors import Code, LivecastError

T0 = 1_700_000_000.0
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
PROFILE_FIELDS = list(PROFILE_LIMITS)
ATTRS = {"Name": "name", "Introduction": "introduction", "Notification": "notification",
         "FaceUrl": "face_url"}


def make(**fields: Any) -> Group:
    return Group.create("room-1", "owner", T0, fields)


def code_of(exc: pytest.ExceptionInfo[LivecastError]) -> int:
    return exc.value.code


def app(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs]


# ------------------------------------------------------------------ group ids

@pytest.mark.parametrize("gid", ["a", "x" * 48, "My Live Room 01", "~!#$%^&*()", "TGS#1", "@TGS"])
def test_custom_group_id_accepted(gid: str) -> None:
    assert validate_custom_group_id(gid) == gid
    assert is_valid_group_id(gid)


@pytest.mark.parametrize(
    "gid",
    ["", "x" * 49, "@TGS#abc", "@TGS#", "tab\there", "bell\x07", "del\x7f", "caf\u00e9",
     "\u623f\u95f4", 12, None, b"room"],
)
def test_custom_group_id_refused(gid: object) -> None:
    with pytest.raises(LivecastError) as exc:
        validate_custom_group_id(gid)
    assert code_of(exc) == Code.INVALID_GROUP_ID


def test_generated_id_shape_and_determinism() -> None:
    gid = new_group_id(1, b"salt")
    assert gid.startswith("@TGS#a")
    assert gid == new_group_id(1, b"salt")
    assert gid != new_group_id(2, b"salt")
    assert gid != new_group_id(1, b"salu")
    assert is_valid_group_id(gid) and len(gid.encode()) <= 48
    with pytest.raises(LivecastError):
        validate_custom_group_id(gid)


@given(st.integers(min_value=0, max_value=2**70), st.binary(max_size=100))
def test_generated_ids_always_valid(counter: int, salt: bytes) -> None:
    gid = new_group_id(counter, salt)
    assert is_valid_group_id(gid)
    assert gid.startswith("@TGS#a")
    assert set(gid[6:]) <= set(string.ascii_uppercase + "234567")


def test_generated_ids_distinct_over_many_counters() -> None:
    ids = {new_group_id(n, b"\x00" * 8) for n in range(5000)}
    assert len(ids) == 5000


# ------------------------------------------------------------------ create

def test_create_with_every_field() -> None:
    g = Group.create("room-1", "alice", T0, {
        "Type": "AVChatRoom", "GroupId": "room-1", "Name": "Live", "Introduction": "intro",
        "Notification": "notice", "FaceUrl": "http://f/x.png", "MaxMemberCount": 500,
        "ApplyJoinOption": "FreeAccess",
        "AppDefinedData": app(("likes", "0"), ("status", "live"), ("gone", "")),
    })
    assert (g.group_id, g.owner, g.created, g.last_info_time) == ("room-1", "alice", T0, T0)
    assert (g.name, g.introduction, g.notification, g.face_url) == (
        "Live", "intro", "notice", "http://f/x.png")
    assert g.app_defined == {"likes": "0", "status": "live"}
    assert g.info_seq == 0 and not g.mute_all
    assert g.counters == {} and g.mutes == {} and g.bans == {}


def test_create_defaults_to_empty_profile() -> None:
    g = Group.create("@TGS#aABC", "", T0, {})
    assert g.profile() == {"Name": "", "Introduction": "", "Notification": "", "FaceUrl": "",
                           "AppDefinedData": [], "MuteAllMember": "Off"}


@pytest.mark.parametrize("name", PROFILE_FIELDS)
def test_profile_limits_in_utf8_bytes(name: str) -> None:
    limit = PROFILE_LIMITS[name]
    attr = ATTRS[name]
    assert getattr(make(**{name: "a" * limit}), attr) == "a" * limit
    with pytest.raises(LivecastError) as exc:
        make(**{name: "a" * (limit + 1)})
    assert code_of(exc) == Code.BAD_PARAMETER and name in exc.value.info
    assert str(limit) in exc.value.info
    # "é" is two bytes: limit // 2 of them fit (limit is even), one more byte does not.
    two = "\u00e9" * (limit // 2)
    assert getattr(make(**{name: two}), attr) == two
    with pytest.raises(LivecastError):
        make(**{name: two + "a"})
    # a 3-byte character counts 3
    with pytest.raises(LivecastError):
        make(**{name: "a" * (limit - 2) + "\u623f"})


@pytest.mark.parametrize("value", [5, None, True, ["x"], b"x", "bad\ud800surrogate"])
def test_profile_field_type_checked(value: object) -> None:
    with pytest.raises(LivecastError) as exc:
        make(Name=value)
    assert code_of(exc) == Code.BAD_PARAMETER


def test_app_defined_key_limits() -> None:
    key = "K" * APP_DEFINED_KEY_LIMIT
    assert make(AppDefinedData=app((key, "v"))).app_defined == {key: "v"}
    assert make(AppDefinedData=app(("a_Z_09", "v"))).app_defined == {"a_Z_09": "v"}
    for bad_key in ["K" * (APP_DEFINED_KEY_LIMIT + 1), "", "a-b", "a b", "caf\u00e9", 7]:
        with pytest.raises(LivecastError) as exc:
            make(AppDefinedData=[{"Key": bad_key, "Value": "v"}])
        assert code_of(exc) == Code.BAD_PARAMETER


def test_app_defined_value_limits() -> None:
    big = "v" * APP_DEFINED_VALUE_LIMIT
    assert make(AppDefinedData=app(("k", big))).app_defined == {"k": big}
    with pytest.raises(LivecastError) as exc:
        make(AppDefinedData=app(("k", big + "v")))
    assert code_of(exc) == Code.BAD_PARAMETER and "512" in exc.value.info
    with pytest.raises(LivecastError):
        make(AppDefinedData=app(("k", "\u00e9" * 256 + "v")))
    for item in [{"Key": "k", "Value": 5}, {"Key": "k"}, {"Value": "v"}, "k=v", None]:
        with pytest.raises(LivecastError):
            make(AppDefinedData=[item])
    with pytest.raises(LivecastError):
        make(AppDefinedData={"k": "v"})


def test_app_defined_key_count() -> None:
    ten = app(*[(f"k{i}", "v") for i in range(APP_DEFINED_MAX_KEYS)])
    assert len(make(AppDefinedData=ten).app_defined) == APP_DEFINED_MAX_KEYS
    with pytest.raises(LivecastError) as exc:
        make(AppDefinedData=[*ten, {"Key": "k10", "Value": "v"}])
    assert code_of(exc) == Code.BAD_PARAMETER


def test_create_refuses_member_list_with_10007() -> None:
    with pytest.raises(LivecastError) as exc:
        make(MemberList=[{"Member_Account": "bob"}])
    assert code_of(exc) == Code.NO_PERMISSION
    with pytest.raises(LivecastError) as exc:
        make(AppMemberDefinedData=[{"Key": "k", "Value": "v"}])
    assert code_of(exc) == Code.NO_PERMISSION
    assert make(MemberList=[]).name == ""  # an empty list asks for nothing


@pytest.mark.parametrize("field", ["MemberList", "AppMemberDefinedData"])
@pytest.mark.parametrize("value", [None, 0, 1, "x", "", {}, True])
def test_create_refuses_a_member_list_that_is_not_an_array_with_10004(field: str,
                                                                      value: object) -> None:
    with pytest.raises(LivecastError) as exc:
        make(**{field: value})
    assert code_of(exc) == Code.BAD_PARAMETER


def test_create_checks_group_id_and_owner() -> None:
    with pytest.raises(LivecastError) as exc:
        Group.create("x" * 49, "owner", T0, {})
    assert code_of(exc) == Code.INVALID_GROUP_ID
    with pytest.raises(LivecastError) as exc:
        Group.create("room", 42, T0, {})  # type: ignore[arg-type]
    assert code_of(exc) == Code.BAD_PARAMETER


# ------------------------------------------------------------------ modify

def test_modify_profile_fields_and_changes() -> None:
    g = make(Name="old", Introduction="same")
    changes = g.modify({"GroupId": "room-1", "Name": "new", "Introduction": "same",
                        "FaceUrl": "http://f", "MaxMemberNum": 10}, T0 + 5)
    assert changes == {"Name": "new", "FaceUrl": "http://f"}
    assert (g.name, g.introduction, g.face_url) == ("new", "same", "http://f")
    assert (g.info_seq, g.last_info_time) == (1, T0 + 5)


def test_modify_without_change_returns_empty_and_keeps_seq() -> None:
    g = make(Name="n", AppDefinedData=app(("k", "v")))
    cases: list[dict[str, object]] = [
        {}, {"Name": "n"}, {"AppDefinedData": app(("k", "v"), ("absent", ""))},
        {"MuteAllMember": "Off"}, {"Bogus": 1},
    ]
    for fields in cases:
        assert g.modify(fields, T0 + 9) == {}
    assert (g.info_seq, g.last_info_time) == (0, T0)


def test_modify_app_defined_upsert_and_delete() -> None:
    g = make(AppDefinedData=app(("a", "1"), ("b", "2"), ("c", "3")))
    changes = g.modify({"AppDefinedData": app(("b", "20"), ("c", ""), ("d", "4"), ("a", "1"),
                                              ("zz", ""))}, T0 + 1)
    assert changes == {"AppDefinedData": app(("b", "20"), ("c", ""), ("d", "4"))}
    assert g.app_defined == {"a": "1", "b": "20", "d": "4"}
    assert list(g.app_defined) == ["a", "b", "d"]
    assert g.profile()["AppDefinedData"] == app(("a", "1"), ("b", "20"), ("d", "4"))


def test_modify_app_defined_last_write_of_a_key_wins() -> None:
    g = make(AppDefinedData=app(("a", "1")))
    assert g.modify({"AppDefinedData": app(("a", "2"), ("a", "3"))}, T0) == {
        "AppDefinedData": app(("a", "3"))}
    assert g.modify({"AppDefinedData": app(("a", ""), ("a", "3"))}, T0) == {}


def test_modify_app_defined_key_count_counts_the_result() -> None:
    g = make(AppDefinedData=app(*[(f"k{i}", "v") for i in range(APP_DEFINED_MAX_KEYS)]))
    # deleting one frees room for another in the same request
    g.modify({"AppDefinedData": app(("k0", ""), ("new", "v"))}, T0)
    assert len(g.app_defined) == APP_DEFINED_MAX_KEYS and "new" in g.app_defined
    with pytest.raises(LivecastError):
        g.modify({"AppDefinedData": app(("another", "v"))}, T0)


@pytest.mark.parametrize("bad", [
    {"FaceUrl": "x" * 101},
    {"MuteAllMember": "on"},
    {"MuteAllMember": True},
    {"AppDefinedData": app(("bad-key", "v"))},
    {"AppDefinedData": app(*[(f"n{i}", "v") for i in range(APP_DEFINED_MAX_KEYS)])},
    {"Notification": None},
])
def test_modify_is_atomic(bad: dict[str, object]) -> None:
    g = make(Name="keep", AppDefinedData=app(("k", "v")))
    before = copy.deepcopy(g)
    fields: dict[str, object] = {"Name": "changed", "Introduction": "changed",
                                 "MuteAllMember": "On"}
    fields["AppDefinedData"] = app(("k", ""), ("k2", "x"))
    fields.update(bad)
    with pytest.raises(LivecastError) as exc:
        g.modify(fields, T0 + 1)
    assert code_of(exc) == Code.BAD_PARAMETER
    assert g == before


def test_modify_refuses_non_mapping() -> None:
    with pytest.raises(LivecastError):
        make().modify(["Name", "x"], T0)  # type: ignore[arg-type]


def test_mute_all_member() -> None:
    g = make()
    assert g.modify({"MuteAllMember": "On"}, T0 + 1) == {"MuteAllMember": "On"}
    assert g.mute_all and g.profile()["MuteAllMember"] == "On" and g.info_seq == 1
    assert g.modify({"MuteAllMember": "On"}, T0 + 2) == {}
    assert g.modify({"MuteAllMember": "Off"}, T0 + 3) == {"MuteAllMember": "Off"}
    assert not g.mute_all and g.info_seq == 2


# ------------------------------------------------------------------ counters

def test_counters_set_increase_decrease() -> None:
    g = make()
    assert g.update_counters([{"Key": "like", "Value": 5}, {"Key": "view", "Value": 1}],
                             None) == [{"Key": "like", "Value": 5}, {"Key": "view", "Value": 1}]
    assert g.update_counters([{"Key": "like", "Value": 3}], "Increase") == [
        {"Key": "like", "Value": 8}]
    assert g.update_counters([{"Key": "gift", "Value": 2}], "Decrease") == [
        {"Key": "gift", "Value": -2}]
    assert g.update_counters([{"Key": "like", "Value": 1}, {"Key": "like", "Value": 1}],
                             "Increase") == [{"Key": "like", "Value": 10}]
    assert g.update_counters([{"Key": "view", "Value": 0}], "Set") == [{"Key": "view", "Value": 0}]
    assert g.counter_list() == [{"Key": "like", "Value": 10}, {"Key": "view", "Value": 0},
                                {"Key": "gift", "Value": -2}]
    assert g.counter_list(["gift", "missing"]) == [{"Key": "gift", "Value": -2}]


def test_counters_21st_key_is_10063_and_changes_nothing() -> None:
    g = make()
    g.update_counters([{"Key": f"c{i}", "Value": i} for i in range(MAX_COUNTERS)], "Set")
    before = dict(g.counters)
    with pytest.raises(LivecastError) as exc:
        g.update_counters([{"Key": "c0", "Value": 99}, {"Key": "c20", "Value": 1}], "Set")
    assert code_of(exc) == Code.TOO_MANY_COUNTERS
    assert g.counters == before
    g.update_counters([{"Key": "c0", "Value": 99}], "Increase")  # existing keys still fine
    assert g.counters["c0"] == 99


def test_counters_int64_overflow_is_10004_and_changes_nothing() -> None:
    g = make()
    g.update_counters([{"Key": "a", "Value": INT64_MAX}, {"Key": "b", "Value": INT64_MIN}], "Set")
    for items, mode in [([{"Key": "x", "Value": 1}, {"Key": "a", "Value": 1}], "Increase"),
                        ([{"Key": "x", "Value": 1}, {"Key": "b", "Value": 1}], "Decrease"),
                        ([{"Key": "x", "Value": INT64_MAX + 1}], "Set"),
                        ([{"Key": "x", "Value": INT64_MIN - 1}], "Set")]:
        with pytest.raises(LivecastError) as exc:
            g.update_counters(items, mode)
        assert code_of(exc) == Code.BAD_PARAMETER
    assert g.counters == {"a": INT64_MAX, "b": INT64_MIN}


@pytest.mark.parametrize("items,mode", [
    ([{"Key": "k", "Value": True}], "Set"),
    ([{"Key": "k", "Value": 1.5}], "Set"),
    ([{"Key": "k", "Value": "1"}], "Set"),
    ([{"Key": "", "Value": 1}], "Set"),
    ([{"Key": "k" * (COUNTER_KEY_LIMIT + 1), "Value": 1}], "Set"),
    ([{"Key": "\u00e9" * 64 + "k", "Value": 1}], "Set"),
    ([{"Key": "k"}], "Set"),
    ([], "Set"),
    ({"k": 1}, "Set"),
    ([{"Key": "k", "Value": 1}], "Add"),
    ([{"Key": "k", "Value": 1}], "set"),
])
def test_counters_bad_input(items: object, mode: object) -> None:
    g = make()
    with pytest.raises(LivecastError) as exc:
        g.update_counters(items, mode)
    assert code_of(exc) == Code.BAD_PARAMETER
    assert g.counters == {}


def test_counter_key_limit_in_bytes() -> None:
    g = make()
    key = "\u00e9" * (COUNTER_KEY_LIMIT // 2)
    assert g.update_counters([{"Key": key, "Value": 1}], None) == [{"Key": key, "Value": 1}]


def test_delete_counters() -> None:
    g = make()
    g.update_counters([{"Key": k, "Value": n} for n, k in enumerate("abc")], None)
    assert g.delete_counters(["b", "zz"]) == [{"Key": "b", "Value": 1}]
    assert g.counters == {"a": 0, "c": 2}
    assert g.delete_counters(None) == [{"Key": "a", "Value": 0}, {"Key": "c", "Value": 2}]
    assert g.counters == {} and g.delete_counters(None) == []
    with pytest.raises(LivecastError):
        g.delete_counters("abc")


# ------------------------------------------------------------------ mutes

def test_mute_for_seconds_expires() -> None:
    g = make()
    assert g.mute("bob", 60, T0) == T0 + 60
    assert g.is_muted("bob", T0 + 59.9)
    assert g.muted_list(T0 + 30) == [{"Member_Account": "bob", "MutedUntil": int(T0) + 60}]
    assert not g.is_muted("bob", T0 + 60)
    assert "bob" not in g.mutes  # purged on lookup
    assert g.muted_list(T0 + 60) == []


def test_muted_until_rounds_up_to_whole_seconds() -> None:
    g = make()
    g.mute("bob", 10, T0 + 0.25)
    assert g.muted_list(T0)[0]["MutedUntil"] == int(T0) + 11


def test_mute_zero_unmutes() -> None:
    g = make()
    g.mute("bob", FOREVER, T0)
    assert g.mute("bob", 0, T0 + 1) == 0
    assert not g.is_muted("bob", T0 + 1) and g.muted_list(T0 + 1) == []
    assert g.mute("never-muted", 0, T0) == 0


def test_mute_forever() -> None:
    g = make()
    assert g.mute("bob", FOREVER, T0) == FOREVER
    assert g.is_muted("bob", T0 + 100 * 365 * 86400)
    assert g.muted_list(T0) == [{"Member_Account": "bob", "MutedUntil": FOREVER}]
    # a long finite mute is capped at FOREVER, never past it
    assert g.mute("eve", FOREVER - 1, T0) == FOREVER
    assert g.muted_list(T0)[1] == {"Member_Account": "eve", "MutedUntil": FOREVER}


def test_remute_replaces_end_time() -> None:
    g = make()
    g.mute("bob", 600, T0)
    g.mute("bob", 10, T0 + 1)
    assert not g.is_muted("bob", T0 + 11)


def test_muted_list_purges_expired_only() -> None:
    g = make()
    g.mute("a", 10, T0)
    g.mute("b", 100, T0)
    g.mute("c", FOREVER, T0)
    assert [m["Member_Account"] for m in g.muted_list(T0 + 50)] == ["b", "c"]
    assert set(g.mutes) == {"b", "c"}


@pytest.mark.parametrize("seconds", [-1, FOREVER + 1, True, 1.5, "60", None])
def test_mute_time_must_be_uint32(seconds: object) -> None:
    g = make()
    with pytest.raises(LivecastError) as exc:
        g.mute("bob", seconds, T0)  # type: ignore[arg-type]
    assert code_of(exc) == Code.BAD_PARAMETER and "MuteTime" in exc.value.info
    assert g.mutes == {}


@pytest.mark.parametrize("user", ["", 5, None, "u" * 33])
def test_mute_user_must_be_an_account(user: object) -> None:
    with pytest.raises(LivecastError):
        make().mute(user, 60, T0)  # type: ignore[arg-type]


def test_mute_table_memory_is_bounded_by_live_entries() -> None:
    g = make()
    now = T0
    for i in range(10_000):  # each mute lasts 5 s; one new user per second
        g.mute(f"u{i}", 5, now)
        assert len(g.mutes) <= 64
        now += 1
    assert len(g.muted_list(now)) <= 5


def test_ban_table_memory_is_bounded_by_live_entries() -> None:
    g = make()
    for i in range(5000):
        g.ban(f"u{i}", 1, T0 + i)
        assert len(g.bans) <= 64


# ------------------------------------------------------------------ bans

def test_ban_for_seconds_expires() -> None:
    g = make()
    assert g.ban("bob", 3600, T0) == T0 + 3600
    assert g.is_banned("bob", T0 + 3599)
    assert g.banned_list(T0) == [{"Member_Account": "bob", "BannedUntil": int(T0) + 3600}]
    assert not g.is_banned("bob", T0 + 3600)
    assert g.banned_list(T0 + 3600) == [] and g.bans == {}


def test_ban_forever_and_unban() -> None:
    g = make()
    assert g.ban("bob", FOREVER, T0) == FOREVER
    g.ban("eve", 10, T0)
    assert g.banned_list(T0) == [{"Member_Account": "eve", "BannedUntil": int(T0) + 10},
                                 {"Member_Account": "bob", "BannedUntil": FOREVER}]
    assert g.unban("bob") is True
    assert g.unban("bob") is False
    assert not g.is_banned("bob", T0)
    assert g.is_banned("eve", T0)


@pytest.mark.parametrize("seconds", [0, -5, FOREVER + 1, False, 2.0])
def test_ban_duration_must_be_positive_uint32(seconds: object) -> None:
    g = make()
    with pytest.raises(LivecastError) as exc:
        g.ban("bob", seconds, T0)  # type: ignore[arg-type]
    assert code_of(exc) == Code.BAD_PARAMETER and "Duration" in exc.value.info
    assert g.bans == {}


def test_ban_and_mute_are_independent() -> None:
    g = make()
    g.ban("bob", 60, T0)
    assert not g.is_muted("bob", T0)
    g.mute("eve", 60, T0)
    assert not g.is_banned("eve", T0)


# ------------------------------------------------------------------ info

def full_group() -> Group:
    g = Group.create("room-1", "alice", T0 + 0.7, {
        "Name": "Live", "Introduction": "i", "Notification": "n", "FaceUrl": "f",
        "AppDefinedData": app(("likes", "3"), ("status", "live")),
    })
    g.modify({"Name": "Live 2"}, T0 + 10.5)
    g.last_msg_time = T0 + 20.9
    return g


def test_info_without_filters() -> None:
    info = full_group().info(T0 + 30, online=17, next_seq=42, appid=1400000001)
    assert info == {
        "GroupId": "room-1", "ErrorCode": 0, "ErrorInfo": "", "Type": "AVChatRoom",
        "Appid": 1400000001, "Name": "Live 2", "Introduction": "i", "Notification": "n",
        "FaceUrl": "f", "Owner_Account": "alice", "CreateTime": int(T0), "InfoSeq": 1,
        "LastInfoTime": int(T0) + 10, "LastMsgTime": int(T0) + 20, "NextMsgSeq": 42,
        "MemberNum": 17, "MaxMemberNum": 0, "ApplyJoinOption": "FreeAccess",
        "MuteAllMember": "Off", "AppDefinedData": app(("likes", "3"), ("status", "live")),
        "MemberList": [],
    }
    assert "Appid" not in full_group().info(T0, 0, 1)


def test_info_base_filter_selects_fields() -> None:
    info = full_group().info(T0, 5, 1, base_filter=["Type", "Name", "MemberNum", "Unknown"])
    assert info == {"GroupId": "room-1", "ErrorCode": 0, "ErrorInfo": "", "Type": "AVChatRoom",
                    "Name": "Live 2", "MemberNum": 5}


def test_info_app_filter_selects_keys() -> None:
    g = full_group()
    info = g.info(T0, 5, 1, base_filter=["Name"], app_filter=["status", "nope"])
    assert info["AppDefinedData"] == app(("status", "live"))
    assert set(info) == {"GroupId", "ErrorCode", "ErrorInfo", "Name", "AppDefinedData"}
    only_app = g.info(T0, 5, 1, app_filter=["likes"])
    assert only_app["AppDefinedData"] == app(("likes", "3")) and only_app["Name"] == "Live 2"
    listed = g.info(T0, 5, 1, base_filter=["AppDefinedData"])
    assert listed["AppDefinedData"] == app(("likes", "3"), ("status", "live"))
    assert g.info(T0, 5, 1, base_filter=[], app_filter=[])["AppDefinedData"] == []


def test_info_reports_mute_all() -> None:
    g = full_group()
    g.modify({"MuteAllMember": "On"}, T0)
    assert g.info(T0, 0, 1, base_filter=["MuteAllMember"])["MuteAllMember"] == "On"


# ------------------------------------------------------------------ property

def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about 6 times in 7, ``bad`` otherwise."""
    return st.integers(min_value=0, max_value=6).flatmap(lambda n: bad if n == 0 else good)


_keys = st.sampled_from(["a", "b", "c", "k_1", "Z9"])
_bad_keys = st.sampled_from(["bad-key", "", "x" * 17, "caf\u00e9"])
_bad_values = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers()))
_good_item = st.fixed_dictionaries(
    {"Key": _keys, "Value": st.sampled_from(["", "1", "2", "\u623f"])})
_bad_item = st.one_of(
    st.fixed_dictionaries({"Key": _bad_keys, "Value": st.just("v")}),
    st.fixed_dictionaries({"Key": _keys, "Value": st.one_of(st.just("v" * 513), _bad_values)}),
    st.fixed_dictionaries({"Key": _keys}),
)


def _profile_text(limit: int) -> st.SearchStrategy[Any]:
    near = st.integers(min_value=limit - 2, max_value=limit + 1)
    return _mostly(
        st.one_of(
            st.text(max_size=12),
            near.map(lambda n: "v" * n),
            near.map(lambda n: "\u00e9" * (n // 2) + "v" * (n % 2)),
            st.text(alphabet="a\u00e9\u623f", min_size=limit // 3 - 2, max_size=limit // 3 + 2),
        ),
        _bad_values,
    )


_field_values: dict[str, st.SearchStrategy[Any]] = {
    **{name: _profile_text(limit) for name, limit in PROFILE_LIMITS.items()},
    "MuteAllMember": _mostly(st.sampled_from(["On", "Off"]), st.sampled_from(["on", "OFF", 1])),
    "AppDefinedData": _mostly(st.lists(_mostly(_good_item, _bad_item), min_size=1, max_size=5),
                              _bad_values),
    "GroupId": st.text(max_size=5),
    "MaxMemberNum": st.integers(),
    "Bogus": _bad_values,
}
_field_maps = st.lists(st.sampled_from(sorted(_field_values)), unique=True, max_size=6).flatmap(
    lambda names: st.fixed_dictionaries({n: _field_values[n] for n in names}))


def expected_app(before: dict[str, str], items: list[dict[str, str]]) -> dict[str, str]:
    result = dict(before)
    for item in items:
        if item["Value"]:
            result[item["Key"]] = item["Value"]
        else:
            result.pop(item["Key"], None)
    return result


@settings(max_examples=400)
@given(_field_maps, st.lists(st.sampled_from(["a", "b", "k_1", "p", "q", "r", "s", "t", "u"]),
                             unique=True, max_size=9))
def test_modify_either_applies_everything_or_nothing(fields: dict[str, Any],
                                                     start_keys: list[str]) -> None:
    g = make(Name="start", AppDefinedData=app(*[(k, "0") for k in start_keys]))
    before = copy.deepcopy(g)
    try:
        changes = g.modify(fields, T0 + 1)
    except LivecastError as exc:
        assert exc.code == Code.BAD_PARAMETER
        assert g == before
        return
    for name, attr in ATTRS.items():
        expected = fields.get(name, getattr(before, attr))
        assert getattr(g, attr) == expected
        assert len(expected.encode()) <= PROFILE_LIMITS[name]
    if "MuteAllMember" in fields:
        assert g.mute_all == (fields["MuteAllMember"] == "On")
    if "AppDefinedData" in fields:
        assert g.app_defined == expected_app(before.app_defined, fields["AppDefinedData"])
    assert len(g.app_defined) <= APP_DEFINED_MAX_KEYS
    changed = (g.profile() != before.profile())
    assert bool(changes) == changed
    assert g.info_seq == before.info_seq + int(changed)
    assert g.last_info_time == (T0 + 1 if changed else before.last_info_time)


def test_a_valid_group_id_is_exactly_printable_ascii_per_character() -> None:
    """Every code point, alone and inside an id: valid exactly in 0x20-0x7E."""
    for c in range(0x110000):
        printable = 0x20 <= c <= 0x7E
        assert is_valid_group_id(chr(c)) is printable
        assert is_valid_group_id("room-" + chr(c) + "-1") is printable


def test_mutes_and_bans_are_listed_by_end_time_then_user() -> None:
    """The order is the entries' own, not the table's (a store reloads a room's
    table in its own order): the same list however they were set."""
    orders = (["long", "short", "mid", "also-mid"], ["also-mid", "mid", "short", "long"])
    lists = []
    for order in orders:
        g = make()
        ends = {"long": 3600, "short": 60, "mid": 600, "also-mid": 600}
        for user in order:
            g.mute(user, ends[user], T0)
            g.ban(user, ends[user], T0)
        lists.append(([m["Member_Account"] for m in g.muted_list(T0)],
                      [b["Member_Account"] for b in g.banned_list(T0)]))
    expected = ["short", "also-mid", "mid", "long"]
    assert lists == [(expected, expected), (expected, expected)]


def test_tips_heard_from_another_process_apply_the_send_rule_only() -> None:
    g = make()
    g.heard_tips([{"type": "mute", "member": "bob", "until": int(T0) + 60},
                  {"type": "groupInfo", "changes": {"MuteAllMember": "On", "Name": "x"}},
                  "junk", {"type": "mute", "member": 7, "until": 5},
                  {"type": "mute", "member": "eve", "until": "soon"}], T0)
    assert g.is_muted("bob", T0 + 30) and not g.is_muted("bob", T0 + 61)
    assert g.mute_all and g.name != "x" and "eve" not in g.mutes
    g.heard_tips([{"type": "mute", "member": "bob", "until": 0},
                  {"type": "groupInfo", "changes": {"MuteAllMember": "Off"}}], T0)
    assert not g.is_muted("bob", T0) and not g.mute_all
    g.heard_ban("carol", T0 + 10, T0)
    assert g.is_banned("carol", T0 + 5) and not g.is_banned("carol", T0 + 11)
