"""Schedules on SQLite (mixed into SqliteStorage).

Each fire is a row in `schedule_fires` keyed by (schedule, tick): the database, not the
scheduler's good behaviour, is what guarantees one fire per tick.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from homing.models import (
    InsertResult,
    NewMessage,
    Schedule,
    ScheduleState,
)
from homing.storage import codec
from homing.storage.sqlite.connection import Readers, Writer

COLUMNS = (
    "id, account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s, queue_name, "
    "labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids, error, version"
)


def _last_states(conn: sqlite3.Connection, raw_ids: str | None) -> dict[str, ScheduleState]:
    ids = orjson.loads(raw_ids) if raw_ids else []
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT id, state FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids
    ).fetchall()
    return codec.schedule_states(ids, dict(rows))


def _schedule(conn: sqlite3.Connection, row: Sequence[Any], *, states: bool) -> Schedule:
    return codec.decode_schedule(row, _last_states(conn, row[16]) if states else {})


class ScheduleStore:
    """The schedule part of the storage contract."""

    _writer: Writer
    _readers: Readers | None

    if TYPE_CHECKING:  # provided by SqliteStorage / Storage; declared for the type checker only

        def _insert(
            self,
            conn: sqlite3.Connection,
            messages: Sequence[NewMessage],
            now_ms: int,
            dedup_window_ms: int,
        ) -> tuple[list[InsertResult], int | None]: ...

        def _wake(self, due_ms: int) -> None: ...

        async def _read(self, fn: Any) -> Any: ...

    async def upsert_schedule(self, schedule: Schedule) -> None:
        s = schedule

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO schedules (account_id, id, cron, destination, body, spec, created_ms,"
                " version, caller_ip, delay_s, queue_name, labels, flow_key, flow, paused,"
                " next_fire_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, id) DO UPDATE SET cron = excluded.cron, "
                "destination = excluded.destination, body = excluded.body, spec = excluded.spec,"
                " version = schedules.version + 1, caller_ip = excluded.caller_ip, "
                "delay_s = excluded.delay_s, queue_name = excluded.queue_name, "
                "labels = excluded.labels, flow_key = excluded.flow_key, flow = excluded.flow, "
                "paused = excluded.paused, next_fire_ms = excluded.next_fire_ms, error = NULL",
                (
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
                ),
            )

        await self._writer.call(run)
        if s.next_fire_ms is not None:
            self._wake(s.next_fire_ms)

    async def get_schedule(self, account_id: str, schedule_id: str) -> Schedule | None:
        def run(conn: sqlite3.Connection) -> Schedule | None:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM schedules WHERE account_id = ? AND id = ?",
                (account_id, schedule_id),
            ).fetchone()
            return None if row is None else _schedule(conn, row, states=True)

        found: Schedule | None = await self._read(run)
        return found

    async def list_schedules(self, account_id: str) -> list[Schedule]:
        def run(conn: sqlite3.Connection) -> list[Schedule]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM schedules WHERE account_id = ? ORDER BY created_ms, id",
                (account_id,),
            ).fetchall()
            return [_schedule(conn, r, states=True) for r in rows]

        found: list[Schedule] = await self._read(run)
        return found

    async def delete_schedule(self, account_id: str, schedule_id: str) -> bool:
        count: int = await self._writer.call(
            lambda c: (
                c.execute(
                    "DELETE FROM schedules WHERE account_id = ? AND id = ?",
                    (account_id, schedule_id),
                ).rowcount
            )
        )
        return bool(count)

    async def set_schedule_paused(
        self, account_id: str, schedule_id: str, *, paused: bool, next_fire_ms: int | None
    ) -> bool:
        count: int = await self._writer.call(
            lambda c: (
                c.execute(
                    "UPDATE schedules SET paused = ?, next_fire_ms = coalesce(?, next_fire_ms), "
                    "version = version + 1 WHERE account_id = ? AND id = ?",
                    (int(paused), next_fire_ms, account_id, schedule_id),
                ).rowcount
            )
        )
        if count and not paused and next_fire_ms is not None:
            self._wake(next_fire_ms)
        return bool(count)

    async def due_schedules(self, *, now_ms: int, limit: int) -> list[Schedule]:
        def run(conn: sqlite3.Connection) -> list[Schedule]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_ms <= ? "
                "ORDER BY next_fire_ms LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            return [_schedule(conn, r, states=False) for r in rows]

        found: list[Schedule] = await self._read(run)
        return found

    async def next_schedule_ms(self) -> int | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT min(next_fire_ms) FROM schedules WHERE paused = 0"
            ).fetchone()
        )
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
        def run(conn: sqlite3.Connection) -> tuple[bool, int | None]:
            row = conn.execute(
                "SELECT version, paused FROM schedules WHERE account_id = ? AND id = ?",
                (schedule.account_id, schedule.id),
            ).fetchone()
            if row is None or row[1] or row[0] != schedule.version:
                return False, None  # deleted, paused or replaced since it was read
            if tick_ms is None:
                conn.execute(
                    "UPDATE schedules SET next_fire_ms = ? WHERE account_id = ? AND id = ?",
                    (next_fire_ms, schedule.account_id, schedule.id),
                )
                return False, None
            fresh = conn.execute(
                "INSERT OR IGNORE INTO schedule_fires (account_id, schedule_id, tick_ms, fired_ms)"
                " VALUES (?, ?, ?, ?)",
                (schedule.account_id, schedule.id, tick_ms, now_ms),
            ).rowcount
            if not fresh:
                return False, None
            results, due = self._insert(conn, messages, now_ms, 0) if messages else ([], None)
            conn.execute(
                "UPDATE schedules SET last_fire_ms = ?, next_fire_ms = ?, last_message_ids = ?, "
                "error = ? WHERE account_id = ? AND id = ?",
                (
                    tick_ms,
                    next_fire_ms,
                    orjson.dumps([r.message_id for r in results]).decode(),
                    error,
                    schedule.account_id,
                    schedule.id,
                ),
            )
            return True, due

        fired, due = await self._writer.call(run)
        if due is not None:
            self._wake(due)
        return bool(fired)
