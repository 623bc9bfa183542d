"""Statistics for the console and metrics on PostgreSQL (mixed into PostgresStorage).

Time ranges are on the events' own `time_ms` (a BRIN index keeps that cheap), the same instant
SQLite's ids encode.
"""

from __future__ import annotations

from homing.models import MessageState
from homing.storage.postgres.messages import Q
from homing.storage.postgres.pool import Conn, Database


class StatsStore:
    """The statistics part of the storage contract."""

    _db: Database

    async def event_counts(
        self, account_id: str | None, *, since_ms: int, bucket_ms: int
    ) -> list[tuple[int, str, int]]:
        rows = await self._db.fetch(Q["event_counts"], bucket_ms, since_ms, account_id)
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def state_counts(self, account_id: str | None) -> dict[str, int]:
        async def run(conn: Conn) -> dict[str, int]:
            out = {s.value: 0 for s in MessageState}
            for state, n in await conn.fetch(Q["state_counts"], account_id):
                out[state] = n
            out["dlq"] = await conn.fetchval(Q["dlq_count"], account_id)
            return out

        return await self._db.run(run, transaction=False)

    async def delivery_latencies(
        self, account_id: str | None, *, since_ms: int, limit: int
    ) -> list[int]:
        rows = await self._db.fetch(Q["delivery_latencies"], since_ms, account_id, limit)
        return [max(0, int(r[0])) for r in rows]
