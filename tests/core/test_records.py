"""Group <-> GroupRecord conversions (livecast/core/records.py)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from livecast.core.group import MAX_MEMBER_NUM, Group
from livecast.core.records import GroupRecord, group_record, restore_group
from tests.store.strategies import groups, records, texts


@given(groups(), st.dictionaries(texts, texts, max_size=4))
def test_a_group_survives_its_record(group: Group, attributes: dict[str, str]) -> None:
    record = group_record(group, attributes)
    assert restore_group(record) == group
    assert record.attributes == attributes


@given(records())
def test_a_record_survives_its_group(record: GroupRecord) -> None:
    record = replace(record, type="AVChatRoom", max_member_num=MAX_MEMBER_NUM)
    assert group_record(restore_group(record), record.attributes) == record


def test_record_and_group_share_no_maps() -> None:
    group = Group.create("room", "owner", 100.0, {"Name": "n", "AppDefinedData": [
        {"Key": "k", "Value": "v"}]})
    group.mute("muted", 60, 100.0)
    record = group_record(group)
    group.app_defined["k"] = "changed"
    group.mutes.clear()
    assert record.app_defined == {"k": "v"} and record.mutes == {"muted": 160.0}
    restored = restore_group(record)
    restored.bans["x"] = 1.0
    restored.counters["c"] = 1
    assert record.bans == {} and record.counters == {}


def test_a_restored_group_still_enforces_its_restrictions() -> None:
    group = Group.create("room", "owner", 100.0, {"Name": "n"})
    group.ban("banned", 4294967295, 100.0)
    group.mute("muted", 60, 100.0)
    restored = restore_group(group_record(group))
    assert restored.is_banned("banned", 10**9)
    assert restored.is_muted("muted", 159.0) and not restored.is_muted("muted", 160.0)
    assert restored.profile() == group.profile()
