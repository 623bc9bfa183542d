"""Queues on SQLite (mixed into SqliteStorage).

A queue admits its messages in FIFO order, at most `parallelism` at once (`messages.admit`);
pausing demotes the messages it had admitted but not started.
"""

from __future__ import annotations

import sqlite3

from homing import log_events
from homing.storage.base import QueueInfo
from homing.storage.sqlite.core import Core, Q
from homing.storage.sqlite.messages import admit


def _queue_info(conn: sqlite3.Connection, account_id: str, name: str) -> QueueInfo | None:
    row = conn.execute(Q["queue_info"], (account_id, name)).fetchone()
    if row is None:
        return None
    return QueueInfo(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


class QueueStore(Core):
    """The queues part of the storage contract."""

    async def upsert_queue(
        self, account_id: str, name: str, *, parallelism: int, paused: bool, now_ms: int
    ) -> None:
        def run(conn: sqlite3.Connection) -> int | None:
            conn.execute(
                Q["upsert_queue"], (account_id, name, parallelism, int(paused), now_ms, now_ms)
            )
            if paused:
                conn.execute(Q["demote_ready"], (account_id, name))
                return None
            return admit(conn, account_id, name)

        due = await self._writer.call(run)
        if due is not None:
            self._wake(due)

    async def get_queue(self, account_id: str, name: str) -> QueueInfo | None:
        return await self._read(lambda c: _queue_info(c, account_id, name))

    async def list_queues(self, account_id: str) -> list[QueueInfo]:
        def run(conn: sqlite3.Connection) -> list[QueueInfo]:
            names = conn.execute(Q["queue_names"], (account_id,)).fetchall()
            return [q for (n,) in names if (q := _queue_info(conn, account_id, n))]

        return await self._read(run)

    async def set_queue_paused(
        self, account_id: str, name: str, *, paused: bool, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> tuple[bool, int | None]:
            changed = conn.execute(
                Q["set_queue_paused"], (int(paused), now_ms, account_id, name)
            ).rowcount
            if not changed:
                return False, None
            if paused:
                conn.execute(Q["demote_ready"], (account_id, name))
                return True, None
            return True, admit(conn, account_id, name)

        found, due = await self._writer.call(run)
        if due is not None:
            self._wake(due)
        return found

    async def delete_queue(self, account_id: str, name: str, *, now_ms: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            rows = conn.execute(Q["cancel_queue_messages"], (now_ms, account_id, name)).fetchall()
            e = log_events.QUEUE_DELETED
            self._events.write(
                conn, [(account_id, mid, now_ms, e.state, e.info) for (mid,) in rows]
            )
            conn.execute(Q["delete_queue"], (account_id, name))

        await self._writer.call(run)
