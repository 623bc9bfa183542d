"""PostgreSQL backend: any number of Homing nodes share one database.

Everything that must be global is decided by the database: deduplication (a unique key),
claiming (`FOR UPDATE SKIP LOCKED`, one statement per batch, see `delivery.py`), lease fencing
(the lease token), FIFO admission for queues (the queue row is locked while admitting), flow
control (the key row is locked while deciding, see `flow.py`), one fire per schedule tick (a
unique row, see `schedules.py`) and the time schedules run on (`db_now_ms`).

Concurrent plain publishes are committed together (`batch.py`), as SQLite's single writer
does. Work made claimable is announced with NOTIFY (`listener.Announcer`: inside the work's
transaction, coalesced under load), and `listener.Listener` turns other nodes' notifications
into wake-ups.

The contract is implemented by concern, one mixin per module (accounts, messages, delivery,
queues, URL groups, schedules, flow control, statistics: the same modules as the SQLite
backend); this class owns the lifecycle (pool, listener, migrations) and the purge. SQL lives
in `queries.sql` and `migrations/`.
"""

from __future__ import annotations

from homing.errors import StorageUnavailable
from homing.health import Health
from homing.storage.base import Storage
from homing.storage.postgres.accounts import AccountStore
from homing.storage.postgres.batch import InsertBatcher
from homing.storage.postgres.delivery import DeliveryStore
from homing.storage.postgres.flow import FlowControlStore
from homing.storage.postgres.listener import Announcer, Listener
from homing.storage.postgres.messages import MessageStore, Q
from homing.storage.postgres.pool import (
    ACQUIRE_TIMEOUT_S,
    STATEMENT_TIMEOUT_S,
    Conn,
    Database,
    affected,
)
from homing.storage.postgres.queues import QueueStore
from homing.storage.postgres.schedules import ScheduleStore
from homing.storage.postgres.stats import StatsStore
from homing.storage.postgres.url_groups import UrlGroupStore
from homing.storage.postgres.waiters import WaiterStore
from homing.storage.postgres.workflows import WorkflowStore
from homing.storage.queries import load_migrations

MIGRATIONS = load_migrations("homing.storage.postgres")


class PostgresStorage(
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
    single_node = False

    def __init__(
        self,
        url: str,
        *,
        server_settings: dict[str, str] | None = None,
        min_connections: int = 2,
        max_connections: int = 16,
        listen: bool = True,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.url = url
        self._db = Database(
            url,
            server_settings=server_settings,
            min_size=min_connections,
            max_size=max_connections,
            acquire_timeout_s=acquire_timeout_s,
            statement_timeout_s=statement_timeout_s,
        )
        self._unblock_hint: int | None = None
        self._announcer = Announcer(self._notify)
        self._batcher = InsertBatcher(self._db, self._announcer, taker=lambda: self._taker)
        self.listener: Listener | None = None
        if listen:
            self.listener = Listener(
                self._db.connect,
                self._wake,
                ignore_pid=self._db.own_pids.__contains__,
            )

    # -- lifecycle ------------------------------------------------------------------------

    def report_to(self, health: Health) -> None:
        if self.listener is not None:
            self.listener.report_to(health)  # while LISTEN is down, other nodes' work waits

    async def open(self) -> None:
        await self._db.open()
        try:
            await self._db.run_alone(self._migrate)
            row = await self._db.fetchrow(Q["next_due"])
            self._unblock_hint = row["unblock"]
        except BaseException:
            await self._db.close()
            raise
        if self.listener is not None:
            self.listener.start()

    async def _migrate(self, conn: Conn) -> None:
        # Several nodes may start together: the first takes the lock and migrates, the others
        # wait for it and then find nothing left to do.
        await conn.execute(Q["migration_lock"])
        await conn.execute(Q["create_version_table"])
        done = {r[0] for r in await conn.fetch(Q["applied_versions"])}
        for version, sql in MIGRATIONS:
            if version not in done:
                await conn.execute(sql)
                await conn.execute(Q["record_version"], version)

    async def close(self) -> None:
        await self._batcher.close()
        await self._announcer.close()
        if self.listener is not None:
            await self.listener.stop()
        await self._db.close()

    async def _notify(self, due_ms: int) -> None:
        await self._db.execute(Q["notify"], str(due_ms))

    async def ping(self) -> None:
        latest = max(v for v, _ in MIGRATIONS)
        try:
            found = await self._db.probe(Q["schema_version"])
        except StorageUnavailable:
            raise
        except Exception as exc:
            raise StorageUnavailable(f"PostgreSQL is not ready: {exc}") from exc
        if found is None or found < latest:
            raise StorageUnavailable("the PostgreSQL schema is not migrated")

    async def check_durability(self) -> str | None:
        """A warning when the server does not make commits durable (fsync off), else None."""
        fsync = await self._db.fetchval(Q["fsync"])
        if str(fsync).lower() != "on":
            return (
                "PostgreSQL runs with fsync=off: a crash of the database server can lose "
                "messages that Homing acknowledged. Turn fsync on for production."
            )
        return None

    # -- housekeeping -----------------------------------------------------------------------

    async def purge(self, *, now_ms: int, retention_ms: int, dlq_retention_ms: int) -> int:
        async def run(conn: Conn) -> int:
            removed = affected(await conn.execute(Q["purge_dedup"], now_ms))
            removed += affected(await conn.execute(Q["purge_dlq"], now_ms - dlq_retention_ms))
            removed += affected(await conn.execute(Q["purge_events"], now_ms - retention_ms))
            removed += affected(await conn.execute(Q["purge_messages"], now_ms - retention_ms))
            # Ended workflow runs with their step lists (steps first: the same runs, by seq).
            removed += affected(await conn.execute(Q["purge_run_steps"], now_ms - retention_ms))
            removed += affected(await conn.execute(Q["purge_runs"], now_ms - retention_ms))
            return removed

        count: int = await self._db.run(run)
        return count
