"""Durable room state: the ``Store`` protocol and its engines (SQLite, Redis).

``open_store`` picks the engine: Redis when a URL is configured, else the
embedded SQLite file in the data directory. docs/design.md, "Durable state:
the store", describes what each engine keeps and how to back it up.
"""

from __future__ import annotations

import os

from livecast.store.base import Observer, Snapshot, Store, StoreError, prometheus_observer
from livecast.store.redis import RedisStore
from livecast.store.sqlite import SqliteStore, data_dir

__all__ = ["Observer", "RedisStore", "Snapshot", "SqliteStore", "Store", "StoreError",
           "data_dir", "open_store", "prometheus_observer"]


async def open_store(redis_url: str, directory: str | os.PathLike[str],
                     observe: Observer | None = None) -> Store:
    """A RedisStore on ``redis_url`` when it is set, else a SqliteStore in ``directory``."""
    if redis_url:
        return await RedisStore.open(redis_url, observe=observe)
    return await SqliteStore.open(directory, observe=observe)
