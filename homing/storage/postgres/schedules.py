"""Schedules on PostgreSQL (mixed into PostgresStorage).

Each fire is a row in `schedule_fires` keyed by (schedule, tick): the database, not the
scheduler's good behaviour, is what guarantees one fire per tick, whichever node fires it.
`record_fire` also locks the schedule row, so a fire and an overwrite or pause of the same
schedule are ordered, and a fire of a stale read is refused by the version check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from homing.models import NewMessage, Schedule
from homing.storage import codec
from homing.storage.postgres.messages import Q, insert
from homing.storage.postgres.pool import Conn, Database


async def _with_states(conn: Conn, rows: Sequence[Any]) -> list[Schedule]:
    """Schedules with the states of the messages of their latest fire (one query for all)."""
    ids = sorted({mid for r in rows for mid in (r["last_message_ids"] or ())})
    found: dict[str, str] = {}
    if ids:
        found = {r[0]: r[1] for r in await conn.fetch(Q["message_states"], ids)}
    return [
        codec.decode_schedule(r, codec.schedule_states(r["last_message_ids"] or (), found))
        for r in rows
    ]


class ScheduleStore:
    """The schedule part of the storage contract."""

    _db: Database

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def upsert_schedule(self, schedule: Schedule) -> None:
        s = schedule
        await self._db.execute(
            Q["upsert_schedule"],
            s.account_id,
            s.id,
            s.cron,
            s.destination,
            s.body,
            codec.encode_spec(s.spec),
            s.created_ms,
            s.caller_ip,
            s.delay_s,
            s.queue_name,
            codec.encode_labels(s.labels),
            s.flow.key if s.flow else None,
            codec.encode_flow(s.flow),
            s.paused,
            s.next_fire_ms,
        )
        if s.next_fire_ms is not None:
            self._wake(s.next_fire_ms)

    async def get_schedule(self, account_id: str, schedule_id: str) -> Schedule | None:
        async def run(conn: Conn) -> list[Schedule]:
            return await _with_states(
                conn, await conn.fetch(Q["schedules"], account_id, schedule_id)
            )

        found = await self._db.run(run, transaction=False)
        return found[0] if found else None

    async def list_schedules(self, account_id: str) -> list[Schedule]:
        async def run(conn: Conn) -> list[Schedule]:
            return await _with_states(conn, await conn.fetch(Q["schedules"], account_id, None))

        return await self._db.run(run, transaction=False)

    async def delete_schedule(self, account_id: str, schedule_id: str) -> bool:
        return await self._db.fetchval(Q["delete_schedule"], account_id, schedule_id) is not None

    async def set_schedule_paused(
        self, account_id: str, schedule_id: str, *, paused: bool, next_fire_ms: int | None
    ) -> bool:
        found = await self._db.fetchval(
            Q["set_schedule_paused"], account_id, schedule_id, paused, next_fire_ms
        )
        if found is not None and not paused and next_fire_ms is not None:
            self._wake(next_fire_ms)
        return found is not None

    async def due_schedules(self, *, now_ms: int, limit: int) -> list[Schedule]:
        rows = await self._db.fetch(Q["due_schedules"], now_ms, limit)
        return [codec.decode_schedule(r, {}) for r in rows]

    async def next_schedule_ms(self) -> int | None:
        found: int | None = await self._db.fetchval(Q["next_schedule"])
        return found

    async def db_now_ms(self) -> int | None:
        now: int = await self._db.fetchval(Q["db_now"])
        return now

    async def record_fire(
        self,
        schedule: Schedule,
        *,
        tick_ms: int | None,
        messages: Sequence[NewMessage],
        next_fire_ms: int | None,
        error: str | None,
        now_ms: int,
    ) -> bool:
        account_id, schedule_id = schedule.account_id, schedule.id

        async def run(conn: Conn) -> tuple[bool, int | None]:
            row = await conn.fetchrow(Q["lock_schedule"], account_id, schedule_id)
            if row is None or row["paused"] or row["version"] != schedule.version:
                return False, None  # deleted, paused or replaced since it was read
            if tick_ms is None:
                await conn.execute(Q["move_schedule"], account_id, schedule_id, next_fire_ms)
                return False, None
            fresh = await conn.fetchval(Q["insert_fire"], account_id, schedule_id, tick_ms, now_ms)
            if fresh is None:
                return False, None  # this tick was fired already (another node, a retry)
            results, due = await insert(conn, messages, now_ms, 0)
            await conn.execute(
                Q["fired_schedule"],
                account_id,
                schedule_id,
                tick_ms,
                next_fire_ms,
                [r.message_id for r in results],
                error,
            )
            return True, due

        fired, due = await self._db.run(run)
        if due is not None:
            self._wake(due)
        return fired
