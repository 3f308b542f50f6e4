"""SQLite store: the embedded default, one database file in the data directory.

Invariants:
1. One connection, owned by one dedicated thread (a one-worker executor):
   every statement runs there, never on the event loop, in call order.
2. One transaction per change (``BEGIN IMMEDIATE`` ... ``COMMIT``); the call
   returns only after ``COMMIT``, so an acknowledged change is stored.
3. Journal mode WAL with ``synchronous=FULL`` (the default; ``NORMAL`` on
   request): a committed transaction survives ``kill -9`` under either, since
   the commit is in the WAL file before the call returns, and under FULL it
   also survives a power cut or kernel crash (the WAL is fsynced at each
   commit). Under NORMAL a power cut may lose the last commits since the
   latest checkpoint, never corrupt the file. A ``kill -9`` loses only the
   changes whose call had not returned.
4. ``schema_version`` holds one row; a file of a newer version is refused.
   One process at a time opens a data directory: it holds an exclusive
   ``flock`` on ``livecast.db.lock`` there while the store is open, and a
   second is refused (its in-memory rooms would overwrite the first's
   changes); a cluster shares rooms through Redis instead.
5. A cancelled caller does not cancel its transaction: it still commits or
   rolls back whole in the store's thread.
6. A table added since a file was made is created when it is opened (``IF NOT
   EXISTS``), a column added with its default, a table replaced has its rows
   carried over (``_migrate``); ``schema_version`` moves only when a file could
   no longer be read by an older livecast.

Tables: ``groups`` (a room but its mutes and bans; maps as JSON), ``mutes`` and
``bans`` (group, user -> end time), ``kicks`` (user -> time of the last kick),
``seen`` (de-duplication key -> when it expires), ``likes`` (group -> total),
``profiles`` (user -> JSON of the profile), ``meta`` (the marker),
``schema_version``.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from livecast.core.group_fields import FOREVER
from livecast.core.records import GroupRecord
from livecast.store.base import (
    DEDUP_WINDOW,
    Instrument,
    LocalLocks,
    Observer,
    Profile,
    Snapshot,
    StoreError,
    decode_profile,
    decode_record,
    loads,
)

__all__ = ["DB_FILE", "SCHEMA_VERSION", "SqliteStore", "data_dir"]

SCHEMA_VERSION = 1
DB_FILE = "livecast.db"
LOCK_FILE = "livecast.db.lock"  # held by the one process with the directory open
DEFAULT_DATA_DIR = "~/.livecast/data"
BUSY_MS = 5000  # how long a write waits for another process's write lock
PING_BUSY_MS = 250  # how long a ping waits for it (/readyz: the store's thread is not held)
T = TypeVar("T")
Conn = sqlite3.Connection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
  group_id TEXT PRIMARY KEY, type TEXT NOT NULL, owner TEXT NOT NULL, created REAL NOT NULL,
  name TEXT NOT NULL, introduction TEXT NOT NULL, notification TEXT NOT NULL,
  face_url TEXT NOT NULL, max_member_num INTEGER NOT NULL, mute_all INTEGER NOT NULL,
  info_seq INTEGER NOT NULL, last_info_time REAL NOT NULL, last_msg_time REAL NOT NULL,
  rate INTEGER, burst INTEGER,
  app_defined TEXT NOT NULL, counters TEXT NOT NULL, attributes TEXT NOT NULL,
  attrs_seq INTEGER NOT NULL, join_history INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS mutes (group_id TEXT NOT NULL, user TEXT NOT NULL,
  until REAL NOT NULL, PRIMARY KEY (group_id, user));
CREATE TABLE IF NOT EXISTS bans (group_id TEXT NOT NULL, user TEXT NOT NULL,
  until REAL NOT NULL, PRIMARY KEY (group_id, user));
CREATE TABLE IF NOT EXISTS kicks (user TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS profiles (user TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS likes (group_id TEXT PRIMARY KEY, total INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# columns ``groups`` gained since its first files, with what an older row holds
_ADDED_COLUMNS = (
    ("attrs_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("join_history", "INTEGER NOT NULL DEFAULT 1"),
)
_GROUP_COLUMNS = (
    "group_id", "type", "owner", "created", "name", "introduction", "notification", "face_url",
    "max_member_num", "mute_all", "info_seq", "last_info_time", "last_msg_time", "rate", "burst",
    "app_defined", "counters", "attributes", "attrs_seq", "join_history",
)
_INSERT_GROUP = (
    f"INSERT INTO groups ({', '.join(_GROUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_GROUP_COLUMNS))}) ON CONFLICT (group_id) DO NOTHING"
)
_UPDATE_GROUP = (  # the parameters: the row but its group_id, then the group_id
    f"UPDATE groups SET {', '.join(f'{c} = ?' for c in _GROUP_COLUMNS[1:])} WHERE group_id = ?"
)
_SELECT_GROUPS = f"SELECT {', '.join(_GROUP_COLUMNS)} FROM groups"
_RESTRICTIONS = ("mutes", "bans")
_JSON_COLUMNS = ("app_defined", "counters", "attributes")
_FLAG_COLUMNS = ("mute_all", "join_history")
PROFILES_PER_QUERY = 500  # users per SELECT of load_profiles (SQLite caps the parameters)


def data_dir(env: Mapping[str, str]) -> Path:
    """The data directory: ``LIVECAST_DATA_DIR``, else ``~/.livecast/data``."""
    return Path(env.get("LIVECAST_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


class SqliteStore:
    """The Store protocol over one SQLite file (module invariants)."""

    def __init__(
        self, path: Path, conn: Conn, executor: ThreadPoolExecutor, instrument: Instrument,
        lock: int = -1,
    ) -> None:
        self.path = path
        self._lock = lock  # the directory's lock file, held until close
        self._conn = conn
        self._executor = executor
        self._inst = instrument
        self._locks = LocalLocks()  # one process owns the file: its locks are its own

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        observe: Observer | None = None,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> SqliteStore:
        """Open (creating the directory and file if needed) ``directory/livecast.db``."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="livecast-sqlite")
        loop = asyncio.get_running_loop()
        lock = -1
        try:
            lock = _lock(directory)
            path, conn = await loop.run_in_executor(executor, _connect, directory, synchronous)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            _unlock(lock)
            raise StoreError(f"cannot open the store in {directory}: {exc}") from exc
        except StoreError:
            executor.shutdown(wait=False)
            _unlock(lock)
            raise
        return cls(path, conn, executor, Instrument(observe, (sqlite3.Error, OSError)), lock)

    @property
    def healthy(self) -> bool:
        return self._inst.healthy and not self._inst.closed

    async def _call(self, op: str, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        return await self._run(op, functools.partial(_transaction if write else _read,
                                                     self._conn, fn, *args))

    async def _run(self, op: str, job: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await self._inst.run(op, lambda: loop.run_in_executor(self._executor, job))

    async def ping(self) -> bool:
        """Whether a write could start now: a file another process holds
        locked, which refuses every change, is not ready either."""
        try:
            await self._run("ping", functools.partial(_ping, self._conn))
        except StoreError:
            return False
        return True

    async def load_all(self, now: float | None = None) -> Snapshot:
        return await self._call("load_all", _load_all, now, write=now is not None)

    async def load_group(self, group_id: str) -> GroupRecord | None:
        return await self._call("load_group", _load_group, group_id, write=False)

    async def put_group(self, record: GroupRecord, create: bool = False) -> bool:
        return await self._call("put_group", _put_group, record, True, create)

    async def put_settings(self, record: GroupRecord) -> bool:
        return await self._call("put_settings", _put_group, record, False, False)

    async def delete_group(self, group_id: str) -> bool:
        return await self._call("delete_group", _delete_group, group_id)

    async def set_mute(self, group_id: str, user: str, until: float) -> None:
        await self._call("set_mute", _set_restriction, "mutes", group_id, user, until)

    async def clear_mute(self, group_id: str, user: str) -> None:
        await self._call("clear_mute", _clear_restriction, "mutes", group_id, user)

    async def set_ban(self, group_id: str, user: str, until: float) -> None:
        await self._call("set_ban", _set_restriction, "bans", group_id, user, until)

    async def clear_ban(self, group_id: str, user: str) -> None:
        await self._call("clear_ban", _clear_restriction, "bans", group_id, user)

    async def set_kick(self, user: str, at: float) -> None:
        await self._call("set_kick", _set_kick, user, at)

    async def kick_time(self, user: str) -> float | None:
        return await self._call("kick_time", _kick_time, user, write=False)

    async def kick_times(self) -> dict[str, float]:
        return await self._call("kick_times", _kick_times, write=False)

    async def marker(self) -> str:
        return await self._call("marker", _marker, uuid.uuid4().hex)

    async def seen(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        return await self._call("seen", _seen, key, now, window)

    async def recent(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        return await self._call("recent", _recent, key, now, write=False)

    async def unsee(self, key: str) -> None:
        await self._call("unsee", _unsee, key)

    async def add_likes(self, group_id: str, n: int) -> int:
        return await self._call("add_likes", _add_likes, group_id, n)

    async def likes(self, group_id: str) -> int:
        return await self._call("likes", _likes, group_id, write=False)

    async def put_profile(self, user: str, profile: Profile) -> None:
        await self._call("put_profile", _put_profile, user, _json(profile))

    async def load_profiles(self, users: Sequence[str]) -> dict[str, dict[str, str | int]]:
        return await self._call("load_profiles", _load_profiles, list(users), write=False)

    async def all_profiles(self, limit: int) -> dict[str, dict[str, str | int]] | None:
        return await self._call("all_profiles", _all_profiles, limit, write=False)

    async def lock(self, name: str, ttl: float) -> str | None:
        if self._inst.closed:
            raise StoreError("lock: the store is closed")
        return self._locks.lock(name, ttl)

    async def unlock(self, name: str, token: str) -> None:
        self._locks.unlock(name, token)

    async def close(self) -> None:
        if self._inst.closed:
            return
        self._inst.closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=False)
            _unlock(self._lock)
            self._lock = -1


def _lock(directory: str | os.PathLike[str]) -> int:
    """The directory's lock, taken (invariant 4): its file descriptor, or
    StoreError naming the process that holds it."""
    where = Path(directory).expanduser()
    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"{where} is in use by another livecast process (pid {holder}): one "
                         "process per data directory; run a cluster on Redis for more") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _unlock(fd: int) -> None:
    if fd >= 0:
        os.close(fd)  # the lock goes with the descriptor


# -- in the store's thread ----------------------------------------------------


def _connect(directory: str | os.PathLike[str], synchronous: str) -> tuple[Path, Conn]:
    path = Path(directory).expanduser() / DB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: journal mode WAL refused ({mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        _transaction(conn, _migrate)
    except BaseException:
        conn.close()
        raise
    return path, conn


def _migrate(conn: Conn) -> None:
    _create(conn)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(groups)")}
    for column, definition in _ADDED_COLUMNS:  # a file made before they were
        if column not in columns:
            conn.execute(f"ALTER TABLE groups ADD COLUMN {column} {definition}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dedup'").fetchone():
        # a file from before ``seen`` kept expiry times: ``dedup`` held when each
        # key was recorded; it lives the default window from then (a key recorded
        # with a shorter one lives longer, once)
        conn.execute("INSERT OR IGNORE INTO seen SELECT key, at + ? FROM dedup", (DEDUP_WINDOW,))
        conn.execute("DROP TABLE dedup")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row[0] is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif row[0] > SCHEMA_VERSION:
        raise StoreError(f"schema version {row[0]} is newer than this livecast's {SCHEMA_VERSION}")


def _create(conn: Conn) -> None:
    # executescript would COMMIT the open transaction; run the statements one by one
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _transaction(conn: Conn, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _read(conn: Conn, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN")  # one consistent snapshot for every statement of the read
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _ping(conn: Conn) -> None:
    """Take the write lock and let it go, waiting at most ``PING_BUSY_MS``
    for it: the store's one thread is not held the 5 s a write may wait."""
    conn.execute(f"PRAGMA busy_timeout = {PING_BUSY_MS}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")


def _json(value: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(value)).decode()


def _group_row(r: GroupRecord) -> tuple[Any, ...]:
    return (r.group_id, r.type, r.owner, r.created, r.name, r.introduction, r.notification,
            r.face_url, r.max_member_num, int(r.mute_all), r.info_seq, r.last_info_time,
            r.last_msg_time, r.rate, r.burst, _json(r.app_defined), _json(r.counters),
            _json(r.attributes), r.attrs_seq, int(r.join_history))


def _record(row: tuple[Any, ...], mutes: dict[str, float], bans: dict[str, float]) -> GroupRecord:
    """The room of a ``groups`` row; StoreError if a value is not of its type."""
    gid = str(row[0])
    stored = dict(zip(_GROUP_COLUMNS[1:], row[1:], strict=True))
    for name in _JSON_COLUMNS:
        stored[name] = loads(f"room {gid!r}", stored[name])
    for name in _FLAG_COLUMNS:  # 0 or 1; anything else is left to fail the check
        if type(stored[name]) is int and stored[name] in (0, 1):
            stored[name] = bool(stored[name])
    return decode_record(gid, stored, mutes, bans)


def _put_group(conn: Conn, record: GroupRecord, restrictions: bool, create: bool) -> bool:
    row = _group_row(record)
    if create:
        written = conn.execute(_INSERT_GROUP, row).rowcount > 0
    else:
        written = conn.execute(_UPDATE_GROUP, (*row[1:], row[0])).rowcount > 0
    if not written or not restrictions:
        return written
    for table, entries in (("mutes", record.mutes), ("bans", record.bans)):
        conn.execute(f"DELETE FROM {table} WHERE group_id = ?", (record.group_id,))
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)",
                         ((record.group_id, u, until) for u, until in entries.items()))
    return True


def _delete_group(conn: Conn, group_id: str) -> bool:
    found = conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,)).rowcount > 0
    for table in (*_RESTRICTIONS, "likes"):
        conn.execute(f"DELETE FROM {table} WHERE group_id = ?", (group_id,))
    return found


def _restrictions(rows: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    by_group: dict[str, dict[str, float]] = {}
    for gid, user, until in rows:
        by_group.setdefault(gid, {})[user] = until
    return by_group


def _load_all(conn: Conn, now: float | None) -> Snapshot:
    tables = {}
    for table in _RESTRICTIONS:
        if now is not None:
            conn.execute(f"DELETE FROM {table} WHERE until <= ? AND until < ?", (now, FOREVER))
        tables[table] = _restrictions(
            conn.execute(f"SELECT group_id, user, until FROM {table} ORDER BY rowid"))
    groups = tuple(
        _record(row, tables["mutes"].get(row[0], {}), tables["bans"].get(row[0], {}))
        for row in conn.execute(f"{_SELECT_GROUPS} ORDER BY created, group_id"))
    kicks = dict(conn.execute("SELECT user, at FROM kicks"))
    likes = dict(conn.execute("SELECT group_id, total FROM likes JOIN groups USING (group_id) "
                              "WHERE total != 0"))
    return Snapshot(groups, kicks, likes)


def _load_group(conn: Conn, group_id: str) -> GroupRecord | None:
    row = conn.execute(f"{_SELECT_GROUPS} WHERE group_id = ?", (group_id,)).fetchone()
    if row is None:
        return None
    found = {
        table: dict(conn.execute(
            f"SELECT user, until FROM {table} WHERE group_id = ? ORDER BY rowid", (group_id,)))
        for table in _RESTRICTIONS
    }
    return _record(row, found["mutes"], found["bans"])


def _set_restriction(conn: Conn, table: str, group_id: str, user: str, until: float) -> None:
    conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?) ON CONFLICT (group_id, user) "
                 "DO UPDATE SET until = excluded.until", (group_id, user, until))


def _clear_restriction(conn: Conn, table: str, group_id: str, user: str) -> None:
    conn.execute(f"DELETE FROM {table} WHERE group_id = ? AND user = ?", (group_id, user))


def _set_kick(conn: Conn, user: str, at: float) -> None:
    conn.execute("INSERT INTO kicks VALUES (?, ?) ON CONFLICT (user) "
                 "DO UPDATE SET at = max(at, excluded.at)", (user, at))


def _kick_time(conn: Conn, user: str) -> float | None:
    row = conn.execute("SELECT at FROM kicks WHERE user = ?", (user,)).fetchone()
    return None if row is None else float(row[0])


def _seen(conn: Conn, key: str, now: float, window: float) -> bool:
    conn.execute("DELETE FROM seen WHERE expires <= ?", (now,))
    if conn.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone() is not None:
        return True
    conn.execute("INSERT INTO seen VALUES (?, ?)", (key, now + window))
    return False


def _recent(conn: Conn, key: str, now: float) -> bool:
    row = conn.execute("SELECT expires FROM seen WHERE key = ?", (key,)).fetchone()
    return row is not None and now < row[0]


def _marker(conn: Conn, fresh: str) -> str:
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('marker', ?)", (fresh,))
    return str(conn.execute("SELECT value FROM meta WHERE key = 'marker'").fetchone()[0])


def _kick_times(conn: Conn) -> dict[str, float]:
    return {str(u): float(at) for u, at in conn.execute("SELECT user, at FROM kicks")}


def _unsee(conn: Conn, key: str) -> None:
    conn.execute("DELETE FROM seen WHERE key = ?", (key,))


def _add_likes(conn: Conn, group_id: str, n: int) -> int:
    row = conn.execute("INSERT INTO likes VALUES (?, ?) ON CONFLICT (group_id) "
                       "DO UPDATE SET total = total + excluded.total RETURNING total",
                       (group_id, n)).fetchone()
    return int(row[0])


def _likes(conn: Conn, group_id: str) -> int:
    row = conn.execute("SELECT total FROM likes WHERE group_id = ?", (group_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _put_profile(conn: Conn, user: str, data: str) -> None:
    conn.execute("INSERT INTO profiles VALUES (?, ?) ON CONFLICT (user) "
                 "DO UPDATE SET data = excluded.data", (user, data))


def _all_profiles(conn: Conn, limit: int) -> dict[str, dict[str, str | int]] | None:
    rows = conn.execute("SELECT user, data FROM profiles LIMIT ?", (limit + 1,)).fetchall()
    if len(rows) > limit:
        return None
    return {str(user): decode_profile(str(user), data) for user, data in rows}


def _load_profiles(conn: Conn, users: list[str]) -> dict[str, dict[str, str | int]]:
    found = {}
    for start in range(0, len(users), PROFILES_PER_QUERY):
        batch = users[start:start + PROFILES_PER_QUERY]
        marks = ", ".join("?" * len(batch))
        for user, data in conn.execute(
                f"SELECT user, data FROM profiles WHERE user IN ({marks})", batch):
            found[str(user)] = decode_profile(str(user), data)
    return found
