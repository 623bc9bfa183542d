"""The asyncpg pool and how work runs on it.

`Database.run(fn)` runs `fn(connection)` in a transaction (or, with `transaction=False`, as
autocommit statements: a single statement is its own transaction, one round trip). A deadlock
or serialization failure rolls the whole transaction back, so it is simply run again; a lost
or refused connection becomes `StorageUnavailable` (HTTP 503) for the caller.

Sessions run with `synchronous_commit = on` whatever the server default: a call returns only
once its transaction is durable, as the storage contract promises. They also use generic plans
for prepared statements (`plan_cache_mode`): the queries are written for them (batches as
arrays, partial indexes on constant states), and with small batches PostgreSQL would otherwise
keep re-planning the larger ones on every call, which costs more than running them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from homing.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = Any  # asyncpg.Connection: asyncpg ships no type information

SESSION_SETTINGS = {
    "synchronous_commit": "on",
    "plan_cache_mode": "force_generic_plan",
    "application_name": "homing",
}
RETRYABLE = (asyncpg.exceptions.TransactionRollbackError,)  # deadlock, serialization failure
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
ATTEMPTS = 5


class Database:
    def __init__(
        self,
        dsn: str,
        *,
        server_settings: dict[str, str] | None = None,
        min_size: int = 2,
        max_size: int = 16,
    ) -> None:
        self.dsn = dsn
        self.server_settings = {**(server_settings or {}), **SESSION_SETTINGS}
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        # Server process ids of this pool's sessions: the listener ignores their NOTIFYs, since
        # this process already woke its own listeners when it committed.
        self.own_pids: set[int] = set()

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self.server_settings,
                init=self._init,
            )
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    async def _init(self, conn: Conn) -> None:
        self.own_pids.add(conn.get_server_pid())

    async def connect(self) -> Conn:
        """A connection outside the pool (for LISTEN), with the same session settings."""
        return await asyncpg.connect(self.dsn, server_settings=self.server_settings)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = True) -> T:
        """`fn(connection)`, retried as a whole when PostgreSQL rolled it back (deadlock)."""
        if self._pool is None:
            raise StorageUnavailable("storage is closed")
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._pool.acquire() as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except RETRYABLE as exc:
                if attempt == ATTEMPTS:
                    raise StorageUnavailable(f"PostgreSQL transaction failed: {exc}") from exc
                log.info("retrying a transaction after %s", type(exc).__name__)
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
            except UNAVAILABLE as exc:
                raise StorageUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.run(lambda c: c.fetch(sql, *args), transaction=False)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchrow(sql, *args), transaction=False)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchval(sql, *args), transaction=False)

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self.run(lambda c: c.execute(sql, *args), transaction=False)
        return status


def affected(status: str) -> int:
    """The row count of a command status such as 'UPDATE 3'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
