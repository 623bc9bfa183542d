"""Queues on PostgreSQL (mixed into PostgresStorage).

A queue admits its messages in FIFO order, at most `parallelism` at once (`messages.admit`, which
locks the queue's row while it counts); pausing demotes the messages it had admitted but not
started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homing import log_events
from homing.storage.base import QueueInfo
from homing.storage.postgres.messages import Q, admit, write_events
from homing.storage.postgres.pool import Conn, Database


def _queue(row: Any) -> QueueInfo:
    return QueueInfo(row[0], row[1], row[2], row[3], row[4], row[5])


class QueueStore:
    """The queues part of the storage contract."""

    _db: Database

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

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
        return None if row is None else _queue(row)

    async def list_queues(self, account_id: str) -> list[QueueInfo]:
        return [_queue(r) for r in await self._db.fetch(Q["queue_info"], account_id, None)]

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
            e = log_events.QUEUE_DELETED
            await write_events(conn, [(account_id, r[0], now_ms, e.state, e.info) for r in rows])
            await conn.execute(Q["delete_queue"], account_id, name)

        await self._db.run(run)
