"""Storage backends behind one contract (`homing.storage.base.Storage`)."""

from __future__ import annotations

from homing.config import sqlite_path
from homing.errors import InvalidRequest
from homing.storage.base import Storage


def open_storage(url: str, *, sqlite_synchronous: str = "FULL") -> Storage:
    """The backend for a database URL (not yet opened)."""
    if url.startswith("sqlite:"):
        from homing.storage.sqlite.backend import SqliteStorage

        return SqliteStorage(sqlite_path(url), synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        raise InvalidRequest("the PostgreSQL backend is not available in this build")
    raise InvalidRequest(f"unsupported database URL {url!r}")
