"""Statistics for the console and metrics on SQLite (mixed into SqliteStorage).

Time ranges are id ranges on `events`: an entry's id is never below `time_ms * 1000` (see
`core.EventLog`), so a lower time bound is also a lower id bound, which the primary key serves.
"""

from __future__ import annotations

import sqlite3

from homing.models import MessageState
from homing.storage.sqlite.core import Core, Q


class StatsStore(Core):
    """The statistics part of the storage contract."""

    async def event_counts(
        self, account_id: str | None, *, since_ms: int, bucket_ms: int
    ) -> list[tuple[int, str, int]]:
        args = (bucket_ms, bucket_ms, since_ms * 1000, since_ms, account_id, account_id)
        rows = await self._read(lambda c: c.execute(Q["event_counts"], args).fetchall())
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def state_counts(self, account_id: str | None) -> dict[str, int]:
        # Separate queries with and without an account, so that the account's index serves
        # the first (an `? IS NULL OR` condition would make SQLite scan every message).
        args: tuple[str, ...]
        if account_id is None:
            states, dlq, args = Q["state_counts_all"], Q["dlq_count_all"], ()
        else:
            states, dlq, args = Q["state_counts"], Q["dlq_count"], (account_id,)

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out = {s.value: 0 for s in MessageState}
            for state, n in conn.execute(states, args):
                out[state] = n
            out["dlq"] = conn.execute(dlq, args).fetchone()[0]
            return out

        return await self._read(run)

    async def delivery_latencies(
        self, account_id: str | None, *, since_ms: int, limit: int
    ) -> list[int]:
        args = (since_ms * 1000, since_ms, account_id, account_id, limit)
        rows = await self._read(lambda c: c.execute(Q["delivery_latencies"], args).fetchall())
        return [max(0, int(r[0])) for r in rows]
