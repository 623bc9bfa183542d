"""Flow control on SQLite: per-key parallelism and rate, with a FIFO waitlist.

A due message whose key has no capacity when it is claimed moves to the key's waitlist (state
`waiting`) instead of being claimed, so it is not looked at again until capacity returns: when
an attempt of the key ends, when the rate window rolls over (`blocked_until_ms`, which the
engine's timer honours), or when the key is resumed, pinned, unpinned or reset. Waiting messages
are promoted back to `ready` oldest first, at most as many as the key can start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from homing import flow_control
from homing.flow_control import UNLIMITED, RateWindow
from homing.models import FlowControl, FlowKeyInfo
from homing.storage.sqlite.core import Core, Q, marks


def upsert_key(conn: sqlite3.Connection, account_id: str, flow: FlowControl, now_ms: int) -> None:
    conn.execute(
        Q["flow_ensure"],
        (account_id, flow.key, flow.parallelism, flow.rate, flow.period_s, now_ms, now_ms),
    )


def _stored_window(row: Sequence[Any]) -> RateWindow:
    return RateWindow(row[4], row[5])


def capacity(
    conn: sqlite3.Connection, account_id: str, key: str, now_ms: int
) -> tuple[int, int | None]:
    """(deliveries the key may start now, when a rate-exhausted window ends or None), decided
    by `homing.flow_control`; writes back a rate window that rolled over."""
    row = conn.execute(Q["flow_key"], (account_id, key)).fetchone()
    if row is None:
        return UNLIMITED, None
    parallelism, rate, period_s, paused = row[0], row[1], row[2], row[3]
    stored = _stored_window(row)
    active = 0
    if parallelism is not None:
        active = conn.execute(Q["flow_active"], (account_id, key)).fetchone()[0]
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
        window = cap.window
        conn.execute(Q["flow_save_window"], (window.count, window.start_ms, account_id, key))
    return cap.free, cap.blocked_until_ms


def started(conn: sqlite3.Connection, account_id: str, key: str, n: int) -> None:
    conn.execute(Q["flow_started"], (n, account_id, key))


def hold(
    conn: sqlite3.Connection, seqs: list[int], account_id: str, key: str, until: int | None
) -> None:
    """Put messages on the key's waitlist; remember when the rate window reopens."""
    conn.execute(Q["hold_waiting"].format(seqs=marks(len(seqs))), seqs)
    if until is not None:
        conn.execute(Q["flow_block"], (until, account_id, key))


def promote(conn: sqlite3.Connection, account_id: str, key: str, now_ms: int) -> bool:
    """Move waiting messages back to ready, as many as the key can start now."""
    cap, blocked_until = capacity(conn, account_id, key, now_ms)
    conn.execute(Q["flow_block"], (blocked_until, account_id, key))
    if cap <= 0:
        return False
    count = min(cap, flow_control.PROMOTE_BATCH)
    return conn.execute(Q["flow_promote"], (account_id, key, count)).rowcount > 0


def promote_unblocked(conn: sqlite3.Connection, now_ms: int) -> bool:
    """Promote the waitlists of keys whose rate window has reopened."""
    moved = False
    for account_id, key in conn.execute(Q["flow_unblocked"], (now_ms,)).fetchall():
        moved = promote(conn, account_id, key, now_ms) or moved
    return moved


def info(conn: sqlite3.Connection, account_id: str, key: str, now_ms: int) -> FlowKeyInfo | None:
    row = conn.execute(Q["flow_key"], (account_id, key)).fetchone()
    if row is None:
        return None
    window = flow_control.current_window(_stored_window(row), row[2], now_ms)
    return FlowKeyInfo(
        key=key,
        wait_list_size=conn.execute(Q["flow_waiting"], (account_id, key)).fetchone()[0],
        parallelism_max=row[0] or 0,
        parallelism_count=conn.execute(Q["flow_active"], (account_id, key)).fetchone()[0],
        rate_max=row[1] or 0,
        rate_count=window.count,
        rate_period_s=row[2],
        rate_period_start_ms=window.start_ms,
        paused=bool(row[3]),
        pinned_parallelism=bool(row[6]),
        pinned_rate=bool(row[7]),
    )


class FlowControlStore(Core):
    """The flow-control part of the storage contract."""

    async def _flow_write(self, fn: Callable[[sqlite3.Connection], bool], now_ms: int) -> bool:
        changed = await self._writer.call(fn)
        if changed:
            self._wake(now_ms)
        return changed

    async def get_flow_key(self, account_id: str, key: str, *, now_ms: int) -> FlowKeyInfo | None:
        return await self._writer.call(lambda c: info(c, account_id, key, now_ms))

    async def list_flow_keys(
        self, account_id: str, *, search: str | None, now_ms: int
    ) -> list[FlowKeyInfo]:
        def run(conn: sqlite3.Connection) -> list[FlowKeyInfo]:
            keys = conn.execute(Q["flow_list"], (account_id, search or "")).fetchall()
            return [i for (k,) in keys if (i := info(conn, account_id, k, now_ms)) is not None]

        return await self._writer.call(run)

    async def set_flow_paused(
        self, account_id: str, key: str, *, paused: bool, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(Q["flow_set_paused"], (int(paused), account_id, key)).rowcount
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
            if conn.execute(Q["flow_key"], (account_id, key)).fetchone() is None:
                return False
            if parallelism is not None:
                conn.execute(Q["flow_pin_parallelism"], (parallelism, account_id, key))
            if rate is not None or period_s is not None:
                conn.execute(Q["flow_pin_rate"], (rate, period_s, now_ms, account_id, key))
            promote(conn, account_id, key, now_ms)
            return True

        return await self._flow_write(run, now_ms)

    async def unpin_flow(self, account_id: str, key: str, *, parallelism: bool, rate: bool) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            args = (int(parallelism), int(rate), account_id, key)
            return bool(conn.execute(Q["flow_unpin"], args).rowcount)

        return await self._flow_write(run, 0)

    async def reset_flow_rate(self, account_id: str, key: str, *, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(Q["flow_reset_rate"], (now_ms, account_id, key)).rowcount
            if changed:
                promote(conn, account_id, key, now_ms)
            return bool(changed)

        return await self._flow_write(run, now_ms)

    async def active_count(self, account_id: str) -> int:
        row = await self._read(lambda c: c.execute(Q["active_count"], (account_id,)).fetchone())
        count: int = row[0]
        return count
