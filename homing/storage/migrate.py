"""Which schema migrations a store still needs, found without changing it.

Migrations are numbered SQL files (`storage/<backend>/migrations/NNNN_*.sql`), applied in order
when a backend opens, each in the transaction that records it in `homing_schema_version`: they
only go forward, a version is applied once, and on PostgreSQL nodes that start together take
turns under an advisory lock. This module only reads: `homing migrate --check` uses it to tell an
operator, before an upgrade, whether the store will be migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

from homing.config import sqlite_path
from homing.errors import InvalidRequest
from homing.storage.queries import load_migrations


@dataclass(frozen=True)
class SchemaState:
    exists: bool  # False: no store (or an empty PostgreSQL schema) yet; opening creates it
    applied: frozenset[int]
    known: tuple[int, ...]  # the migrations this release ships

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(v for v in self.known if v not in self.applied)

    @property
    def unknown(self) -> tuple[int, ...]:
        """Versions a newer release applied: this release must not run on that store."""
        return tuple(sorted(self.applied.difference(self.known)))


async def schema_state(url: str) -> SchemaState:
    """The migrations of the store at `url`: applied, and shipped with this release."""
    if url.startswith("sqlite:"):
        known = tuple(v for v, _ in load_migrations("homing.storage.sqlite"))
        found = await asyncio.to_thread(_sqlite_applied, sqlite_path(url))
        return SchemaState(found is not None, found or frozenset(), known)
    if url.startswith(("postgresql://", "postgres://")):
        known = tuple(v for v, _ in load_migrations("homing.storage.postgres"))
        found = await _postgres_applied(url)
        return SchemaState(found is not None, found or frozenset(), known)
    raise InvalidRequest(f"unsupported database URL {url!r}")


def _sqlite_applied(path: str) -> frozenset[int] | None:
    """Applied versions, or None when there is no store file yet."""
    if not os.path.exists(path):
        return None
    # Read-only: the check must not create, migrate or even checkpoint the store.
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'homing_schema_version'"
        ).fetchone()
        if table is None:
            return frozenset()
        return frozenset(v for (v,) in conn.execute("SELECT version FROM homing_schema_version"))


async def _postgres_applied(url: str) -> frozenset[int] | None:
    """Applied versions, or None when the schema holds no Homing store yet."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url, timeout=10)
    try:
        async with conn.transaction(readonly=True):
            if await conn.fetchval("SELECT to_regclass('homing_schema_version')") is None:
                return None
            rows = await conn.fetch("SELECT version FROM homing_schema_version")
            return frozenset(r[0] for r in rows)
    finally:
        await conn.close()
