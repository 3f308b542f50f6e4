"""Groups as plain records for the durable store, and back (pure, no I/O).

``GroupRecord`` is what ``livecast.store`` keeps of one room: every field a
``Group`` holds that outlives a process (profile, AppDefinedData, counters,
mute-all, rate and burst, info seq and times, mutes and bans with their
absolute end times) plus what the room keeps beside its ``Group``: group
attributes (key/values) and ``MaxMemberNum``.

Invariants:
- ``restore_group(group_record(g)) == g`` for every ``Group`` ``g`` (its
  purge marks aside, which ``Group`` leaves out of equality);
- ``group_record(restore_group(r), r.attributes, r.attrs_seq) == r`` for every
  record of an AVChatRoom whose ``max_member_num`` is ``MAX_MEMBER_NUM`` (the
  only value a Group reports);
- a record shares no mutable state with the group it came from, nor a group
  with the record it was restored from: maps are copied both ways;
- group attributes (values and their version ``attrs_seq``) travel with the
  group when ``Group`` holds them (``Group.attrs``: ``values`` and ``seq``);
  otherwise the caller passes them to ``group_record`` and reads them from
  the record. Explicit arguments win over the group's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from livecast.core.group import GROUP_TYPE, MAX_MEMBER_NUM, Group

__all__ = ["GroupRecord", "group_record", "restore_group"]


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One stored room (see the module docstring). Times are unix seconds."""

    group_id: str
    owner: str
    created: float
    type: str = GROUP_TYPE
    name: str = ""
    introduction: str = ""
    notification: str = ""
    face_url: str = ""
    max_member_num: int = MAX_MEMBER_NUM
    mute_all: bool = False
    info_seq: int = 0
    last_info_time: float = 0.0
    last_msg_time: float = 0.0
    rate: int | None = None
    burst: int | None = None
    join_history: bool = True
    app_defined: Mapping[str, str] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    attrs_seq: int = 0  # the group attributes' version (compare-and-set)
    mutes: Mapping[str, float] = field(default_factory=dict)  # user -> end time
    bans: Mapping[str, float] = field(default_factory=dict)  # user -> end time


def group_record(
    group: Group, attributes: Mapping[str, str] | None = None, attrs_seq: int | None = None
) -> GroupRecord:
    """The record of ``group``; ``attributes``/``attrs_seq`` override the group's own."""
    own_values, own_seq = _attrs_of(group)
    return GroupRecord(
        group_id=group.group_id,
        owner=group.owner,
        created=group.created,
        name=group.name,
        introduction=group.introduction,
        notification=group.notification,
        face_url=group.face_url,
        mute_all=group.mute_all,
        info_seq=group.info_seq,
        last_info_time=group.last_info_time,
        last_msg_time=group.last_msg_time,
        rate=group.rate,
        burst=group.burst,
        join_history=group.join_history,
        app_defined=dict(group.app_defined),
        counters=dict(group.counters),
        attributes=dict(own_values if attributes is None else attributes),
        attrs_seq=own_seq if attrs_seq is None else attrs_seq,
        mutes=dict(group.mutes),
        bans=dict(group.bans),
    )


def restore_group(record: GroupRecord) -> Group:
    """The ``Group`` a record describes, with its attributes when Group holds them."""
    group = Group(
        record.group_id,
        record.owner,
        record.created,
        name=record.name,
        introduction=record.introduction,
        notification=record.notification,
        face_url=record.face_url,
        mute_all=record.mute_all,
        app_defined=dict(record.app_defined),
        counters=dict(record.counters),
        mutes=dict(record.mutes),
        bans=dict(record.bans),
        info_seq=record.info_seq,
        last_info_time=record.last_info_time,
        last_msg_time=record.last_msg_time,
        rate=record.rate,
        burst=record.burst,
        join_history=record.join_history,
    )
    _set_attrs(group, record.attributes, record.attrs_seq)
    return group


def _attrs_of(group: Group) -> tuple[Mapping[str, str], int]:
    """The group's attribute values and version, if it holds any."""
    if not hasattr(group, "attrs"):
        return {}, 0
    return dict(group.attrs.values), int(group.attrs.seq)


def _set_attrs(group: Group, values: Mapping[str, str], seq: int) -> None:
    if hasattr(group, "attrs"):
        group.attrs.values = dict(values)
        group.attrs.seq = seq
