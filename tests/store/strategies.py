"""Hypothesis strategies for groups and their stored records."""

from __future__ import annotations

from hypothesis import strategies as st

from livecast.core.group import Group
from livecast.core.group_fields import FOREVER, INT64_MAX, INT64_MIN
from livecast.core.records import GroupRecord

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
group_ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
                    max_size=48)
times = st.floats(min_value=0, max_value=FOREVER, allow_nan=False) | st.just(float(FOREVER))
restrictions = st.dictionaries(texts, times, max_size=5)
optional_ints = st.none() | st.integers(min_value=1, max_value=100_000)


@st.composite
def groups(draw: st.DrawFn) -> Group:
    return Group(
        draw(group_ids), draw(texts), draw(times),
        name=draw(texts), introduction=draw(texts), notification=draw(texts),
        face_url=draw(texts), mute_all=draw(st.booleans()),
        app_defined=draw(st.dictionaries(texts, texts, max_size=4)),
        counters=draw(st.dictionaries(texts, st.integers(INT64_MIN, INT64_MAX), max_size=4)),
        mutes=draw(restrictions), bans=draw(restrictions),
        info_seq=draw(st.integers(0, 2**31)), last_info_time=draw(times),
        last_msg_time=draw(times), rate=draw(optional_ints), burst=draw(optional_ints))


@st.composite
def records(draw: st.DrawFn) -> GroupRecord:
    """Any record a store must keep as is (attributes and MaxMemberNum included)."""
    group = draw(groups())
    return GroupRecord(
        group_id=group.group_id, owner=group.owner, created=group.created,
        type=draw(st.sampled_from(["AVChatRoom", "Community"])), name=group.name,
        introduction=group.introduction, notification=group.notification,
        face_url=group.face_url, max_member_num=draw(st.integers(0, 2**31)),
        mute_all=group.mute_all, info_seq=group.info_seq,
        last_info_time=group.last_info_time, last_msg_time=group.last_msg_time,
        rate=group.rate, burst=group.burst, app_defined=group.app_defined,
        counters=group.counters, attributes=draw(st.dictionaries(texts, texts, max_size=4)),
        attrs_seq=draw(st.integers(0, 2**40)),
        mutes=group.mutes, bans=group.bans)
