"""PostgreSQL backend: any number of Homing nodes share one database.

Everything that must be global is decided by the database: deduplication (a unique key),
claiming (`FOR UPDATE SKIP LOCKED`, one statement per batch, see `delivery.py`), lease fencing
(the lease token), FIFO admission for queues (the queue row is locked while admitting), flow
control (the key row is locked while deciding, see `flow.py`), one fire per schedule tick (a
unique row, see `schedules.py`) and the time schedules run on (`db_now_ms`).

Concurrent plain publishes are committed together (`batch.py`), as SQLite's single writer
does. Work made claimable is announced with NOTIFY (`listener.Announcer`: inside the work's
transaction, coalesced under load), and `listener.Listener` turns other nodes' notifications
into wake-ups. SQL lives in `queries.sql` and `migrations/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from homing.errors import StorageUnavailable
from homing.health import Health
from homing.models import (
    InsertResult,
    LogEntry,
    LogState,
    Message,
    MessageFilter,
    NewMessage,
    Page,
)
from homing.publish import Endpoint
from homing.storage.base import QueueInfo, Storage, UrlGroup
from homing.storage.postgres.accounts import AccountStore
from homing.storage.postgres.batch import InsertBatcher
from homing.storage.postgres.delivery import DeliveryStore
from homing.storage.postgres.filters import Params, compose, message_where
from homing.storage.postgres.flow import FlowControlStore
from homing.storage.postgres.listener import Announcer, Listener
from homing.storage.postgres.messages import (
    EventRow,
    Q,
    admit,
    insert,
    is_plain,
    log_events,
    message,
)
from homing.storage.postgres.pool import (
    ACQUIRE_TIMEOUT_S,
    STATEMENT_TIMEOUT_S,
    Conn,
    Database,
    affected,
)
from homing.storage.postgres.schedules import ScheduleStore
from homing.storage.postgres.stats import StatsStore
from homing.storage.queries import load_migrations

MIGRATIONS = load_migrations("homing.storage.postgres")


class PostgresStorage(
    AccountStore, DeliveryStore, ScheduleStore, FlowControlStore, StatsStore, Storage
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
        health: Health | None = None,
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
        self._batcher = InsertBatcher(self._db, self._announcer)
        self.listener: Listener | None = None
        if listen:
            self.listener = Listener(
                self._db.connect,
                self._wake,
                ignore_pid=self._db.own_pids.__contains__,
                health=health,
            )

    # -- lifecycle ------------------------------------------------------------------------

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

    # -- messages ---------------------------------------------------------------------------

    async def insert_messages(
        self, messages: Sequence[NewMessage], *, now_ms: int, dedup_window_ms: int
    ) -> list[InsertResult]:
        if not messages:
            return []
        if is_plain(messages):
            results, earliest = await self._batcher.insert(messages, now_ms)
        else:
            announce = self._announcer.inline()
            results, earliest = await self._db.run(
                lambda conn: insert(conn, messages, now_ms, dedup_window_ms, announce=announce)
            )
            self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return results

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        row = await self._db.fetchrow(Q["get_message"], message_id, account_id)
        return None if row is None else message(row)

    async def cancel_messages(
        self,
        account_id: str,
        *,
        message_ids: Sequence[str] | None,
        filter: MessageFilter | None,
        limit: int | None,
        now_ms: int,
    ) -> int:
        params = Params(account_id)
        if message_ids is not None:
            clauses = [f"m.id = ANY({params.add(list(message_ids))}::text[])"]
        else:
            clauses = message_where(filter or MessageFilter(), params)
        limit_clause = "" if limit is None else f"LIMIT {params.add(limit)}"
        sql = compose(Q["cancel_candidates"], clauses, limit=limit_clause)

        async def run(conn: Conn) -> int:
            rows = await conn.fetch(sql, *params.values)
            ids = [r[0] for r in rows]
            if not ids:
                return 0
            # Lock order: active messages, then queues, then the messages waiting in them
            # (the order admission uses), so cancelling never deadlocks with an outcome.
            marked = await conn.fetch(Q["cancel_mark_active"], ids, account_id)
            slots = sorted({r[2] for r in rows if r[1] != "active" and r[2]})
            if slots:
                await conn.fetch(Q["lock_queues"], [account_id] * len(slots), slots)
            canceled = await conn.fetch(Q["cancel_pending"], ids, account_id, now_ms)
            changed = [(r["seq"], r["id"], False) for r in marked]
            changed += [(r["seq"], r["id"], True) for r in canceled]
            events: list[EventRow] = []
            for _, message_id, final in sorted(changed):
                events.append((account_id, message_id, now_ms, LogState.CANCEL_REQUESTED, None))
                if final:
                    events.append((account_id, message_id, now_ms, LogState.CANCELED, None))
            await log_events(conn, events)
            await admit(conn, {(account_id, r["queue_slot"]) for r in canceled if r["queue_slot"]})
            return len(marked) + len(canceled)

        count = await self._db.run(run)
        self._wake(now_ms)
        return count

    # -- dead-letter queue ------------------------------------------------------------------

    async def list_dlq(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        cursor: str | None,
        count: int,
        newest_first: bool = False,
    ) -> Page[Message]:
        params = Params(account_id)
        clauses = message_where(filter, params, time_column="m.dlq_ms")
        if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= 18:
            op = "<" if newest_first else ">"
            clauses.append(f"m.seq {op} {params.add(int(cursor))}::bigint")
        order = "DESC" if newest_first else "ASC"
        sql = compose(Q["list_dlq"], clauses, order=order, limit=params.add(count + 1))
        rows = await self._db.fetch(sql, *params.values)
        more = len(rows) > count
        rows = rows[:count]
        return Page([message(r) for r in rows], str(rows[-1][-1]) if more and rows else None)

    async def get_dlq(self, account_id: str, dlq_id: str) -> Message | None:
        row = await self._db.fetchrow(Q["get_dlq"], account_id, dlq_id)
        return None if row is None else message(row)

    async def delete_dlq(self, account_id: str, dlq_ids: Sequence[str]) -> int:
        if not dlq_ids:
            return 0
        rows = await self._db.fetch(Q["take_dlq"], account_id, list(dict.fromkeys(dlq_ids)))
        return len(rows)

    async def replace_dlq(
        self,
        account_id: str,
        replacements: Sequence[tuple[str, NewMessage]],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult | None]:
        async def run(conn: Conn) -> tuple[list[InsertResult | None], int | None]:
            wanted = list(dict.fromkeys(dlq_id for dlq_id, _ in replacements))
            taken = {r[0] for r in await conn.fetch(Q["take_dlq"], account_id, wanted)}
            chosen: list[int] = []  # the first replacement of each entry that existed
            for i, (dlq_id, _) in enumerate(replacements):
                if dlq_id in taken:
                    chosen.append(i)
                    taken.discard(dlq_id)
            out: list[InsertResult | None] = [None] * len(replacements)
            if not chosen:
                return out, None
            news = [replacements[i][1] for i in chosen]
            results, due = await insert(conn, news, now_ms, dedup_window_ms)
            for i, result in zip(chosen, results, strict=True):
                out[i] = result
            return out, due

        results, earliest = await self._db.run(run)
        if earliest is not None:
            self._wake(earliest)
        return results

    # -- logs -------------------------------------------------------------------------------

    async def list_logs(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        before_id: int | None,
        count: int,
        newest_first: bool = True,
    ) -> Page[LogEntry]:
        params = Params(account_id)
        clauses = message_where(filter, params, time_column="e.time_ms", with_states=True)
        if before_id is not None:
            op = "<" if newest_first else ">"
            clauses.append(f"e.id {op} {params.add(before_id)}::bigint")
        order = "DESC" if newest_first else "ASC"
        sql = compose(Q["list_logs"], clauses, order=order, limit=params.add(count + 1))
        rows = await self._db.fetch(sql, *params.values)
        more = len(rows) > count
        rows = rows[:count]
        entries = [
            LogEntry(
                id=r[0],
                time_ms=r[1],
                state=LogState(r[2]),
                message=message(r, 4),
                info=orjson.loads(r[3]) if r[3] else {},
            )
            for r in rows
        ]
        return Page(entries, str(rows[-1][0]) if more and rows else None)

    # -- queues -----------------------------------------------------------------------------

    @staticmethod
    def _queue(row: Any) -> QueueInfo:
        return QueueInfo(row[0], row[1], row[2], row[3], row[4], row[5])

    async def upsert_queue(
        self, account_id: str, name: str, *, parallelism: int, paused: bool, now_ms: int
    ) -> None:
        async def run(conn: Conn) -> int | None:
            await conn.execute(Q["upsert_queue"], account_id, name, parallelism, paused, now_ms)
            if paused:
                await conn.execute(Q["demote_ready"], account_id, name)
                return None
            return await admit(conn, [(account_id, name)])

        due = await self._db.run(run)
        if due is not None:
            self._wake(due)

    async def get_queue(self, account_id: str, name: str) -> QueueInfo | None:
        row = await self._db.fetchrow(Q["queue_info"], account_id, name)
        return None if row is None else self._queue(row)

    async def list_queues(self, account_id: str) -> list[QueueInfo]:
        return [self._queue(r) for r in await self._db.fetch(Q["queue_info"], account_id, None)]

    async def set_queue_paused(
        self, account_id: str, name: str, *, paused: bool, now_ms: int
    ) -> bool:
        async def run(conn: Conn) -> tuple[bool, int | None]:
            found = await conn.fetchval(Q["set_queue_paused"], account_id, name, paused, now_ms)
            if found is None:
                return False, None
            if paused:
                await conn.execute(Q["demote_ready"], account_id, name)
                return True, None
            return True, await admit(conn, [(account_id, name)])

        found, due = await self._db.run(run)
        if due is not None:
            self._wake(due)
        return found

    async def delete_queue(self, account_id: str, name: str, *, now_ms: int) -> None:
        async def run(conn: Conn) -> None:
            await conn.fetch(Q["lock_queues"], [account_id], [name])
            rows = await conn.fetch(Q["cancel_queue_messages"], account_id, name, now_ms)
            await log_events(
                conn, [(account_id, r[0], now_ms, LogState.CANCELED, None) for r in rows]
            )
            await conn.execute(Q["delete_queue"], account_id, name)

        await self._db.run(run)

    # -- URL groups -------------------------------------------------------------------------

    @staticmethod
    def _group(row: Any) -> UrlGroup:
        endpoints = tuple(Endpoint(e["url"], e.get("name")) for e in orjson.loads(row[3]))
        return UrlGroup(row[0], row[1], row[2], endpoints)

    async def upsert_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(Q["ensure_url_group"], account_id, group, now_ms)
            raw = await conn.fetchval(Q["lock_url_group"], account_id, group)
            current = [Endpoint(e["url"], e.get("name")) for e in orjson.loads(raw)]
            for new in endpoints:
                for i, old in enumerate(current):
                    if old.url == new.url or (new.name is not None and old.name == new.name):
                        current[i] = new
                        break
                else:
                    current.append(new)
            doc = orjson.dumps(
                [{"url": e.url, **({"name": e.name} if e.name else {})} for e in current]
            ).decode()
            await conn.execute(Q["set_url_group"], account_id, group, doc, now_ms)

        await self._db.run(run)

    async def remove_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> bool:
        async def run(conn: Conn) -> bool:
            raw = await conn.fetchval(Q["lock_url_group"], account_id, group)
            if raw is None:
                return False
            kept = [
                e
                for e in orjson.loads(raw)
                if not any(
                    (r.url and r.url == e["url"]) or (r.name and r.name == e.get("name"))
                    for r in endpoints
                )
            ]
            if kept:
                doc = orjson.dumps(kept).decode()
                await conn.execute(Q["set_url_group"], account_id, group, doc, now_ms)
            else:
                await conn.execute(Q["delete_url_group"], account_id, group)
            return True

        found: bool = await self._db.run(run)
        return found

    async def get_url_group(self, account_id: str, name: str) -> UrlGroup | None:
        row = await self._db.fetchrow(Q["url_groups"], account_id, name)
        return None if row is None else self._group(row)

    async def list_url_groups(self, account_id: str) -> list[UrlGroup]:
        return [self._group(r) for r in await self._db.fetch(Q["url_groups"], account_id, None)]

    async def delete_url_group(self, account_id: str, name: str) -> None:
        await self._db.execute(Q["delete_url_group"], account_id, name)

    # -- housekeeping -----------------------------------------------------------------------

    async def purge(self, *, now_ms: int, retention_ms: int, dlq_retention_ms: int) -> int:
        async def run(conn: Conn) -> int:
            removed = affected(await conn.execute(Q["purge_dedup"], now_ms))
            removed += affected(await conn.execute(Q["purge_dlq"], now_ms - dlq_retention_ms))
            removed += affected(await conn.execute(Q["purge_events"], now_ms - retention_ms))
            removed += affected(await conn.execute(Q["purge_messages"], now_ms - retention_ms))
            return removed

        count: int = await self._db.run(run)
        return count
