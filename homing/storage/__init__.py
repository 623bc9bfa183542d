"""Storage backends behind one contract (`homing.storage.base.Storage`)."""

from __future__ import annotations

from homing.config import sqlite_path
from homing.errors import InvalidRequest
from homing.storage.base import Storage


def open_storage(url: str, *, sqlite_synchronous: str = "FULL", exclusive: bool = True) -> Storage:
    """The backend for a database URL (not yet opened).

    `exclusive=False` is for the admin commands (tokens, migrate): they may open an SQLite
    store while its server runs, but must not take over its claims.
    """
    if url.startswith("sqlite:"):
        from homing.storage.sqlite.backend import SqliteStorage

        return SqliteStorage(sqlite_path(url), synchronous=sqlite_synchronous, exclusive=exclusive)
    if url.startswith(("postgresql://", "postgres://")):
        from homing.storage.postgres.backend import PostgresStorage

        return PostgresStorage(url)
    raise InvalidRequest(f"unsupported database URL {url!r}")
