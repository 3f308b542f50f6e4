"""SQLite engine specifics (livecast/store/sqlite.py): durability, files, the de-dup clock."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord
from livecast.store.base import StoreError
from livecast.store.sqlite import DB_FILE, SCHEMA_VERSION, SqliteStore, data_dir

ACKS_BEFORE_KILL = 200

# Writes rooms forever, printing each index once its three writes are acknowledged.
WRITER = """
import asyncio, sys
from livecast.core.records import GroupRecord
from livecast.store.sqlite import SqliteStore

async def main(directory):
    store = await SqliteStore.open(directory)
    i = 0
    while True:
        await store.put_group(GroupRecord(f"g{i}", "owner", float(i), name=f"n{i}"), create=True)
        await store.set_ban(f"g{i}", "troll", 4294967295.0)
        total = await store.add_likes("g0", 1)
        print(i, total, flush=True)
        i += 1

asyncio.run(main(sys.argv[1]))
"""


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        acks = [child.stdout.readline().split() for _ in range(ACKS_BEFORE_KILL)]
        os.kill(child.pid, signal.SIGKILL)  # mid-write: it never stops writing by itself
        child.wait(timeout=10)
        acks += [line.split() for line in child.stdout.read().splitlines()]  # printed before
    assert child.returncode == -signal.SIGKILL and len(acks) >= ACKS_BEFORE_KILL
    asyncio.run(_check_acknowledged(tmp_path, [(int(i), int(t)) for i, t in acks]))


async def _check_acknowledged(directory: Path, acks: list[tuple[int, int]]) -> None:
    store = await SqliteStore.open(directory)
    try:
        snapshot = await store.load_all()
        stored = {g.group_id: g for g in snapshot.groups}
        for i, _ in acks:
            room = stored[f"g{i}"]
            assert room.name == f"n{i}" and room.bans == {"troll": float(FOREVER)}
        assert snapshot.likes["g0"] >= acks[-1][1]
    finally:
        await store.close()


async def test_the_data_directory_is_created_with_a_wal_database(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "data"
    store = await SqliteStore.open(directory)
    await store.close()
    assert store.path == directory / DB_FILE
    with sqlite3.connect(directory / DB_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path)).close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore.open(tmp_path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore.open(tmp_path)


def test_data_dir_comes_from_the_environment_or_the_home_directory() -> None:
    assert data_dir({"LIVECAST_DATA_DIR": "/srv/livecast"}) == Path("/srv/livecast")
    assert data_dir({}) == Path("~/.livecast/data").expanduser()
    assert data_dir({"LIVECAST_DATA_DIR": ""}) == Path("~/.livecast/data").expanduser()


async def test_seen_follows_the_callers_clock_and_purges_expired_keys(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        assert await store.seen("k", 1000.0) is False
        assert await store.seen("k", 1299.9) is True
        assert await store.seen("k", 1300.0) is False  # 5 minutes later: a new send
        for n in range(50):
            await store.seen(f"old-{n}", 1000.0)
        await store.seen("fresh", 1400.0)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        assert sorted(k for (k,) in conn.execute("SELECT key FROM seen")) == ["fresh", "k"]
    conn.close()


async def test_keys_seen_before_expiry_times_were_stored_keep_the_default_window(
    tmp_path: Path
) -> None:
    """A file from before ``seen`` kept expiry times: its ``dedup`` rows (the
    time each key was recorded) carry over with the default window."""
    await (await SqliteStore.open(tmp_path)).close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("DROP TABLE IF EXISTS seen")
        conn.execute("CREATE TABLE IF NOT EXISTS dedup (key TEXT PRIMARY KEY, at REAL NOT NULL)")
        conn.execute("INSERT INTO dedup VALUES ('room-1:alice:1', 1000.0)")
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        assert await store.seen("room-1:alice:1", 1299.0) is True
        assert await store.seen("room-1:alice:1", 1300.0) is False
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "dedup" not in tables


async def test_a_database_from_before_profiles_gets_the_table(tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path)).close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("DROP TABLE IF EXISTS profiles")
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        await store.put_profile("alice", {"Tag_Profile_IM_Nick": "Alice"})
        assert await store.load_profiles(["alice"]) == {
            "alice": {"Tag_Profile_IM_Nick": "Alice"}}
    finally:
        await store.close()


UNREADABLE = {
    "not JSON": ("app_defined", "{not json"),
    "not an object": ("counters", "[1, 2]"),
    "a wrong type": ("created", "yesterday"),
    "a wrong type in a map": ("counters", '{"likes": "many"}'),
    "a flag that is not one": ("mute_all", "yes"),
    "a count that is not a number": ("max_member_num", "lots"),
}


@pytest.mark.parametrize(("column", "value"), UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_record_is_a_store_error(
    tmp_path: Path, column: str, value: str
) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.put_group(GroupRecord("odd-room", "owner", 1.0), create=True)
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute(f"UPDATE groups SET {column} = ?", (value,))
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        with pytest.raises(StoreError, match=r"'odd-room'.*unreadable"):
            await store.load_group("odd-room")
        with pytest.raises(StoreError, match=r"'odd-room'.*unreadable"):
            await store.load_all(now=2.0)
    finally:
        await store.close()


async def test_an_unreadable_profile_is_a_store_error(tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path)).close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS profiles (user TEXT PRIMARY KEY, "
                     "data TEXT NOT NULL)")
        conn.execute("INSERT INTO profiles VALUES ('alice', '{not json')")
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        with pytest.raises(StoreError, match=r"'alice'.*unreadable"):
            await store.load_profiles(["alice"])
    finally:
        await store.close()


async def test_a_database_from_before_join_history_gets_the_column(tmp_path: Path) -> None:
    """A database made before rooms had ``join_history`` opens, its rooms
    with join history on, and the setting is stored from then on."""
    from dataclasses import replace

    store = await SqliteStore.open(tmp_path)
    await store.put_group(GroupRecord("old-room", "owner", 1.0, name="old"), create=True)
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("ALTER TABLE groups DROP COLUMN join_history")
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        snap = await store.load_all(2.0)
        (record,) = snap.groups
        assert record.join_history is True
        await store.put_group(replace(record, join_history=False))
        assert (await store.load_group("old-room")).join_history is False  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_database_from_before_attribute_versions_opens(tmp_path: Path) -> None:
    """The first files' ``groups`` had neither ``attrs_seq`` nor ``join_history``:
    they are added with the values an older room holds (0, on)."""
    store = await SqliteStore.open(tmp_path)
    await store.put_group(GroupRecord("old-room", "owner", 1.0, name="old"), create=True)
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("ALTER TABLE groups DROP COLUMN join_history")
        conn.execute("ALTER TABLE groups DROP COLUMN attrs_seq")
    conn.close()
    store = await SqliteStore.open(tmp_path)
    try:
        (record,) = (await store.load_all(2.0)).groups
        assert (record.group_id, record.name, record.attrs_seq, record.join_history) == (
            "old-room", "old", 0, True)
    finally:
        await store.close()


async def test_one_process_at_a_time_opens_a_data_directory(tmp_path: Path) -> None:
    """A second store on the same directory, another process or this one,
    would write its own rooms over the first's changes: refused, naming the
    holder, until the first closes."""
    first = await SqliteStore.open(tmp_path)
    try:
        held = rf"in use by another livecast process \(pid {os.getpid()}\)"
        with pytest.raises(StoreError, match=held):
            await SqliteStore.open(tmp_path)
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import asyncio, sys\n"
            "from livecast.store.sqlite import SqliteStore\n"
            "asyncio.run(SqliteStore.open(sys.argv[1]))", str(tmp_path),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _out, err = await asyncio.wait_for(other.communicate(), 60)
        assert other.returncode != 0 and b"in use by another livecast process" in err
    finally:
        await first.close()
    await (await SqliteStore.open(tmp_path)).close()  # free again


async def test_the_marker_is_kept_with_the_file(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    first = await store.marker()
    await store.close()
    again = await SqliteStore.open(tmp_path)
    try:
        assert await again.marker() == first
    finally:
        await again.close()
    other = await SqliteStore.open(tmp_path / "elsewhere")
    try:
        assert await other.marker() != first  # another file, another store
    finally:
        await other.close()
