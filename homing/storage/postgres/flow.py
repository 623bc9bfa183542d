"""Flow control on PostgreSQL: per-key parallelism and rate, with a FIFO waitlist.

The same design as `homing.storage.sqlite.flow`, made global: a due message whose key has no
capacity when it is claimed moves to the key's waitlist (state `waiting`) instead of being
claimed, and is promoted back to `ready` (oldest first, at most as many as the key can start)
when an attempt of the key ends, when the rate window rolls over (`blocked_until_ms`), or when
the key is resumed, pinned, unpinned or reset.

Every decision that counts a key's deliveries first locks the key's row (`FOR UPDATE`, in key
order), then counts in a new statement, so it sees what the previous lock holder committed:
two nodes can never both start the last free slot of a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homing import flow_control
from homing.flow_control import RateWindow
from homing.models import FlowKeyInfo
from homing.storage.postgres.messages import Q
from homing.storage.postgres.pool import Conn, Database

Key = tuple[str, str]  # (account_id, key)


@dataclass(slots=True)
class KeyState:
    """A locked flow_keys row, changed in memory and written back by `save`."""

    account_id: str
    key: str
    parallelism: int | None
    rate: int | None
    period_s: int
    paused: bool
    rate_count: int
    window_start_ms: int
    blocked_until_ms: int | None


async def lock(conn: Conn, keys: Iterable[Key]) -> dict[Key, KeyState]:
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = await conn.fetch(Q["flow_lock"], [k[0] for k in ordered], [k[1] for k in ordered])
    return {(r[0], r[1]): KeyState(*r) for r in rows}


async def active_counts(conn: Conn, keys: Iterable[Key]) -> dict[Key, int]:
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    rows = await conn.fetch(Q["flow_active"], [k[0] for k in ordered], [k[1] for k in ordered])
    return {(r[0], r[1]): r[2] for r in rows}


def capacity(state: KeyState, active: int, now_ms: int) -> tuple[int, int | None]:
    """(deliveries the key may start now, when a rate-exhausted window ends or None), decided
    by `homing.flow_control`. Rolls the rate window over in `state` when its period has passed."""
    cap = flow_control.capacity(
        paused=state.paused,
        parallelism=state.parallelism,
        active=active,
        rate=state.rate,
        period_s=state.period_s,
        window=RateWindow(state.rate_count, state.window_start_ms),
        now_ms=now_ms,
    )
    state.rate_count, state.window_start_ms = cap.window.count, cap.window.start_ms
    return cap.free, cap.blocked_until_ms


async def save(conn: Conn, states: Iterable[KeyState]) -> None:
    rows = list(states)
    if rows:
        await conn.execute(
            Q["flow_save"],
            [s.account_id for s in rows],
            [s.key for s in rows],
            [s.rate_count for s in rows],
            [s.window_start_ms for s in rows],
            [s.blocked_until_ms for s in rows],
        )


async def promote(conn: Conn, keys: Iterable[Key], now_ms: int) -> int:
    """Move waiting messages back to ready, as many as each key can start now; returns how many
    moved (and notifies when any did)."""
    states = await lock(conn, keys)
    if not states:
        return 0
    actives = await active_counts(conn, states)
    quota: list[tuple[Key, int]] = []
    for k, state in states.items():
        cap, state.blocked_until_ms = capacity(state, actives.get(k, 0), now_ms)
        if cap > 0:
            quota.append((k, min(cap, flow_control.PROMOTE_BATCH)))
    await save(conn, states.values())
    if not quota:
        return 0
    moved: int = await conn.fetchval(
        Q["flow_promote"],
        [k[0] for k, _ in quota],
        [k[1] for k, _ in quota],
        [n for _, n in quota],
        now_ms,
    )
    return moved


async def promote_unblocked(conn: Conn, now_ms: int) -> int:
    """Promote the waitlists of keys whose rate window has reopened."""
    rows = await conn.fetch(Q["flow_unblocked"], now_ms)
    return await promote(conn, [(r[0], r[1]) for r in rows], now_ms)


def _info(row: Any, now_ms: int) -> FlowKeyInfo:
    window = flow_control.current_window(RateWindow(row[5], row[6]), row[3], now_ms)
    return FlowKeyInfo(
        key=row[0],
        wait_list_size=row[9],
        parallelism_max=row[1] or 0,
        parallelism_count=row[10],
        rate_max=row[2] or 0,
        rate_count=window.count,
        rate_period_s=row[3],
        rate_period_start_ms=window.start_ms,
        paused=row[4],
        pinned_parallelism=row[7],
        pinned_rate=row[8],
    )


class FlowControlStore:
    """The flow-control part of the storage contract (mixed into PostgresStorage)."""

    _db: Database

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def _flow_write(self, fn: Callable[[Conn], Awaitable[bool]], now_ms: int) -> bool:
        changed = await self._db.run(fn)
        if changed:
            self._wake(now_ms)
        return changed

    async def get_flow_key(self, account_id: str, key: str, *, now_ms: int) -> FlowKeyInfo | None:
        row = await self._db.fetchrow(Q["flow_info"], account_id, key, None)
        return None if row is None else _info(row, now_ms)

    async def list_flow_keys(
        self, account_id: str, *, search: str | None, now_ms: int
    ) -> list[FlowKeyInfo]:
        rows = await self._db.fetch(Q["flow_info"], account_id, None, search or "")
        return [_info(r, now_ms) for r in rows]

    async def set_flow_paused(
        self, account_id: str, key: str, *, paused: bool, now_ms: int
    ) -> bool:
        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(Q["flow_set_paused"], account_id, key, paused)
            if found is not None and not paused:
                await promote(conn, [(account_id, key)], now_ms)
            return found is not None

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
        async def run(conn: Conn) -> bool:
            if not await lock(conn, [(account_id, key)]):
                return False
            if parallelism is not None:
                await conn.execute(Q["flow_pin_parallelism"], account_id, key, parallelism)
            if rate is not None or period_s is not None:
                await conn.execute(Q["flow_pin_rate"], account_id, key, rate, period_s, now_ms)
            await promote(conn, [(account_id, key)], now_ms)
            return True

        return await self._flow_write(run, now_ms)

    async def unpin_flow(self, account_id: str, key: str, *, parallelism: bool, rate: bool) -> bool:
        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(Q["flow_unpin"], account_id, key, parallelism, rate)
            return found is not None

        return await self._flow_write(run, 0)

    async def reset_flow_rate(self, account_id: str, key: str, *, now_ms: int) -> bool:
        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(Q["flow_reset_rate"], account_id, key, now_ms)
            if found is not None:
                await promote(conn, [(account_id, key)], now_ms)
            return found is not None

        return await self._flow_write(run, now_ms)

    async def active_count(self, account_id: str) -> int:
        count: int = await self._db.fetchval(Q["active_count"], account_id)
        return count
