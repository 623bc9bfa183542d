"""SQLite connections for an asyncio program: one group-committing writer, a few readers.

Written here rather than taken from aiosqlite because the point is group commit: every write
that arrives while the previous transaction is being committed joins the next transaction, so
many concurrent publishes (and claims, and outcomes) share one fsync. aiosqlite commits per call.
Each caller still gets its answer only after its own transaction is durable, and one failing
operation rolls back to its savepoint without failing the others of its batch.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from homing.errors import StorageUnavailable

T = TypeVar("T")
MAX_BATCH = 1024


def connect(path: str, *, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16000")  # 16 MB page cache per connection
    return conn


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _settle(batch: list[_Op], results: list[tuple[bool, Any]]) -> None:
    for op, (ok, value) in zip(batch, results, strict=True):
        if op.future.done():
            continue
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(value)


class Writer:
    """The single writing connection, on its own thread."""

    def __init__(self, path: str, *, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="homing-sqlite-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise StorageUnavailable(f"cannot open SQLite database: {self._error}")

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise StorageUnavailable("the SQLite writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.put(_Op(fn, future))
        return await future

    def stop(self) -> None:
        if self._thread is not None:
            self._ops.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            conn = connect(self._path, synchronous=self._synchronous)
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        assert self._loop is not None
        try:
            while True:
                first = self._ops.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        op = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stop = True
                        break
                    batch.append(op)
                results = self._transaction(conn, batch)
                if not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(_settle, batch, results)
                if stop:
                    return
        finally:
            conn.close()

    @staticmethod
    def _transaction(conn: sqlite3.Connection, batch: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        single = len(batch) == 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if not single:
                    conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op.fn(conn)))
                    if not single:
                        conn.execute("RELEASE op")
                except Exception as exc:
                    if single:
                        conn.execute("ROLLBACK")
                        return [(False, exc)]
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
            conn.execute("COMMIT")
            return results
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageUnavailable(f"SQLite transaction failed: {exc}")
            return [(False, failure) for _ in batch]


def open_reader(path: str) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
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
