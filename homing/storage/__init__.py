"""Storage backends behind one contract (`homing.storage.base.Storage`)."""

from __future__ import annotations

from homing.config import Settings, sqlite_path
from homing.errors import InvalidRequest
from homing.storage.base import Storage


def open_storage(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    exclusive: bool = True,
    settings: Settings | None = None,
) -> Storage:
    """The backend for a database URL (not yet opened).

    `exclusive=False` is for the admin commands (tokens, migrate): they may open an SQLite
    store while its server runs, but must not take over its claims. `settings` gives the
    PostgreSQL timeouts (defaults without).
    """
    if url.startswith("sqlite:"):
        from homing.storage.sqlite.backend import SqliteStorage

        return SqliteStorage(sqlite_path(url), synchronous=sqlite_synchronous, exclusive=exclusive)
    if url.startswith(("postgresql://", "postgres://")):
        from homing.storage.postgres.backend import PostgresStorage

        settings = settings or Settings()
        return PostgresStorage(
            url,
            acquire_timeout_s=settings.database_acquire_timeout_s,
            statement_timeout_s=settings.database_statement_timeout_s,
        )
    raise InvalidRequest(f"unsupported database URL {url!r}")
