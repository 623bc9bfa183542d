"""Claiming, leases and outcomes on SQLite (mixed into SqliteStorage).

Claim: inside the writer's transaction (one at a time), the oldest due READY rows are chosen
and set ACTIVE with a lease in one `UPDATE ... RETURNING`, so each due message goes to exactly
one claim. Due messages with a flow-control key are decided first (see `flow.py`): those the
key has no capacity for go to its waitlist instead.

Fencing: an outcome is applied only while the message is ACTIVE with the outcome's lease
token. Outcomes are recorded as decided (`AttemptOutcome.effect`, or `if_canceled` when a
cancel was requested during the attempt), with the messages they create, the queue's next
message admitted and the key's waitlist promoted, in the same transaction.

Claims and outcomes are the hot path: they run inline on the event loop (see `core.py`), under
the byte budget.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

from homing import flow_control, log_events
from homing.models import AttemptOutcome, Claimed, LogState
from homing.storage import codec
from homing.storage.sqlite import flow
from homing.storage.sqlite.core import INLINE_BYTES, Core, EventRow, Q, marks
from homing.storage.sqlite.messages import admit, insert, message

# Ids per `outcome_targets` read: far below SQLite's limit on bound values.
_TARGETS_PER_READ = 500


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def within_budget(candidates: list[Any], budget: int) -> list[Any]:
    """The leading candidates whose bodies (last column) fit in `budget`; never none."""
    total = 0
    for index, row in enumerate(candidates):
        total += row[-1] or 0
        if total > budget and index > 0:
            return candidates[:index]
    return candidates


class DeliveryStore(Core):
    """The delivery part of the storage contract."""

    # -- claiming ---------------------------------------------------------------------------

    def _claim(
        self,
        conn: sqlite3.Connection,
        now_ms: int,
        limit: int,
        node_id: str,
        lease: int,
        token: int,
        due_by: int,
    ) -> list[Any]:
        flow.promote_unblocked(conn, now_ms)
        candidates = within_budget(
            conn.execute(Q["claim_candidates"], (now_ms, due_by, limit)).fetchall(), INLINE_BYTES
        )
        chosen = [seq for seq, _, key, _ in candidates if key is None]
        by_key: dict[tuple[str, str], list[int]] = {}
        for seq, account_id, key, _ in candidates:
            if key is not None:
                by_key.setdefault((account_id, key), []).append(seq)
        for (account_id, key), seqs in by_key.items():
            cap, blocked_until = flow.capacity(conn, account_id, key, now_ms)
            take, wait = flow_control.split(seqs, cap)
            chosen.extend(take)
            if take:
                flow.started(conn, account_id, key, len(take))
            if wait:
                flow.hold(conn, wait, account_id, key, blocked_until)
        if not chosen:
            return []
        sql = Q["claim_seqs"].format(seqs=marks(len(chosen)))
        claimed = conn.execute(sql, (node_id, now_ms + lease, token, *chosen)).fetchall()
        self._events.write(conn, [(r[1], r[0], now_ms, LogState.ACTIVE, None) for r in claimed])
        return claimed

    async def claim_due(
        self,
        *,
        now_ms: int,
        limit: int,
        node_id: str,
        lease_ms: int,
        due_by_ms: int | None = None,
    ) -> list[Claimed]:
        token = secrets.randbits(62)
        due_by = now_ms if due_by_ms is None else max(now_ms, due_by_ms)
        rows = await self._writer.call(
            lambda conn: self._claim(conn, now_ms, limit, node_id, lease_ms, token, due_by),
            inline=True,
        )
        return [Claimed(message(row), token) for row in rows]

    async def cancel_requested(self, message_id: str) -> bool:
        row = await self._read_now(
            lambda c: c.execute(Q["cancel_requested"], (message_id,)).fetchone()
        )
        return row is None or bool(row[0])

    async def next_due_ms(self) -> int | None:
        # On the loop: the claim loop asks after every round; both are index lookups.
        due, unblock = await self._read_now(lambda c: c.execute(Q["next_due"]).fetchone())
        return min((t for t in (due, unblock) if t is not None), default=None)

    async def renew_leases(self, node_id: str, *, until_ms: int) -> int:
        return await self._writer.call(
            lambda c: c.execute(Q["renew_leases"], (until_ms, node_id)).rowcount
        )

    # -- outcomes ---------------------------------------------------------------------------

    def _record_all(
        self, conn: sqlite3.Connection, outcomes: Sequence[AttemptOutcome]
    ) -> list[tuple[bool, int | None]]:
        """Record outcomes in order. The common one (no callbacks, no queue, no flow key) only
        updates its row and logs: those are written together, one statement each per batch;
        any other first writes what was gathered, since it reads rows those writes change (a
        queue's busy count, a key's active count)."""
        results: list[tuple[bool, int | None]] = []
        updates: list[tuple[Any, ...]] = []
        logged: list[EventRow] = []

        def write_gathered() -> None:
            if updates:
                conn.executemany(Q["record_attempt"], updates)
                updates.clear()
            if logged:
                self._events.write(conn, logged)
                logged.clear()

        # Read for the batch at once: recording an outcome changes no other outcome's message.
        targets: dict[str, tuple[Any, ...]] = {}
        ids = [o.message_id for o in outcomes]
        for start in range(0, len(ids), _TARGETS_PER_READ):
            part = ids[start : start + _TARGETS_PER_READ]
            sql = Q["outcome_targets"].format(ids=marks(len(part)))
            targets.update((row[0], row[1:]) for row in conn.execute(sql, part))
        for o in outcomes:
            target = targets.get(o.message_id)
            if target is None or target[0] != o.lease_token:
                results.append((False, None))  # fenced: the lease expired, someone else owns it
                continue
            _, account_id, cancel_requested, slot, flow_key = target
            e = o.effect_for(cancel_requested=bool(cancel_requested))
            t = o.finished_ms
            updates.append(
                (
                    e.state.value,
                    e.due_ms,
                    e.final_ms,
                    e.dlq_id,
                    e.dlq_ms,
                    codec.encode_response(o.response),
                    o.message_id,
                )
            )
            logged.extend((account_id, o.message_id, t, ev.state, ev.info) for ev in e.events)
            earliest = e.due_ms
            if e.new_messages or flow_key is not None or (slot and e.frees_slot):
                write_gathered()
                if e.new_messages:
                    _, due = insert(conn, self._events, e.new_messages, t, 0)
                    earliest = _earliest(earliest, due)
                if flow_key is not None and flow.promote(conn, account_id, flow_key, t):
                    earliest = _earliest(earliest, t)
                if slot and e.frees_slot:
                    earliest = _earliest(earliest, admit(conn, account_id, slot))
            results.append((True, earliest))
        write_gathered()
        return results

    async def record_outcomes(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        stored = sum(
            len(o.response.body) + sum(len(m.body) for m in o.new_messages) for o in outcomes
        )
        results = await self._writer.call(
            lambda conn: self._record_all(conn, outcomes), inline=stored <= INLINE_BYTES
        )
        dues = [due for _, due in results if due is not None]
        if dues:
            self._wake(min(dues))
        return [ok for ok, _ in results]

    # -- releasing --------------------------------------------------------------------------

    def _release(self, conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], now: int) -> int:
        rows = conn.execute(sql, args).fetchall()
        e = log_events.LEASE_RELEASED
        self._events.write(conn, [(account, mid, now, e.state, e.info) for mid, account in rows])
        return len(rows)

    async def release_leases(self, *, node_id: str | None, now_ms: int) -> int:
        args = (now_ms, node_id, node_id)
        count = await self._writer.call(lambda c: self._release(c, Q["release_node"], args, now_ms))
        if count:
            self._wake(now_ms)
        return count

    async def release_expired_leases(self, *, now_ms: int) -> int:
        count = await self._writer.call(
            lambda c: self._release(c, Q["release_expired"], (now_ms, now_ms), now_ms)
        )
        if count:
            self._wake(now_ms)
        return count
