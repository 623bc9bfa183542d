"""SQLite backend: the embedded default. One process owns the database file.

Writes go through one group-committing writer thread (see `connection.py`); reads use a small
pool of WAL readers. Claiming is a single `UPDATE ... RETURNING` inside the writer's transaction,
so each due message goes to exactly one claim. Wake-ups are in-process: the backend tells its
listeners after commit.

The contract is implemented by concern, one mixin per module (accounts, messages, delivery,
queues, URL groups, schedules, flow control, statistics: the same modules as the PostgreSQL
backend); this class owns the lifecycle (files, lock, connections, migrations) and the purge.
SQL lives in `queries.sql` and `migrations/`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3

from homing.errors import StorageUnavailable
from homing.health import Health
from homing.storage.base import Storage
from homing.storage.queries import load_migrations
from homing.storage.sqlite.accounts import AccountStore
from homing.storage.sqlite.connection import RESERVE_BYTES, Readers, Writer, open_reader
from homing.storage.sqlite.core import EventLog, Q
from homing.storage.sqlite.delivery import DeliveryStore
from homing.storage.sqlite.flow import FlowControlStore
from homing.storage.sqlite.messages import MessageStore
from homing.storage.sqlite.queues import QueueStore
from homing.storage.sqlite.schedules import ScheduleStore
from homing.storage.sqlite.stats import StatsStore
from homing.storage.sqlite.tokens import TokenCache
from homing.storage.sqlite.url_groups import UrlGroupStore
from homing.storage.sqlite.waiters import WaiterStore
from homing.storage.sqlite.workflows import WorkflowStore


class SqliteStorage(
    AccountStore,
    MessageStore,
    DeliveryStore,
    QueueStore,
    UrlGroupStore,
    ScheduleStore,
    FlowControlStore,
    StatsStore,
    WorkflowStore,
    WaiterStore,
    Storage,
):
    single_node = True

    def __init__(self, path: str, *, synchronous: str = "FULL", exclusive: bool = True) -> None:
        super().__init__()
        self.path = path
        self._folder = os.path.dirname(os.path.abspath(path))
        self._exclusive = exclusive
        self._synchronous = synchronous
        # Only the server keeps a reserve against a full disk (see connection.py); the admin
        # commands that open the store beside it do not.
        self._writer = Writer(
            path, synchronous=synchronous, reserve_bytes=RESERVE_BYTES if exclusive else 0
        )
        self._readers = None
        self._inline = None
        self._events = EventLog()
        self._tokens = TokenCache(path + ".tokens")
        self._lock_fd: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            os.makedirs(self._folder, exist_ok=True)
            if self._exclusive:
                self._lock()
        except OSError as exc:
            # A read-only or foreign data directory: say so in one line, before touching anything.
            raise StorageUnavailable(
                f"cannot write to the data directory {self._folder}: {exc.strerror or exc}; "
                "Homing needs a writable --data-dir"
            ) from exc
        await self._writer.start()
        try:
            await self._writer.call(self._migrate)
            self._readers = Readers(self.path)
            self._inline = open_reader(self.path, busy_timeout_ms=0)
        except BaseException:
            await self.close()
            raise

    def _lock(self) -> None:
        # One process per database file: a second Homing on the same file would release the
        # first one's claims at start and deliver its messages twice.
        self._lock_fd = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StorageUnavailable(
                f"{self.path} is in use by another Homing process; give each server its own "
                "--data-dir, or use PostgreSQL to run several nodes"
            ) from None

    async def close(self) -> None:
        try:
            await self._writer.stop()
        finally:
            self._close_readers()

    def _close_readers(self) -> None:
        if self._readers is not None:
            self._readers.close()
            self._readers = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def report_to(self, health: Health) -> None:
        self._writer.report_to(health)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute(Q["schema_version"]).fetchone())

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(Q["create_version_table"])
        done = {v for (v,) in conn.execute(Q["applied_versions"])}
        for version, sql in load_migrations("homing.storage.sqlite"):
            if version in done:
                continue
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(Q["record_version"], (version,))
        self._events.last_id = conn.execute(Q["last_event_id"]).fetchone()[0]

    # -- housekeeping -----------------------------------------------------------------------

    async def purge(self, *, now_ms: int, retention_ms: int, dlq_retention_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            removed: int = conn.execute(Q["purge_dedup"], (now_ms,)).rowcount
            removed += conn.execute(Q["purge_dlq"], (now_ms - dlq_retention_ms,)).rowcount
            removed += conn.execute(Q["purge_events"], (now_ms - retention_ms,)).rowcount
            removed += conn.execute(Q["purge_messages"], (now_ms - retention_ms,)).rowcount
            # Ended workflow runs with their step lists (steps first: the same runs, by seq).
            removed += conn.execute(Q["purge_run_steps"], (now_ms - retention_ms,)).rowcount
            removed += conn.execute(Q["purge_runs"], (now_ms - retention_ms,)).rowcount
            return removed

        return await self._writer.call(run)
