"""The asyncpg pool and how work runs on it.

`Database.run(fn)` runs `fn(connection)` in a transaction (or, with `transaction=False`, as
autocommit statements: a single statement is its own transaction, one round trip). A deadlock
or serialization failure rolls the whole transaction back, so it is simply run again; a lost
or refused connection becomes `StorageUnavailable` (HTTP 503) for the caller.

Every wait is bounded, so that a stalled or unreachable database turns into a prompt 503 instead
of requests that hang until their clients give up:

* taking a connection from the pool (including opening a new one) waits at most
  `acquire_timeout_s`, and so does handing it back (a connection that cannot be reset in that
  time is dropped);
* every statement waits at most `statement_timeout_s`: PostgreSQL cancels it itself
  (`statement_timeout`, which frees its locks and gives a clean error), and the client gives up
  half a second later in case the answer cannot reach it (`command_timeout`), dropping that
  connection at once;
* a database that stops answering altogether (a frozen host or network) is noticed much sooner
  than that, since a statement may rightly take long: when a call has waited `STALL_CHECK_S`
  and nothing at all came back from the server meanwhile, a watchdog asks `SELECT 1` on a
  connection of its own; without an answer within `STALL_CHECK_S` the waiting calls are ended
  (503) and their connections dropped;
* a session that sits idle inside a transaction (its node cut off mid-transaction) is ended by
  the server after `IDLE_IN_TRANSACTION_S` (`idle_in_transaction_session_timeout`), so the rows
  it locked do not block the other nodes for longer.

Once the database is found silent, one call at a time tries it until some call gets an answer
again, and every other call is answered 503 at once, so that requests do not queue up behind
calls that each wait to find out.

Migrations are the exception: they run on a connection of their own without a statement
timeout (`run_alone`), since rewriting a large table may take longer than any request should.

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
import time
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
ACQUIRE_TIMEOUT_S = 2.0
STATEMENT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
IDLE_IN_TRANSACTION_S = 10.0
# A call that has waited this long while nothing at all came back from the server prompts a
# `SELECT 1` on a connection of the watchdog's own, which must answer within as long again.
STALL_CHECK_S = 1.0
# The client waits this much longer than the server's statement_timeout: when the server is
# reachable its own, clean cancellation arrives first and the connection stays usable.
CLIENT_GRACE_S = 0.5
PROBE_TIMEOUT_S = 0.5  # readiness probes: well within the 1 s a probe must be answered in


class Database:
    def __init__(
        self,
        dsn: str,
        *,
        server_settings: dict[str, str] | None = None,
        min_size: int = 2,
        max_size: int = 16,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        if acquire_timeout_s <= 0 or statement_timeout_s <= 0:
            raise ValueError("database timeouts must be positive")
        self.dsn = dsn
        self.acquire_timeout_s = acquire_timeout_s
        self.statement_timeout_s = statement_timeout_s
        statement_ms = max(1, round(statement_timeout_s * 1000))
        self.server_settings = {
            **(server_settings or {}),
            **SESSION_SETTINGS,
            "statement_timeout": str(statement_ms),
            "idle_in_transaction_session_timeout": str(round(IDLE_IN_TRANSACTION_S * 1000)),
        }
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._probe: asyncio.Task[Any] | None = None
        self._silent_since: float | None = None  # monotonic; set while the server is silent
        self._trials = 0  # calls in flight while it is
        self._calls: set[_Call] = set()  # in flight, for the watchdog
        self._last_answer = time.monotonic()  # when the server last answered anything
        self._watchdog: asyncio.Task[None] | None = None
        # Server process ids of this pool's sessions: the listener ignores their NOTIFYs, since
        # this process already woke its own listeners when it committed.
        self.own_pids: set[int] = set()

    @property
    def client_timeout_s(self) -> float:
        """How long the client waits for any one answer (statement, connect, LISTEN check)."""
        return self.statement_timeout_s + CLIENT_GRACE_S

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self.server_settings,
                init=self._init,
                reset=_reset,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=self.client_timeout_s,
            )
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot connect to PostgreSQL: {_text(exc)}") from exc
        self._watchdog = asyncio.create_task(self._watch(), name="homing-pg-watchdog")

    async def _init(self, conn: Conn) -> None:
        self.own_pids.add(conn.get_server_pid())

    async def connect(self, *, statement_timeout: bool = True) -> Conn:
        """A connection outside the pool (for LISTEN, migrations), with the same session
        settings; `statement_timeout=False` lifts the statement timeouts for it."""
        settings = self.server_settings
        command_timeout: float | None = self.client_timeout_s
        if not statement_timeout:
            settings = {**settings, "statement_timeout": "0"}
            command_timeout = None
        return await asyncpg.connect(
            self.dsn,
            server_settings=settings,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=command_timeout,
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Calls still in flight get a few seconds (the watchdog still ends those waiting on
            # a stalled server); a slow or stalled server must not hold the shutdown longer.
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except (TimeoutError, *UNAVAILABLE):
                pool.terminate()
        probe, self._probe = self._probe, None
        watchdog, self._watchdog = self._watchdog, None
        for task in (probe, watchdog):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = True) -> T:
        """`fn(connection)`, retried as a whole when PostgreSQL rolled it back (deadlock)."""
        pool = self._pool
        if pool is None:
            raise StorageUnavailable("storage is closed")
        trial = False
        if self._silent_since is not None:
            # The database stopped answering: one call at a time finds out whether it is back,
            # the others are answered at once instead of each waiting out its own timeout.
            if self._trials:
                silent_s = time.monotonic() - self._silent_since
                raise StorageUnavailable(
                    f"PostgreSQL is unavailable: no answer for {silent_s:.1f} s"
                )
            trial = True
            self._trials += 1
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    result = await self._run_once(pool, fn, transaction)
                except RETRYABLE as exc:
                    self._answered()
                    if attempt == ATTEMPTS:
                        raise StorageUnavailable(f"PostgreSQL transaction failed: {exc}") from exc
                    log.info("retrying a transaction after %s", type(exc).__name__)
                    await asyncio.sleep(random.uniform(0, 0.01 * attempt))
                    continue
                except _Silent as silent:
                    if self._silent_since is None:
                        self._silent_since = time.monotonic()
                    raise StorageUnavailable(
                        f"PostgreSQL is unavailable: it does not answer ({silent})"
                    ) from silent.__cause__
                except UNAVAILABLE as exc:
                    raise StorageUnavailable(f"PostgreSQL is unavailable: {_text(exc)}") from exc
                except StorageUnavailable:
                    raise
                except Exception:
                    self._answered()  # an error from the server is an answer
                    raise
                self._answered()
                return result
            raise AssertionError("unreachable")
        finally:
            if trial:
                self._trials -= 1

    async def _run_once(
        self, pool: Any, fn: Callable[[Conn], Awaitable[T]], transaction: bool
    ) -> T:
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout_s)
        except TimeoutError as exc:
            raise StorageUnavailable(
                f"PostgreSQL is unavailable: no connection within {self.acquire_timeout_s:g} s"
            ) from exc
        call = _Call(conn, time.monotonic())
        self._calls.add(call)

        async def guarded(conn: Conn) -> T:
            try:
                return await fn(conn)
            except TimeoutError:
                # No answer, not even the server's own statement_timeout: the connection is
                # stuck until the server speaks again, which may be never. Drop it now rather
                # than wait for a rollback or a cancel request that cannot get through.
                call.end(f"no answer within {self.client_timeout_s:g} s")
                raise

        try:
            if not transaction:
                return await guarded(conn)
            async with conn.transaction():
                return await guarded(conn)
        except Exception as exc:
            if call.silent is not None:
                raise _Silent(call.silent) from exc
            raise
        finally:
            self._calls.discard(call)
            # Shielded by asyncpg; waits at most the acquire timeout, then drops a connection
            # that cannot be reset (returns at once for one dropped as silent).
            await pool.release(conn)

    def _answered(self) -> None:
        self._last_answer = time.monotonic()
        self._silent_since = None

    async def _watch(self) -> None:
        """Tell a stalled server from slow statements, and end the calls waiting on the former.

        A statement may rightly take long (up to the statement timeout), so waiting alone says
        nothing. But when a call has waited STALL_CHECK_S and nothing has come back from the
        server meanwhile, a `SELECT 1` on a connection of the watchdog's own says which it is:
        no answer within STALL_CHECK_S, and the server is taken to be stalled (a frozen network
        or host): the calls waiting on it end at once, as 503s.
        """
        conn: Conn = None
        try:
            while True:
                await asyncio.sleep(STALL_CHECK_S / 4)
                now = time.monotonic()
                waiting = [c for c in self._calls if now - c.started >= STALL_CHECK_S]
                if not waiting or now - self._last_answer < STALL_CHECK_S:
                    continue
                checked = time.monotonic()
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(
                            self.dsn, server_settings=self.server_settings, timeout=STALL_CHECK_S
                        )
                    await conn.fetchval("SELECT 1", timeout=STALL_CHECK_S)
                except (TimeoutError, asyncpg.exceptions.InterfaceError) as exc:
                    # No answer (or a connection that was stuck): stalled. A refused or reset
                    # connection says nothing here: the calls see those errors themselves.
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    # Unless some call got an answer meanwhile: then the server is alive.
                    if isinstance(exc, TimeoutError) and self._last_answer < checked:
                        if self._silent_since is None:
                            self._silent_since = time.monotonic()
                        for call in waiting:
                            if call in self._calls:  # else its connection serves another call
                                call.end(f"no answer to a check within {STALL_CHECK_S:g} s")
                except UNAVAILABLE:
                    if conn is not None:
                        conn.terminate()
                        conn = None
                else:
                    self._answered()
        finally:
            if conn is not None:
                conn.terminate()

    async def run_alone(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """`fn(connection)` in a transaction on a connection of its own, without statement
        timeouts (migrations: they may take long, and only run while a node starts)."""
        try:
            conn = await self.connect(statement_timeout=False)
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot connect to PostgreSQL: {_text(exc)}") from exc
        try:
            async with conn.transaction():
                return await fn(conn)
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"PostgreSQL is unavailable: {_text(exc)}") from exc
        finally:
            conn.terminate()

    async def probe(self, sql: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> Any:
        """`fetchval(sql)` for readiness checks, shared by concurrent callers.

        One probe runs at a time and every caller waits for that one, at most `timeout_s`:
        frequent probes of a stalled database then hold one connection, not one each, and
        every caller has its answer in time. The probe itself ends within the call's bounds.
        """
        task = self._probe
        if task is None or task.done():
            task = self._probe = asyncio.create_task(self.fetchval(sql), name="homing-pg-probe")
            task.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            raise StorageUnavailable(f"PostgreSQL is unavailable: no answer within {timeout_s:g} s")
        return task.result()

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


class _Silent(Exception):
    """A call got no answer at all from the server (its text says how that was found)."""


class _Call:
    """A call in flight: its connection, since when, and why it was ended as silent."""

    __slots__ = ("conn", "silent", "started")

    def __init__(self, conn: Conn, started: float) -> None:
        self.conn = conn
        self.started = started
        self.silent: str | None = None

    def end(self, why: str) -> None:
        if self.silent is None:
            self.silent = why
            self.conn.terminate()


async def _reset(conn: Conn) -> None:
    """Ready a connection handed back to the pool for its next call.

    asyncpg's own reset sends `RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()` on
    every release: a round trip per call, a tenth of Homing's CPU under load on PostgreSQL. None
    of it has anything to undo here: settings are the pool's (set at connect), advisory locks
    are taken per transaction, LISTEN has its own connection, and no cursor outlives a call.
    What can be left over is a transaction that a failed call did not close; that is rolled
    back, as asyncpg's reset would.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a probe's failure as seen: every waiter may have stopped waiting for it."""
    if not task.cancelled():
        task.exception()


def affected(status: str) -> int:
    """The row count of a command status such as 'UPDATE 3'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
