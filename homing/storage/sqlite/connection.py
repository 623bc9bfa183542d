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

A full disk is survived rather than merely reported. The writer keeps a reserve file
(`<db>.reserve`, RESERVE_BYTES) next to the database; the first "database or disk is full"
deletes it and puts the writer in disk-full mode: operations that store new data (`grows=True`:
publishes) are refused at once with StorageFull (HTTP 507), while the rest (claims, outcomes,
lease renewals, retention purges) go on in the space the reserve gave back, so what is already
stored keeps being delivered, and delivered messages keep being purged. Without the reserve the
WAL could not be checkpointed and even a claim (an UPDATE) would find no room. Once the
filesystem has room for the reserve again, the writer recreates it and leaves disk-full mode by
itself. Either condition is reported to the node's Health ("storage.writes"), so `/readyz`
answers 503 with the reason while writes fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from homing.errors import StorageFull, StorageUnavailable
from homing.health import Health

T = TypeVar("T")
# Runs the parts of several operations at once and returns their values in order (see `call`).
Gather = Callable[[sqlite3.Connection, list[Any]], list[Any]]
log = logging.getLogger(__name__)
MAX_BATCH = 1024
INLINE_SLICE_S = 0.002  # longest stretch of inline work before the loop gets a turn
BUSY_TIMEOUT_S = 30.0  # how long to wait for another process's write lock
# Room kept back for draining a full disk: enough to checkpoint a WAL at its autocheckpoint
# size (1000 pages, ~4 MiB) and to record claims and outcomes for a while.
RESERVE_BYTES = 8 << 20
FULL_POLL_S = 0.5  # how often a full disk is checked for freed space
# How often the WAL is copied back into the database (see `Writer._checkpoints`): often enough
# that each checkpoint is small and the WAL file stays a few MiB at thousands of writes a second.
CHECKPOINT_INTERVAL_S = 0.2
# The writer's own checkpoint, a backstop that makes the WAL start over (`Writer._checkpoints`).
WAL_WRITER_CHECKPOINT_PAGES = 4000
DISK_FULL_AUTOCHECKPOINT = 1000  # SQLite's default, in pages
HEALTH_CHECK = "storage.writes"


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
    grows: bool
    settled: Callable[[bool], None] | None = None
    gather: Gather | None = None
    part: Any = None
    cost: float = 0.0


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _is_io_error(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.Error)
        and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_IOERR
    )


class Reserve:
    """A file of `size` allocated bytes, given back to the filesystem when the disk fills up."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Make sure the reserve exists; False when there is no room for it (a full disk)."""
        if self.size <= 0:
            return True
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_size >= self.size:
                return True
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                # No fallocate here (some filesystems): write the blocks out instead.
                chunk = bytes(1 << 20)
                for offset in range(0, self.size, len(chunk)):
                    os.pwrite(fd, chunk[: self.size - offset], offset)
            # No fsync: the blocks are counted as used from here on, which is all it is for.
            return True
        except OSError as exc:
            if not _is_full(exc):
                raise
            os.close(fd)
            fd = -1
            self.release()
            return False
        finally:
            if fd >= 0:
                os.close(fd)

    def release(self) -> None:
        if self.size <= 0:  # no reserve of ours (an admin command beside the server)
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def room_for_it(self) -> bool:
        """Whether the filesystem has room to recreate the reserve, and then some."""
        stat = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        return stat.f_bavail * stat.f_frsize >= self.size + (1 << 20)


class Writer:
    """The single writing connection: one transaction at a time, fed by a queue of operations."""

    def __init__(self, path: str, *, synchronous: str, reserve_bytes: int = RESERVE_BYTES) -> None:
        self._path = path
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._ops: list[_Op] = []
        self._more = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False
        self._reserve = Reserve(path + ".reserve", reserve_bytes)
        self._full = False
        self._watch: asyncio.Task[None] | None = None
        self._problem: str | None = None  # why writes fail now, as /readyz shows it
        self._health: Health | None = None
        self._commits = 0  # transactions committed, for the checkpointer
        self._autocheckpoint = WAL_WRITER_CHECKPOINT_PAGES  # the writer's wal_autocheckpoint
        self._checkpointer: asyncio.Task[None] | None = None

    def report_to(self, health: Health) -> None:
        """Report write failures (a full disk, I/O errors) to `health` from now on."""
        self._health = health
        if self._problem is not None:
            health.fail(HEALTH_CHECK, self._problem)

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homing-sqlite-writer")
        self._closing = False
        try:
            self._conn = await self._blocking(self._connect)
            reserved = await self._blocking(self._reserve.ensure)
        except (sqlite3.Error, OSError, StorageUnavailable) as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._thread.shutdown(wait=False)
            raise StorageUnavailable(f"cannot open SQLite database: {exc}") from exc
        self._pump = asyncio.create_task(self._run(), name="homing-sqlite-writer")
        self._checkpointer = asyncio.create_task(
            self._checkpoints(), name="homing-sqlite-checkpoint"
        )
        if not reserved:
            self._enter_full_mode()

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self._path, synchronous=self._synchronous, busy_timeout_ms=0)
        # Without WAL, readers would block COMMIT, which has no busy timeout here.
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StorageUnavailable(f"{self._path}: WAL journal mode unavailable (got {mode})")
        # Checkpoints run beside the writer (`_checkpoints`); in a COMMIT only as a backstop.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_WRITER_CHECKPOINT_PAGES}")
        self._autocheckpoint = WAL_WRITER_CHECKPOINT_PAGES
        return conn

    async def _checkpoints(self) -> None:
        """Copy the WAL back into the database now and then, on a connection and thread of
        their own.

        SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages: at a
        thousand publishes a second that is several times a second, and each time that COMMIT,
        and with it every publish waiting for the next one, takes milliseconds longer (a
        checkpoint writes and fsyncs the database file). A PASSIVE checkpoint on another
        connection does the same work without holding up the writer: WAL lets a checkpoint run
        while transactions commit, and it never waits for a lock.

        But the WAL file only starts over from its beginning once a checkpoint has copied every
        frame in it, and under a steady stream of commits the writer has always appended a few
        more by the time a checkpoint here ends: the file would grow for as long as the load
        lasts (9 GB for a million messages). So the writer keeps SQLite's own checkpoint as a
        backstop, at `WAL_WRITER_CHECKPOINT_PAGES` instead of 1,000: when the WAL gets that long
        its COMMIT copies what the checkpoints here left (most of it is copied already) while
        nothing else can append, and the next transaction starts the WAL over.
        """
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homing-sqlite-checkpoint")
        loop = asyncio.get_running_loop()
        conn: sqlite3.Connection | None = None
        seen = self._commits
        complete = True  # the last checkpoint copied the whole WAL
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL_S)
                # Also retry when nothing was committed since: a checkpoint that failed (a full
                # disk) or stopped short (a reader) may be what keeps commits from succeeding.
                if self._commits == seen and complete:
                    continue
                seen = self._commits
                try:
                    if conn is None:
                        conn = await loop.run_in_executor(pool, self._checkpoint_connection)
                    complete = await loop.run_in_executor(pool, _checkpoint, conn)
                except (sqlite3.Error, OSError) as exc:
                    complete = False
                    # Not fatal: the WAL grows until a later checkpoint succeeds.
                    log.warning(
                        "WAL checkpoint failed: %s",
                        exc,
                        extra={"event": "storage.checkpoint_failed"},
                    )
        finally:
            # Closed on its own thread, after a checkpoint that may still be running there:
            # cancelling this task does not stop that call, and closing a connection under it
            # would crash the process.
            if conn is not None:
                pool.submit(conn.close)
            pool.shutdown(wait=False)

    def _checkpoint_connection(self) -> sqlite3.Connection:
        return connect(self._path, synchronous=self._synchronous, busy_timeout_ms=0)

    async def call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        inline: bool = False,
        grows: bool = False,
        settled: Callable[[bool], None] | None = None,
        gather: tuple[Gather, Any, float] | None = None,
    ) -> T:
        """Run `fn` in the next transaction; return once that transaction is durable.

        `inline=True` runs `fn` on the event-loop thread: only for short work of bounded size
        (callers pass it only under a row and byte budget). `grows=True` marks work that stores
        new data (a publish): refused with StorageFull while the disk is full. `settled(durable)`
        is called on the event loop once the operation's fate is known, even if the caller was
        cancelled meanwhile (its work may have been committed all the same).

        `gather=(g, part, cost)` (inline operations only) lets operations queued one after
        another with an equal `g` run as one call, `g(conn, [part, ...])`, whose values are
        theirs in order: many small publishes then cost a few statements instead of a few each.
        `cost` is the operation's share of what one inline operation may do (see core.py); a
        call gathers no more than one operation's worth, so that it stalls the loop no longer
        than one would. If that call fails, it is undone and each operation runs on its own
        (`fn`), so that one operation's failure stays its own.
        """
        if self._pump is None or self._pump.done() or self._closing:
            raise StorageUnavailable("the SQLite writer is not running")
        if grows and self._full:
            raise StorageFull(self._full_message())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(fn, future, inline, grows, settled, *(gather or (None, None, 0.0))))
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
        for task in (self._watch, self._checkpointer):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        self._watch = self._checkpointer = None
        # Recreated at the next start: a stopped server leaves no 8 MiB file behind (tests start
        # hundreds of servers; an operator's backup of the data dir need not carry it).
        self._reserve.release()
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
            # On a full disk the writer checkpoints in its own COMMITs again, as SQLite does by
            # default: the space the reserve gave back must go to copying the WAL back before
            # the WAL itself grows into it, and the checkpointer, a fifth of a second away,
            # would lose that race.
            wanted = DISK_FULL_AUTOCHECKPOINT if self._full else WAL_WRITER_CHECKPOINT_PAGES
            if wanted != self._autocheckpoint:
                conn.execute(f"PRAGMA wal_autocheckpoint={wanted}")
                self._autocheckpoint = wanted
            await self._begin(conn)
            yielded = loop.time()
            gathered: dict[int, Any] = {}  # index in batch -> value, from a gathered call
            gathering = True
            for index, op in enumerate(batch):
                if index in gathered:  # written already, whatever became of its caller
                    results.append((True, gathered.pop(index)))
                    continue
                if op.future.done():  # the caller is gone (cancelled): nothing to write for it
                    results.append((False, StorageUnavailable("cancelled")))
                    continue
                if op.grows and self._full:  # queued before the disk filled up
                    results.append((False, StorageFull(self._full_message())))
                    continue
                if op.gather is not None and not single and gathering:
                    values = self._gather(conn, batch, index)
                    if values is None:
                        gathering = False  # failed: the rest of this transaction one by one
                    elif values:
                        gathered = values
                        results.append((True, gathered.pop(index)))
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
                    failure = self._op_failure(exc)
                    if single:
                        conn.execute("ROLLBACK")
                        return [(False, failure)]
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, failure))
                if loop.time() - yielded > INLINE_SLICE_S:
                    # A long batch of inline work: let the loop breathe (only this task touches
                    # the connection, so the open transaction is safe meanwhile).
                    await asyncio.sleep(0)
                    yielded = loop.time()
            await self._blocking(lambda: conn.execute("COMMIT"))
            self._commits += 1
            self._committed()
            return results
        except sqlite3.Error as exc:
            await self._recover(conn)
            failure = self._failure(exc)
            return [(False, failure) for _ in batch]

    def _gather(
        self, conn: sqlite3.Connection, batch: list[_Op], first: int
    ) -> dict[int, Any] | None:
        """Run `batch[first]` with the operations after it that gather with it in one call;
        their values by index, nothing if it has no company, or None if the call failed (and
        was undone)."""
        op = batch[first]
        members = [first]
        cost = op.cost
        for index in range(first + 1, len(batch)):
            other = batch[index]
            if other.gather != op.gather or not other.inline or cost + other.cost > 1.0:
                break
            if not other.future.done():
                members.append(index)
                cost += other.cost
        if len(members) == 1:
            return {}
        assert op.gather is not None
        conn.execute("SAVEPOINT gathered")
        try:
            values = op.gather(conn, [batch[i].part for i in members])
        except Exception:
            # Most likely one operation's own failure (a constraint), which it will meet again
            # alone; logged in case it is not.
            log.warning(
                "a gathered write failed; its %d operations run one by one",
                len(members),
                exc_info=True,
                extra={"event": "storage.gather_failed"},
            )
            conn.execute("ROLLBACK TO gathered")
            conn.execute("RELEASE gathered")
            return None
        conn.execute("RELEASE gathered")
        return dict(zip(members, values, strict=True))

    # -- write failures: a full disk, I/O errors ----------------------------------------------

    def _op_failure(self, exc: Exception) -> Exception:
        """What the caller of one failed operation gets: its own error (a constraint its code
        relies on, a bad value), unless the disk is full."""
        if _is_full(exc):
            self._enter_full_mode()
            return StorageFull(self._full_message())
        if _is_io_error(exc):
            self._report(f"writes to {self._path} fail: {exc}")
        return exc

    def _failure(self, exc: sqlite3.Error) -> Exception:
        """What every caller of a failed transaction (BEGIN or COMMIT) gets."""
        if _is_full(exc):
            self._enter_full_mode()
            return StorageFull(self._full_message())
        if _is_io_error(exc):
            self._report(f"writes to {self._path} fail: {exc}")
        return StorageUnavailable(f"SQLite transaction failed: {exc}")

    def _full_message(self) -> str:
        return (
            f"the disk is full: no room for new messages in "
            f"{os.path.dirname(os.path.abspath(self._path))} until some space is freed"
        )

    def _enter_full_mode(self) -> None:
        if self._full:
            return
        self._full = True
        self._reserve.release()
        self._report(self._full_message())
        log.error(
            "the disk is full: publishes are refused until space is freed",
            extra={"event": "storage.disk_full", "path": self._path},
        )
        self._watch = asyncio.get_running_loop().create_task(
            self._wait_for_space(), name="homing-sqlite-disk-full"
        )

    async def _wait_for_space(self) -> None:
        while True:
            await asyncio.sleep(FULL_POLL_S)
            try:
                if self._reserve.room_for_it() and await self._blocking(self._reserve.ensure):
                    break
            except OSError as exc:  # e.g. the folder became unreadable: keep waiting
                log.warning("cannot check free space: %s", exc)
        self._full = False
        self._watch = None
        self._clear()
        log.info("disk space is back: publishes accepted again", extra={"event": "storage.disk_ok"})

    def _committed(self) -> None:
        # A full disk is cleared by _wait_for_space: a commit that needed no new space (a
        # claim) does not mean that a publish would find room.
        if self._problem is not None and not self._full:
            self._clear()

    def _report(self, problem: str) -> None:
        self._problem = problem
        if self._health is not None:
            self._health.fail(HEALTH_CHECK, problem)

    def _clear(self) -> None:
        self._problem = None
        if self._health is not None:
            self._health.clear(HEALTH_CHECK)

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


def _checkpoint(conn: sqlite3.Connection) -> bool:
    """One PASSIVE checkpoint; whether it copied every frame of the WAL."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return not busy and frames == copied


def _settle(batch: list[_Op], results: list[tuple[bool, Any]]) -> None:
    for op, (ok, value) in zip(batch, results, strict=True):
        if op.settled is not None:
            try:
                op.settled(ok)
            except Exception:
                log.exception("settling a write failed", extra={"event": "storage.settle_failed"})
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
