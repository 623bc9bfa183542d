"""Flow control on SQLite: per-key parallelism and rate, with a FIFO waitlist (spec 9.10).

A due message whose key has no capacity when it is claimed moves to the key's waitlist (state
`waiting`) instead of being claimed, so it is not looked at again until capacity returns: when
an attempt of the key ends, when the rate window rolls over (`blocked_until_ms`, which the
engine's timer honours), or when the key is resumed, pinned, unpinned or reset. Waiting messages
are promoted back to `ready` oldest first, at most as many as the key can start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from homing import flow_control
from homing.flow_control import UNLIMITED, RateWindow
from homing.models import FlowControl, FlowKeyInfo
from homing.storage.sqlite.connection import Readers, Writer

UPSERT_KEY = """
INSERT INTO flow_keys (account_id, key, parallelism, rate, period_s, created_ms, window_start_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, key) DO UPDATE SET
    parallelism = CASE WHEN pinned_parallelism THEN parallelism ELSE excluded.parallelism END,
    rate = CASE WHEN pinned_rate THEN rate ELSE excluded.rate END,
    period_s = CASE WHEN pinned_rate THEN period_s ELSE excluded.period_s END
"""
KEY_ROW = """
SELECT parallelism, rate, period_s, paused, rate_count, window_start_ms, pinned_parallelism,
       pinned_rate
FROM flow_keys WHERE account_id = ? AND key = ?
"""
ACTIVE = "SELECT count(*) FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'active'"
WAITING = (
    "SELECT count(*) FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'waiting'"
)
PROMOTE = """
UPDATE messages SET state = 'ready'
WHERE seq IN (
    SELECT seq FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'waiting'
    ORDER BY due_ms, seq LIMIT ?
)
"""


def upsert_key(conn: sqlite3.Connection, account_id: str, flow: FlowControl, now_ms: int) -> None:
    conn.execute(
        UPSERT_KEY,
        (account_id, flow.key, flow.parallelism, flow.rate, flow.period_s, now_ms, now_ms),
    )


def _stored_window(row: Sequence[Any]) -> RateWindow:
    return RateWindow(row[4], row[5])


def capacity(
    conn: sqlite3.Connection, account_id: str, key: str, now_ms: int
) -> tuple[int, int | None]:
    """(deliveries the key may start now, when a rate-exhausted window ends or None), decided
    by `homing.flow_control`; writes back a rate window that rolled over."""
    row = conn.execute(KEY_ROW, (account_id, key)).fetchone()
    if row is None:
        return UNLIMITED, None
    parallelism, rate, period_s, paused = row[0], row[1], row[2], row[3]
    stored = _stored_window(row)
    active = 0 if parallelism is None else conn.execute(ACTIVE, (account_id, key)).fetchone()[0]
    cap = flow_control.capacity(
        paused=bool(paused),
        parallelism=parallelism,
        active=active,
        rate=rate,
        period_s=period_s,
        window=stored,
        now_ms=now_ms,
    )
    if cap.window != stored:
        conn.execute(
            "UPDATE flow_keys SET rate_count = ?, window_start_ms = ? "
            "WHERE account_id = ? AND key = ?",
            (cap.window.count, cap.window.start_ms, account_id, key),
        )
    return cap.free, cap.blocked_until_ms


def started(conn: sqlite3.Connection, account_id: str, key: str, n: int) -> None:
    conn.execute(
        "UPDATE flow_keys SET rate_count = rate_count + ? WHERE account_id = ? AND key = ?",
        (n, account_id, key),
    )


def hold(
    conn: sqlite3.Connection, seqs: list[int], account_id: str, key: str, until: int | None
) -> None:
    """Put messages on the key's waitlist; remember when the rate window reopens."""
    conn.execute(
        f"UPDATE messages SET state = 'waiting' WHERE seq IN ({','.join('?' * len(seqs))})",
        seqs,
    )
    if until is not None:
        conn.execute(
            "UPDATE flow_keys SET blocked_until_ms = ? WHERE account_id = ? AND key = ?",
            (until, account_id, key),
        )


def promote(conn: sqlite3.Connection, account_id: str, key: str, now_ms: int) -> bool:
    """Move waiting messages back to ready, as many as the key can start now."""
    cap, blocked_until = capacity(conn, account_id, key, now_ms)
    conn.execute(
        "UPDATE flow_keys SET blocked_until_ms = ? WHERE account_id = ? AND key = ?",
        (blocked_until, account_id, key),
    )
    if cap <= 0:
        return False
    promoted = conn.execute(PROMOTE, (account_id, key, min(cap, flow_control.PROMOTE_BATCH)))
    return promoted.rowcount > 0


def promote_unblocked(conn: sqlite3.Connection, now_ms: int) -> bool:
    """Promote the waitlists of keys whose rate window has reopened."""
    keys = conn.execute(
        "SELECT account_id, key FROM flow_keys WHERE blocked_until_ms IS NOT NULL "
        "AND blocked_until_ms <= ?",
        (now_ms,),
    ).fetchall()
    moved = False
    for account_id, key in keys:
        moved = promote(conn, account_id, key, now_ms) or moved
    return moved


def next_unblock_ms(conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT min(blocked_until_ms) FROM flow_keys WHERE blocked_until_ms IS NOT NULL"
    ).fetchone()
    return None if row is None else row[0]


def info(conn: sqlite3.Connection, account_id: str, key: str, now_ms: int) -> FlowKeyInfo | None:
    row = conn.execute(KEY_ROW, (account_id, key)).fetchone()
    if row is None:
        return None
    window = flow_control.current_window(_stored_window(row), row[2], now_ms)
    return FlowKeyInfo(
        key=key,
        wait_list_size=conn.execute(WAITING, (account_id, key)).fetchone()[0],
        parallelism_max=row[0] or 0,
        parallelism_count=conn.execute(ACTIVE, (account_id, key)).fetchone()[0],
        rate_max=row[1] or 0,
        rate_count=window.count,
        rate_period_s=row[2],
        rate_period_start_ms=window.start_ms,
        paused=bool(row[3]),
        pinned_parallelism=bool(row[6]),
        pinned_rate=bool(row[7]),
    )


class FlowControlStore:
    """The flow-control part of the storage contract (mixed into SqliteStorage)."""

    _writer: Writer
    _readers: Readers | None

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def _flow_write(self, fn: Callable[[sqlite3.Connection], bool], now_ms: int) -> bool:
        changed = await self._writer.call(fn)
        if changed:
            self._wake(now_ms)
        return changed

    async def get_flow_key(self, account_id: str, key: str, *, now_ms: int) -> FlowKeyInfo | None:
        found: FlowKeyInfo | None = await self._writer.call(
            lambda c: info(c, account_id, key, now_ms)
        )
        return found

    async def list_flow_keys(
        self, account_id: str, *, search: str | None, now_ms: int
    ) -> list[FlowKeyInfo]:
        def run(conn: sqlite3.Connection) -> list[FlowKeyInfo]:
            keys = conn.execute(
                "SELECT key FROM flow_keys WHERE account_id = ? AND instr(key, ?) > 0 ORDER BY key",
                (account_id, search or ""),
            ).fetchall()
            return [i for (k,) in keys if (i := info(conn, account_id, k, now_ms)) is not None]

        found: list[FlowKeyInfo] = await self._writer.call(run)
        return found

    async def set_flow_paused(
        self, account_id: str, key: str, *, paused: bool, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE flow_keys SET paused = ? WHERE account_id = ? AND key = ?",
                (int(paused), account_id, key),
            ).rowcount
            if changed and not paused:
                promote(conn, account_id, key, now_ms)
            return bool(changed)

        return await self._flow_write(run, now_ms)

    async def pin_flow(
        self,
        account_id: str,
        key: str,
        *,
        parallelism: int | None,
        rate: int | None,
        period_s: int | None,
        now_ms: int,
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute(KEY_ROW, (account_id, key)).fetchone() is None:
                return False
            if parallelism is not None:
                conn.execute(
                    "UPDATE flow_keys SET parallelism = ?, pinned_parallelism = 1 "
                    "WHERE account_id = ? AND key = ?",
                    (parallelism, account_id, key),
                )
            if rate is not None or period_s is not None:
                conn.execute(
                    "UPDATE flow_keys SET rate = coalesce(?, rate), "
                    "period_s = coalesce(?, period_s),"
                    " pinned_rate = 1, rate_count = 0, window_start_ms = ? "
                    "WHERE account_id = ? AND key = ?",
                    (rate, period_s, now_ms, account_id, key),
                )
            promote(conn, account_id, key, now_ms)
            return True

        return await self._flow_write(run, now_ms)

    async def unpin_flow(self, account_id: str, key: str, *, parallelism: bool, rate: bool) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "UPDATE flow_keys SET "
                    "pinned_parallelism = CASE WHEN ? THEN 0 ELSE pinned_parallelism END, "
                    "pinned_rate = CASE WHEN ? THEN 0 ELSE pinned_rate END "
                    "WHERE account_id = ? AND key = ?",
                    (int(parallelism), int(rate), account_id, key),
                ).rowcount
            )

        return await self._flow_write(run, 0)

    async def reset_flow_rate(self, account_id: str, key: str, *, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE flow_keys SET rate_count = 0, window_start_ms = ? "
                "WHERE account_id = ? AND key = ?",
                (now_ms, account_id, key),
            ).rowcount
            if changed:
                promote(conn, account_id, key, now_ms)
            return bool(changed)

        return await self._flow_write(run, now_ms)

    async def active_count(self, account_id: str) -> int:
        assert self._readers is not None
        count: int = await self._readers.call(
            lambda c: c.execute(
                "SELECT count(*) FROM messages WHERE account_id = ? AND state = 'active'",
                (account_id,),
            ).fetchone()[0]
        )
        return count
