"""Schedules on SQLite (mixed into SqliteStorage).

Each fire is a row in `schedule_fires` keyed by (schedule, tick): the database, not the
scheduler's good behaviour, is what guarantees one fire per tick.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from homing.models import NewMessage, Schedule, ScheduleState
from homing.storage import codec
from homing.storage.sqlite.core import Core, Q, marks
from homing.storage.sqlite.messages import insert


def _last_states(conn: sqlite3.Connection, raw_ids: str | None) -> dict[str, ScheduleState]:
    ids = orjson.loads(raw_ids) if raw_ids else []
    if not ids:
        return {}
    rows = conn.execute(Q["message_states"].format(ids=marks(len(ids))), ids).fetchall()
    return codec.schedule_states(ids, dict(rows))


def _schedule(conn: sqlite3.Connection, row: Sequence[Any], *, states: bool) -> Schedule:
    return codec.decode_schedule(row, _last_states(conn, row[16]) if states else {})


class ScheduleStore(Core):
    """The schedule part of the storage contract."""

    async def upsert_schedule(self, schedule: Schedule) -> None:
        s = schedule
        args = (
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
            int(s.paused),
            s.next_fire_ms,
        )
        await self._writer.call(lambda c: c.execute(Q["upsert_schedule"], args))
        if s.next_fire_ms is not None:
            self._wake(s.next_fire_ms)

    async def get_schedule(self, account_id: str, schedule_id: str) -> Schedule | None:
        def run(conn: sqlite3.Connection) -> Schedule | None:
            args = (account_id, schedule_id, schedule_id)
            row = conn.execute(Q["schedules"], args).fetchone()
            return None if row is None else _schedule(conn, row, states=True)

        return await self._read(run)

    async def list_schedules(self, account_id: str) -> list[Schedule]:
        def run(conn: sqlite3.Connection) -> list[Schedule]:
            rows = conn.execute(Q["schedules"], (account_id, None, None)).fetchall()
            return [_schedule(conn, r, states=True) for r in rows]

        return await self._read(run)

    async def delete_schedule(self, account_id: str, schedule_id: str) -> bool:
        count = await self._writer.call(
            lambda c: c.execute(Q["delete_schedule"], (account_id, schedule_id)).rowcount
        )
        return bool(count)

    async def set_schedule_paused(
        self, account_id: str, schedule_id: str, *, paused: bool, next_fire_ms: int | None
    ) -> bool:
        args = (int(paused), next_fire_ms, account_id, schedule_id)
        count = await self._writer.call(
            lambda c: c.execute(Q["set_schedule_paused"], args).rowcount
        )
        if count and not paused and next_fire_ms is not None:
            self._wake(next_fire_ms)
        return bool(count)

    async def due_schedules(self, *, now_ms: int, limit: int) -> list[Schedule]:
        def run(conn: sqlite3.Connection) -> list[Schedule]:
            rows = conn.execute(Q["due_schedules"], (now_ms, limit)).fetchall()
            return [_schedule(conn, r, states=False) for r in rows]

        return await self._read(run)

    async def next_schedule_ms(self) -> int | None:
        row = await self._read(lambda c: c.execute(Q["next_schedule"]).fetchone())
        return None if row is None else row[0]

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
        key = (schedule.account_id, schedule.id)

        def run(conn: sqlite3.Connection) -> tuple[bool, int | None]:
            row = conn.execute(Q["lock_schedule"], key).fetchone()
            if row is None or row[1] or row[0] != schedule.version:
                return False, None  # deleted, paused or replaced since it was read
            if tick_ms is None:
                conn.execute(Q["move_schedule"], (next_fire_ms, *key))
                return False, None
            fresh = conn.execute(Q["insert_fire"], (*key, tick_ms, now_ms)).rowcount
            if not fresh:
                return False, None
            results, due = (
                insert(conn, self._events, messages, now_ms, 0) if messages else ([], None)
            )
            fired = orjson.dumps([r.message_id for r in results]).decode()
            conn.execute(Q["fired_schedule"], (tick_ms, next_fire_ms, fired, error, *key))
            return True, due

        fired, due = await self._writer.call(run)
        if due is not None:
            self._wake(due)
        return fired
