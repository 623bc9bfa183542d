"""SQLite connections for an asyncio program: one group-committing writer, a few readers.

Written here rather than taken from aiosqlite because the point is group commit: every write
that arrives while the previous transaction is being committed joins the next transaction, so
many concurrent publishes (and claims, and outcomes) share one fsync. aiosqlite commits per call.
Each caller still gets its answer only after its own transaction is durable, and one failing
operation rolls back to its savepoint without failing the others of its batch.

Where each step runs is chosen for the GIL. `COMMIT` (the fsync, and WAL checkpoints) runs on
a dedicated thread, with the GIL released. The statements of the hot operations (publish
inserts, claims, outcomes: short, bounded, called with `inline=True`) run on the event-loop
thread itself: run on a thread, each of their statements gave the GIL back and had to win it
again from the busy event loop (a hop costs up to a switch interval), and a batch of 30
publishes took ~5 ms for ~0.6 ms of work. Anything that may touch many rows (purges, bulk
cancels, migrations) runs on the thread, so it never stalls the event loop. `BEGIN IMMEDIATE`
runs on the event loop without waiting: if another process (an admin command) holds the write
lock, it is retried after a short async sleep instead of blocking the loop in SQLite's busy
handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from homing.errors import StorageUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_BATCH = 1024
INLINE_SLICE_S = 0.002  # longest stretch of inline work before the loop gets a turn
BUSY_TIMEOUT_S = 30.0  # how long to wait for another process's write lock


def connect(
    path: str, *, synchronous: str, busy_timeout_ms: int = int(BUSY_TIMEOUT_S * 1000)
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000:.0f}")  # journal_mode may wait
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16000")  # 16 MB page cache per connection
    return conn


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    inline: bool


class Writer:
    """The single writing connection: one transaction at a time, fed by a queue of operations."""

    def __init__(self, path: str, *, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._ops: list[_Op] = []
        self._more = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homing-sqlite-writer")
        self._closing = False
        try:
            self._conn = await self._blocking(self._connect)
        except (sqlite3.Error, StorageUnavailable) as exc:
            self._thread.shutdown(wait=False)
            raise StorageUnavailable(f"cannot open SQLite database: {exc}") from exc
        self._pump = asyncio.create_task(self._run(), name="homing-sqlite-writer")

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self._path, synchronous=self._synchronous, busy_timeout_ms=0)
        # Without WAL, readers would block COMMIT, which has no busy timeout here.
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StorageUnavailable(f"{self._path}: WAL journal mode unavailable (got {mode})")
        return conn

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run `fn` in the next transaction; return once that transaction is durable.

        `inline=True` runs `fn` on the event-loop thread: only for short work of bounded size
        (callers pass it only under a row and byte budget).
        """
        if self._pump is None or self._pump.done() or self._closing:
            raise StorageUnavailable("the SQLite writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(fn, future, inline))
        self._more.set()
        return await future

    async def stop(self) -> None:
        """Finish what was queued, then close the connection."""
        self._closing = True
        self._more.set()
        if self._pump is not None:
            # Not gather(): a cancelled stop() must not cancel the pump mid-transaction.
            await asyncio.wait({self._pump})
            if not self._pump.cancelled():
                self._pump.exception()  # already logged by _run; marks it retrieved
            self._pump = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._blocking(conn.close)
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def _blocking(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        assert self._thread is not None, "Writer.start() was not called"
        return asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def _run(self) -> None:
        batch: list[_Op] = []
        try:
            while True:
                if not self._ops:
                    if self._closing:
                        return
                    self._more.clear()
                    await self._more.wait()
                    continue
                batch, self._ops = self._ops[:MAX_BATCH], self._ops[MAX_BATCH:]
                results = await self._transaction(batch)
                _settle(batch, results)
                batch = []
                # Let the callers just answered run (send their HTTP responses) before the next
                # transaction starts its inline work.
                await asyncio.sleep(0)
        except BaseException as exc:
            # Nothing may wait forever on a writer that is gone: fail what was taken and queued.
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("the SQLite writer stopped", extra={"event": "storage.writer_failed"})
            failure = StorageUnavailable(f"the SQLite writer stopped: {exc!r}")
            pending, self._ops = batch + self._ops, []
            _settle(pending, [(False, failure)] * len(pending))
            self._closing = True
            raise

    async def _begin(self, conn: sqlite3.Connection) -> None:
        deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_S
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.002)

    async def _transaction(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        conn = self._conn
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        single = len(batch) == 1
        loop = asyncio.get_running_loop()
        try:
            await self._begin(conn)
            yielded = loop.time()
            for op in batch:
                if op.future.done():  # the caller is gone (cancelled): nothing to write for it
                    results.append((False, StorageUnavailable("cancelled")))
                    continue
                if not single:
                    conn.execute("SAVEPOINT op")
                try:
                    if op.inline:
                        value = op.fn(conn)
                    else:
                        value = await self._blocking(lambda fn=op.fn: fn(conn))  # type: ignore[misc]
                    results.append((True, value))
                    if not single:
                        conn.execute("RELEASE op")
                except Exception as exc:
                    if single:
                        conn.execute("ROLLBACK")
                        return [(False, exc)]
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
                if loop.time() - yielded > INLINE_SLICE_S:
                    # A long batch of inline work: let the loop breathe (only this task touches
                    # the connection, so the open transaction is safe meanwhile).
                    await asyncio.sleep(0)
                    yielded = loop.time()
            await self._blocking(lambda: conn.execute("COMMIT"))
            return results
        except sqlite3.Error as exc:
            await self._recover(conn)
            failure = StorageUnavailable(f"SQLite transaction failed: {exc}")
            return [(False, failure) for _ in batch]

    async def _recover(self, conn: sqlite3.Connection) -> None:
        """After a failed transaction: roll back, or start over on a fresh connection."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        except sqlite3.Error:
            log.warning(
                "SQLite rollback failed; reopening the connection",
                extra={"event": "storage.writer_reconnect"},
            )
        self._conn = None
        with contextlib.suppress(sqlite3.Error):
            await self._blocking(conn.close)
        self._conn = await self._blocking(self._connect)


def _settle(batch: list[_Op], results: list[tuple[bool, Any]]) -> None:
    for op, (ok, value) in zip(batch, results, strict=True):
        if op.future.done():
            continue
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(value)


def open_reader(
    path: str, *, busy_timeout_ms: int = int(BUSY_TIMEOUT_S * 1000)
) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL", busy_timeout_ms=busy_timeout_ms)
    conn.execute("PRAGMA query_only=ON")
    return conn


class Readers:
    """A small pool of read-only connections (WAL lets them read while the writer writes)."""

    def __init__(self, path: str, *, size: int = 2) -> None:
        self._path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="homing-sqlite-read")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self._path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._conn()))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
