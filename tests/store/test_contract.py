"""The Store contract (livecast/store/base.py), run against every engine:
the memory twin, a SQLite file, a redis-server, and a 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from hypothesis import HealthCheck, given, settings

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord
from livecast.store.base import Store, StoreError
from tests.backplane.conftest import until_true
from tests.store.conftest import Engine
from tests.store.strategies import records

FULL = GroupRecord(
    group_id="room-1", owner="anchor", created=1700000000.25, name="Live", introduction="intro",
    notification="notice", face_url="https://x/y.png", max_member_num=0, mute_all=True,
    info_seq=7, last_info_time=1700000100.5, last_msg_time=1700000200.75, rate=40, burst=80,
    app_defined={"Topic": "music", "Level": "3"}, counters={"likes": 12, "neg": -(2**63)},
    attributes={"seat": "1", "mode": "pk"},
    mutes={"loud": 1700000500.5, "forever": float(FOREVER)},
    bans={"troll": 1700009999.0, "spam": float(FOREVER)})


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records())
async def test_a_room_reads_back_exactly_as_put(store: Store, record: GroupRecord) -> None:
    assert await store.put_group(record, create=True) is True
    assert await store.load_group(record.group_id) == record
    await store.delete_group(record.group_id)


async def test_put_settings_keeps_the_stored_mutes_and_bans(store: Store) -> None:
    await store.put_group(FULL, create=True)
    changed = replace(FULL, name="Renamed", mutes={}, bans={}, app_defined={"Topic": "talk"},
                      counters={}, attributes={}, rate=None, burst=None)
    assert await store.put_settings(changed) is True
    assert await store.load_group("room-1") == replace(changed, mutes=FULL.mutes, bans=FULL.bans)
    assert await store.put_group(changed) is True  # the whole room: no mutes or bans left
    assert await store.load_group("room-1") == changed


async def test_delete_group_removes_every_part_of_the_room(store: Store) -> None:
    other = replace(FULL, group_id="room-2")
    await store.put_group(FULL, create=True)
    await store.put_group(other, create=True)
    await store.add_likes("room-1", 5)
    assert await store.delete_group("room-1") is True
    assert await store.delete_group("room-1") is False
    assert await store.load_group("room-1") is None
    assert await store.likes("room-1") == 0
    # re-created: nothing comes back
    assert await store.put_group(replace(FULL, mutes={}, bans={}), create=True) is True
    found = await store.load_group("room-1")
    assert found is not None and found.mutes == {} and found.bans == {}
    assert await store.load_group("room-2") == other


async def test_mutes_and_bans_are_set_and_cleared_one_member_at_a_time(store: Store) -> None:
    await store.put_group(replace(FULL, mutes={}, bans={}), create=True)
    await store.set_mute("room-1", "a", 100.5)
    await store.set_mute("room-1", "a", 200.5)  # a later call replaces the end time
    await store.set_mute("room-1", "b", float(FOREVER))
    await store.set_ban("room-1", "c", 300.0)
    await store.set_ban("room-1", "d", 400.0)
    await store.clear_mute("room-1", "b")
    await store.clear_ban("room-1", "d")
    await store.clear_ban("room-1", "nobody")
    found = await store.load_group("room-1")
    assert found is not None
    assert found.mutes == {"a": 200.5} and found.bans == {"c": 300.0}


async def test_load_all_with_now_drops_and_deletes_what_is_over(store: Store) -> None:
    await store.put_group(replace(FULL, mutes={"over": 100.0, "at-now": 150.0, "later": 151.0,
                                               "forever": float(FOREVER)},
                                  bans={"over": 10.0, "forever": float(FOREVER)}), create=True)
    # past FOREVER itself, a FOREVER entry still holds (core/group.py)
    snapshot = await store.load_all(now=150.0)
    (room,) = snapshot.groups
    assert room.mutes == {"later": 151.0, "forever": float(FOREVER)}
    assert room.bans == {"forever": float(FOREVER)}
    assert (await store.load_all()).groups == snapshot.groups  # deleted, not just hidden
    (room,) = (await store.load_all(now=float(FOREVER) + 10)).groups
    assert room.mutes == {"forever": float(FOREVER)} and room.bans == {"forever": float(FOREVER)}


async def test_load_all_lists_rooms_by_creation_then_id(store: Store) -> None:
    for gid, created in (("c", 2.0), ("b", 1.0), ("a", 2.0), ("d", 0.5)):
        await store.put_group(GroupRecord(gid, "owner", created), create=True)
    snapshot = await store.load_all()
    assert [g.group_id for g in snapshot.groups] == ["d", "b", "a", "c"]


async def test_awkward_group_ids_keep_their_rooms_apart(store: Store) -> None:
    ids = ["a", "a}:info", "{a}", "a}", "@TGS#aXYZ", "with space:and:colons"]
    for n, gid in enumerate(ids):
        await store.put_group(replace(FULL, group_id=gid, info_seq=n), create=True)
        await store.add_likes(gid, n + 1)
    for n, gid in enumerate(ids):
        assert await store.load_group(gid) == replace(FULL, group_id=gid, info_seq=n)
        assert await store.likes(gid) == n + 1
    assert {g.group_id for g in (await store.load_all()).groups} == set(ids)


async def test_kick_times_keep_the_latest(store: Store) -> None:
    assert await store.kick_time("alice") is None
    await store.set_kick("alice", 1700000000.125)
    await store.set_kick("alice", 1600000000.0)  # an older kick does not move it back
    await store.set_kick("bob", 5.5)
    assert await store.kick_time("alice") == 1700000000.125
    assert (await store.load_all()).kicks == {"alice": 1700000000.125, "bob": 5.5}


async def test_seen_answers_false_once_per_key_within_the_window(store: Store) -> None:
    now = time.time()
    assert await store.seen("room-1:alice:42", now) is False
    assert await store.seen("room-1:alice:42", now + 1) is True
    assert await store.seen("room-1:alice:43", now + 1) is False
    answers = await asyncio.gather(*(store.seen("race", now) for _ in range(20)))
    assert sorted(answers) == [False] + [True] * 19


async def test_kick_times_are_every_users_last(store: Store) -> None:
    assert await store.kick_times() == {}
    await store.set_kick("alice", 1000.5)
    await store.set_kick("bob", 2000.0)
    await store.set_kick("alice", 900.0)  # an earlier kick does not win
    assert await store.kick_times() == {"alice": 1000.5, "bob": 2000.0}
    assert await store.kick_time("alice") == 1000.5


async def test_unsee_forgets_one_key_at_once(store: Store) -> None:
    now = time.time()
    assert await store.seen("room-1:alice:7", now) is False
    assert await store.seen("room-1:alice:8", now) is False
    await store.unsee("room-1:alice:7")
    await store.unsee("never-seen")  # nothing to forget: no error
    assert await store.recent("room-1:alice:7", now + 1) is False
    assert await store.recent("room-1:alice:8", now + 1) is True
    assert await store.seen("room-1:alice:7", now + 1) is False  # recorded anew


async def test_seen_forgets_a_key_after_its_window(store: Store) -> None:
    # Redis expires by its own clock, so both engines run on wall time here.
    assert await store.seen("short", time.time(), window=0.2) is False
    deadline = time.monotonic() + 10
    while await store.seen("short", time.time(), window=0.2):
        assert time.monotonic() < deadline, "the key never expired"
        await asyncio.sleep(0.05)
    assert await store.seen("short", time.time(), window=0.2) is True  # recorded again


async def test_like_totals_add_up(store: Store) -> None:
    assert await store.likes("room-1") == 0
    assert await store.add_likes("room-1", 3) == 3
    totals = await asyncio.gather(*(store.add_likes("room-1", 1) for _ in range(50)))
    assert sorted(totals) == list(range(4, 54))
    assert await store.likes("room-1") == 53
    assert (await store.load_all()).likes == {}  # only the totals of stored rooms
    await store.put_group(FULL, create=True)
    assert (await store.load_all()).likes == {"room-1": 53}


async def test_a_reopened_store_finds_everything(durable: Engine) -> None:
    store = await durable.open()
    await store.put_group(replace(FULL, mutes={}, bans={}), create=True)
    await store.put_group(replace(FULL, group_id="room-2", created=1.0), create=True)
    await store.set_mute("room-1", "loud", 1700000500.5)
    await store.set_ban("room-1", "spam", float(FOREVER))
    await store.set_kick("kicked", 1700000300.5)
    await store.add_likes("room-1", 99)
    await store.close()
    reopened = await durable.open()
    snapshot = await reopened.load_all(now=1700000400.0)
    assert snapshot.groups == (replace(FULL, group_id="room-2", created=1.0),
                               replace(FULL, mutes={"loud": 1700000500.5},
                                       bans={"spam": float(FOREVER)}))
    assert snapshot.kicks == {"kicked": 1700000300.5}
    assert snapshot.likes == {"room-1": 99}
    assert await reopened.kick_time("kicked") == 1700000300.5


async def test_health_and_metrics(durable: Engine) -> None:
    calls: list[tuple[str, float, bool]] = []
    store = await durable.open(lambda op, seconds, ok: calls.append((op, seconds, ok)))
    assert store.healthy and await store.ping()
    await store.put_group(FULL, create=True)
    assert [(op, ok) for op, _, ok in calls] == [("ping", True), ("put_group", True)]
    assert all(seconds >= 0 for _, seconds, _ in calls)
    await store.close()
    assert not store.healthy and not await store.ping()
    try:
        await store.put_group(FULL)
    except StoreError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed store acknowledged a write")


async def test_recent_checks_without_recording(store: Store) -> None:
    now = time.time()
    assert not await store.recent("k", now)
    assert not await store.recent("k", now)  # a check records nothing
    assert not await store.seen("k", now)
    assert await store.recent("k", now + 1)
    assert not await store.recent("other", now + 1)


async def test_the_marker_is_made_once_and_kept(store: Store) -> None:
    first = await store.marker()
    assert first and await store.marker() == first


async def test_put_settings_writes_only_a_stored_room(store: Store) -> None:
    assert await store.put_settings(FULL) is False
    assert await store.load_group("room-1") is None
    assert (await store.load_all()).groups == ()
    await store.put_group(replace(FULL, name="first"), create=True)
    assert await store.put_settings(FULL) is True
    assert await store.load_group("room-1") == FULL


async def test_put_group_replaces_only_a_stored_room(store: Store) -> None:
    assert await store.put_group(FULL) is False
    assert await store.load_group("room-1") is None
    assert (await store.load_all()).groups == ()
    await store.put_group(replace(FULL, mutes={}, bans={}, name="first"), create=True)
    assert await store.put_group(FULL) is True
    assert await store.load_group("room-1") == FULL


async def test_a_create_never_overwrites_a_stored_room(store: Store) -> None:
    assert await store.put_group(FULL, create=True) is True
    assert await store.put_group(replace(FULL, owner="thief", mutes={}, bans={"x": 1.0}),
                                 create=True) is False
    assert await store.load_group("room-1") == FULL
    assert [g.group_id for g in (await store.load_all()).groups] == ["room-1"]


async def test_of_concurrent_creates_of_one_id_exactly_one_wins(engine: Engine) -> None:
    first = await engine.open()
    # two processes: on Redis (one process has a SQLite directory open at a time)
    second = first if engine.name in ("memory", "sqlite") else await engine.open()
    rivals = [replace(FULL, owner=f"owner-{n}") for n in range(10)]
    won = await asyncio.gather(*((first, second)[n % 2].put_group(r, create=True)
                                 for n, r in enumerate(rivals)))
    assert won.count(True) == 1
    assert await second.load_group("room-1") == rivals[won.index(True)]


async def test_a_destroyed_room_is_not_brought_back_by_a_late_write(store: Store) -> None:
    await store.put_group(FULL, create=True)
    assert await store.delete_group("room-1") is True
    assert await store.put_settings(replace(FULL, name="late")) is False
    assert await store.put_group(replace(FULL, name="late")) is False
    assert await store.load_group("room-1") is None
    assert (await store.load_all()).groups == ()
    assert await store.put_group(FULL, create=True) is True  # the id is free again
    assert (await store.load_all()).groups == (FULL,)


async def test_a_short_window_does_not_forget_keys_of_a_longer_one(store: Store) -> None:
    t0 = time.time()
    assert await store.seen("room-1:alice:1", t0) is False  # the default window
    assert await store.seen("broadcast-rate", t0 + 2, window=1.0) is False
    assert await store.recent("room-1:alice:1", t0 + 2)
    assert await store.seen("room-1:alice:1", t0 + 2) is True


async def test_a_key_lives_the_window_it_was_seen_with(store: Store) -> None:
    # Redis expires keys by its clock: nothing here waits for an expiry
    t0 = time.time()
    assert await store.seen("long", t0, window=1000.0) is False
    assert await store.recent("long", t0 + 500)  # past the default window, not past its own
    assert await store.seen("long", t0 + 500) is True


NICK, IMAGE = "Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"


async def test_profiles_read_back_as_put(store: Store) -> None:
    alice = {NICK: "Ålice 🎤 李", IMAGE: "https://x/a.png", "Tag_Profile_IM_Level": 7,
             "Tag_Profile_Custom_Score": -(2**63)}
    await store.put_profile("alice", alice)
    await store.put_profile("with space:and:{colons}", {NICK: ""})
    assert await store.load_profiles(["alice", "nobody", "with space:and:{colons}"]) == {
        "alice": alice, "with space:and:{colons}": {NICK: ""}}
    assert await store.load_profiles([]) == {}
    assert await store.load_profiles(["nobody"]) == {}


async def test_a_lock_has_one_holder_until_released_by_it(store: Store) -> None:
    token = await store.lock("room:r1", 10)
    assert token is not None
    assert await store.lock("room:r1", 10) is None  # held
    assert await store.lock("room:r2", 10) is not None  # another name
    await store.unlock("room:r1", "not-the-token")  # not its holder: still held
    assert await store.lock("room:r1", 10) is None
    await store.unlock("room:r1", token)
    again = await store.lock("room:r1", 10)
    assert again is not None and again != token


async def test_a_lock_not_released_expires(store: Store) -> None:
    assert await store.lock("short", 0.001) is not None

    async def taken() -> bool:
        return await store.lock("short", 10) is not None
    await until_true(taken, 5.0)  # the store's own clock expires it


async def test_all_profiles_up_to_a_limit(store: Store) -> None:
    assert await store.all_profiles(10) == {}
    for user in ("a", "b", "c"):
        await store.put_profile(user, {NICK: user.upper()})
    await store.put_profile("a", {NICK: "A2"})  # replaced, still one profile
    assert await store.all_profiles(3) == {"a": {NICK: "A2"}, "b": {NICK: "B"},
                                           "c": {NICK: "C"}}
    assert await store.all_profiles(2) is None  # more than the limit


async def test_a_profile_put_again_replaces_the_stored_one(store: Store) -> None:
    await store.put_profile("alice", {NICK: "Alice", IMAGE: "https://x/a.png"})
    await store.put_profile("bob", {NICK: "Bob"})
    await store.put_profile("alice", {NICK: "Al"})
    assert await store.load_profiles(["alice", "bob"]) == {"alice": {NICK: "Al"},
                                                          "bob": {NICK: "Bob"}}


async def test_profiles_of_many_users_load_in_one_call(store: Store) -> None:
    users = [f"user-{n}" for n in range(300)]  # on a cluster: keys on every master
    for n, user in enumerate(users):
        await store.put_profile(user, {NICK: f"nick {n}", "Tag_Profile_IM_Level": n})
    found = await store.load_profiles([*users, "nobody"])
    assert found == {u: {NICK: f"nick {n}", "Tag_Profile_IM_Level": n}
                     for n, u in enumerate(users)}


async def test_profiles_survive_a_restart(durable: Engine) -> None:
    store = await durable.open()
    await store.put_profile("alice", {NICK: "Ålice", "Tag_Profile_IM_Level": 3})
    await store.close()
    reopened = await durable.open()
    assert await reopened.load_profiles(["alice"]) == {
        "alice": {NICK: "Ålice", "Tag_Profile_IM_Level": 3}}
