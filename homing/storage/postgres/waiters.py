"""Upstash Workflow waiters on PostgreSQL (mixed into PostgresStorage).

A waiter (`context.waitForEvent`) is a row of `workflow_waiters`; an event kept for a run's
next wait (a run-scoped notify or a webhook call that found no waiter) a row of
`workflow_events`. A wait and a run-scoped notify of the same (run, event) take a transaction
advisory lock first, so on every node one of them sees the other: the event is kept for a wait
that registers after it, or the notify finds the waiter.
"""

from __future__ import annotations

from typing import Any

import orjson

from homing.models import NewWaiter, Registered, Waiter
from homing.storage.postgres.messages import Q
from homing.storage.postgres.pool import Conn, Database


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


class WaiterStore:
    """The workflow-waiters part of the storage contract."""

    _db: Database

    async def add_waiter(
        self, waiter: NewWaiter, *, unmatched_since_ms: int | None = None
    ) -> Registered:
        w = waiter

        async def do(conn: Conn) -> Registered:
            # Always in this order (the run's key, then the account-wide one): no deadlock.
            await conn.execute(Q["lock_run_events"], w.account_id, w.run_id, w.event_id)
            if unmatched_since_ms is not None:
                await conn.execute(Q["lock_run_events"], w.account_id, "", w.event_id)
            inserted = await conn.fetchval(
                Q["insert_waiter"],
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
            if inserted is None:
                existing = await conn.fetchrow(
                    Q["waiter_at_step"], w.account_id, w.run_id, w.step_key
                )
                if existing is not None:
                    return Registered(_waiter(existing), duplicate=True)
                raise RuntimeError("a waiter vanished while registering one at its step")
            kept = await conn.fetchrow(Q["oldest_event"], w.account_id, w.run_id, w.event_id)
            if kept is None and unmatched_since_ms is not None:
                kept = await conn.fetchrow(
                    Q["oldest_unmatched_event"], w.account_id, w.event_id, unmatched_since_ms
                )
            if kept is None:
                return Registered(w)
            await conn.execute(Q["delete_event"], kept[0])
            return Registered(w, event=bytes(kept[1]))

        return await self._db.run(do)

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
        if keep is None and run_id is None:
            rows = await self._db.fetch(Q["event_waiters"], account_id, event_id, limit)
            return [_waiter(r) for r in rows]
        scope = run_id or ""  # "": an account-wide event kept for the first wait of its id

        async def do(conn: Conn) -> list[Waiter]:
            await conn.execute(Q["lock_run_events"], account_id, scope, event_id)
            if run_id is None:
                rows = await conn.fetch(Q["event_waiters"], account_id, event_id, limit)
            else:
                rows = await conn.fetch(Q["run_event_waiters"], account_id, event_id, run_id)
            if not rows and keep is not None:
                await conn.execute(Q["insert_event"], account_id, scope, event_id, keep, now_ms)
            return [_waiter(r) for r in rows]

        return await self._db.run(do)

    async def list_waiters(self, account_id: str, event_id: str, *, limit: int) -> list[Waiter]:
        rows = await self._db.fetch(Q["event_waiters"], account_id, event_id, limit)
        return [_waiter(r) for r in rows]

    async def run_waiters(self, account_id: str, run_id: str, *, limit: int) -> list[Waiter]:
        rows = await self._db.fetch(Q["run_waiters"], account_id, run_id, limit)
        return [_waiter(r) for r in rows]

    async def due_waiters(self, *, now_ms: int, limit: int) -> list[Waiter]:
        return [_waiter(r) for r in await self._db.fetch(Q["due_waiters"], now_ms, limit)]

    async def next_waiter_deadline(self) -> int | None:
        found = await self._db.fetchval(Q["next_waiter_deadline"])
        return None if found is None else int(found)

    async def remove_waiter(self, waiter_id: str) -> bool:
        status = await self._db.execute(Q["delete_waiter"], waiter_id)
        return status.endswith(" 1")

    async def expire_events(self, *, before_ms: int) -> int:
        status = await self._db.execute(Q["expire_events"], before_ms)
        return int(status.split()[-1])
