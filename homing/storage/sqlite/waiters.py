"""Upstash Workflow waiters on SQLite (mixed into SqliteStorage).

A waiter (`context.waitForEvent`) is a row of `workflow_waiters`; an event kept for a run's
next wait (a run-scoped notify or a webhook call that found no waiter) a row of
`workflow_events`. The single writer orders a wait and a run-scoped notify of the same run, so
one of them always sees the other.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from homing.models import NewWaiter, Registered, Waiter
from homing.storage.sqlite.core import Core, Q


def _row(w: NewWaiter) -> tuple[Any, ...]:
    return (
        w.id,
        w.account_id,
        w.run_id,
        w.event_id,
        w.step_key,
        w.url,
        w.deadline_ms,
        orjson.dumps(w.headers),
        w.timeout_url,
        orjson.dumps(w.timeout_headers),
        w.step,
        w.timeout,
        w.created_ms,
    )


def _waiter(r: Any) -> Waiter:
    return Waiter(
        id=r[0],
        account_id=r[1],
        run_id=r[2],
        event_id=r[3],
        step_key=r[4],
        url=r[5],
        deadline_ms=r[6],
        headers=orjson.loads(r[7]),
        timeout_url=r[8],
        timeout_headers=orjson.loads(r[9]),
        step=bytes(r[10]),
        timeout=r[11],
        created_ms=r[12],
    )


class WaiterStore(Core):
    """The workflow-waiters part of the storage contract."""

    async def add_waiter(
        self, waiter: NewWaiter, *, unmatched_since_ms: int | None = None
    ) -> Registered:
        def do(conn: sqlite3.Connection) -> Registered:
            key = (waiter.account_id, waiter.run_id, waiter.step_key)
            existing = conn.execute(Q["waiter_at_step"], key).fetchone()
            if existing is not None:
                return Registered(_waiter(existing), duplicate=True)
            conn.execute(Q["insert_waiter"], _row(waiter))
            kept = conn.execute(
                Q["oldest_event"], (waiter.account_id, waiter.run_id, waiter.event_id)
            ).fetchone()
            if kept is None and unmatched_since_ms is not None:
                kept = conn.execute(
                    Q["oldest_unmatched_event"],
                    (waiter.account_id, waiter.event_id, unmatched_since_ms),
                ).fetchone()
            if kept is None:
                return Registered(waiter)
            conn.execute(Q["delete_event"], (kept[0],))
            return Registered(waiter, event=bytes(kept[1]))

        return await self._writer.call(do)

    async def waiters_to_notify(
        self,
        account_id: str,
        event_id: str,
        *,
        run_id: str | None,
        keep: bytes | None,
        now_ms: int,
        limit: int,
    ) -> list[Waiter]:
        def do(conn: sqlite3.Connection) -> list[Waiter]:
            if run_id is None:
                rows = conn.execute(Q["event_waiters"], (account_id, event_id, limit))
            else:
                rows = conn.execute(Q["run_event_waiters"], (account_id, event_id, run_id))
            found = [_waiter(r) for r in rows]
            if not found and keep is not None:
                # run id "": an account-wide event kept for the first wait of its id
                conn.execute(Q["insert_event"], (account_id, run_id or "", event_id, keep, now_ms))
            return found

        if keep is None:
            return await self._read(do)
        return await self._writer.call(do)

    async def list_waiters(self, account_id: str, event_id: str, *, limit: int) -> list[Waiter]:
        def do(conn: sqlite3.Connection) -> list[Waiter]:
            return [
                _waiter(r) for r in conn.execute(Q["event_waiters"], (account_id, event_id, limit))
            ]

        return await self._read(do)

    async def run_waiters(self, account_id: str, run_id: str, *, limit: int) -> list[Waiter]:
        def do(conn: sqlite3.Connection) -> list[Waiter]:
            rows = conn.execute(Q["run_waiters"], (account_id, run_id, limit))
            return [_waiter(r) for r in rows]

        return await self._read(do)

    async def due_waiters(self, *, now_ms: int, limit: int) -> list[Waiter]:
        def do(conn: sqlite3.Connection) -> list[Waiter]:
            return [_waiter(r) for r in conn.execute(Q["due_waiters"], (now_ms, limit))]

        return await self._read(do)

    async def next_waiter_deadline(self) -> int | None:
        def do(conn: sqlite3.Connection) -> int | None:
            (found,) = conn.execute(Q["next_waiter_deadline"]).fetchone()
            return None if found is None else int(found)

        return await self._read(do)

    async def remove_waiter(self, waiter_id: str) -> bool:
        def do(conn: sqlite3.Connection) -> bool:
            return conn.execute(Q["delete_waiter"], (waiter_id,)).rowcount > 0

        return await self._writer.call(do)

    async def expire_events(self, *, before_ms: int) -> int:
        def do(conn: sqlite3.Connection) -> int:
            return conn.execute(Q["expire_events"], (before_ms,)).rowcount

        return await self._writer.call(do)
