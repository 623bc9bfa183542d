"""Claiming, leases and outcomes on PostgreSQL (mixed into PostgresStorage).

Claim: one statement per batch (`claim` in queries.sql): a CTE selects the oldest due READY rows
`FOR UPDATE SKIP LOCKED`, so concurrent claimers on any node get disjoint rows without waiting
on each other; the same statement sets the lease (owner, expiry, a fresh random token) and logs
ACTIVE. Due messages with a flow-control key come back unclaimed and are decided in a short
transaction holding the key's row lock (see `flow.py`).

Fencing: an outcome is applied only `WHERE state = 'active' AND lease_token = <its token>`.
When a lease expires, `release_expired_leases` clears the token; the next claim sets a new one,
so a node that comes back late with a result changes nothing.

Outcomes: the whole batch is one statement in the common case (no queue slot, no flow key, no
callbacks to insert): one UPDATE from an unnest() of the outcomes, with their events, and a
NOTIFY for retries. Messages that hold a queue slot or a flow-control key, and outcomes that
create messages, are recorded in one transaction that also admits the queue's next message,
promotes the key's waitlist and inserts the new messages.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from homing import flow_control, log_events
from homing.models import AttemptOutcome, Claimed, Effect
from homing.storage import codec
from homing.storage.postgres import flow
from homing.storage.postgres.listener import Announcer
from homing.storage.postgres.messages import Q, admit, insert, json_text, message
from homing.storage.postgres.pool import Conn, Database, affected

RELEASED = log_events.LEASE_RELEASED
_MESSAGE_OFFSET = 3  # claim rows: kind, seq, unblock_ms, then the message columns


def _effect_columns(effects: Sequence[Effect]) -> list[list[Any]]:
    return [
        [e.state.value for e in effects],
        [e.due_ms for e in effects],
        [e.final_ms for e in effects],
        [e.dlq_id for e in effects],
        [e.dlq_ms for e in effects],
    ]


def _earliest(*times: int | None) -> int | None:
    return min((t for t in times if t is not None), default=None)


class DeliveryStore:
    """The delivery part of the storage contract."""

    _db: Database
    _unblock_hint: int | None
    _announcer: Announcer

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    # -- claiming ---------------------------------------------------------------------------

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
        until = now_ms + lease_ms
        due_by = now_ms if due_by_ms is None else max(now_ms, due_by_ms)
        if self._unblock_hint is not None and self._unblock_hint <= now_ms:
            # A rate window has reopened: put its waitlist back in line before choosing.
            await self._promote_unblocked(now_ms)
        rows = await self._claim(now_ms, limit, node_id, until, token, due_by)
        if self._unblock_hint is not None and self._unblock_hint <= now_ms and len(rows) < limit:
            # Another node held messages we did not know about; their window reopened too.
            await self._promote_unblocked(now_ms)
            rows += await self._claim(now_ms, limit - len(rows), node_id, until, token, due_by)
        return [Claimed(message(r, _MESSAGE_OFFSET), token) for r in rows]

    async def cancel_requested(self, message_id: str) -> bool:
        value = await self._db.fetchval(Q["cancel_requested"], message_id)
        return value is None or bool(value)

    async def _claim(
        self, now_ms: int, limit: int, node_id: str, until: int, token: int, due_by: int
    ) -> list[Any]:
        rows = await self._db.fetch(Q["claim"], now_ms, limit, node_id, until, token, due_by)
        claimed = [r for r in rows if r[0] == "claimed"]
        held = [(r["id"], r["account_id"], r["flow_key"]) for r in rows if r[0] == "flow"]
        self._unblock_hint = next((r[2] for r in rows if r[0] == "unblock"), None)
        if held:
            claimed += await self._db.run(
                lambda conn: self._claim_flow(conn, held, now_ms, node_id, until, token)
            )
        claimed.sort(key=lambda r: (r["due_ms"], r["seq"]))
        return claimed

    async def _claim_flow(
        self,
        conn: Conn,
        candidates: list[tuple[str, str, str]],
        now_ms: int,
        node_id: str,
        until: int,
        token: int,
    ) -> list[Any]:
        """Decide on due messages with flow-control keys, holding the keys' row locks."""
        states = await flow.lock(conn, [(account, key) for _, account, key in candidates])
        ready = await conn.fetch(Q["recheck_ready"], [c[0] for c in candidates], now_ms)
        actives = await flow.active_counts(conn, states)
        by_key: dict[tuple[str, str], list[str]] = {}
        for r in ready:
            by_key.setdefault((r[1], r[2]), []).append(r[0])
        chosen: list[str] = []
        held: list[str] = []
        for k, ids in by_key.items():
            state = states.get(k)
            if state is None:
                chosen.extend(ids)
                continue
            cap, blocked_until = flow.capacity(state, actives.get(k, 0), now_ms)
            take, wait = flow_control.split(ids, cap)
            chosen.extend(take)
            state.rate_count += len(take)
            if wait:
                held.extend(wait)
                if blocked_until is not None:
                    state.blocked_until_ms = blocked_until
        await flow.save(conn, states.values())
        if held:
            await conn.execute(Q["hold_waiting"], held)
            blocked = [s.blocked_until_ms for s in states.values() if s.blocked_until_ms]
            if blocked:
                self._unblock_hint = _earliest(self._unblock_hint, *blocked)
        if not chosen:
            return []
        rows: list[Any] = await conn.fetch(Q["claim_ids"], chosen, now_ms, node_id, until, token)
        return rows

    async def _promote_unblocked(self, now_ms: int) -> None:
        moved = await self._db.run(lambda conn: flow.promote_unblocked(conn, now_ms))
        row = await self._db.fetchrow(Q["next_due"])
        self._unblock_hint = row["unblock"]
        if moved:
            self._wake(now_ms)

    async def next_due_ms(self) -> int | None:
        row = await self._db.fetchrow(Q["next_due"])
        self._unblock_hint = row["unblock"]
        return _earliest(row["due"], row["unblock"])

    async def renew_leases(self, node_id: str, *, until_ms: int) -> int:
        return affected(await self._db.execute(Q["renew_leases"], until_ms, node_id))

    # -- outcomes ---------------------------------------------------------------------------

    @staticmethod
    def _outcome_args(
        outcomes: Sequence[AttemptOutcome], everything: bool, announce: bool
    ) -> list[Any]:
        """The parameters of `record_outcomes`: both decided branches of each outcome."""
        decided = [o.effect for o in outcomes]
        canceled = [o.if_canceled for o in outcomes]
        ev_ord: list[int] = []
        ev_branch: list[bool | None] = []
        ev_state: list[str] = []
        ev_info: list[str | None] = []
        for ord_, o in enumerate(outcomes, start=1):
            same = o.effect.events == o.if_canceled.events
            branches = ((None, o.effect),) if same else ((False, o.effect), (True, o.if_canceled))
            for branch, effect in branches:
                for event in effect.events:
                    ev_ord.append(ord_)
                    ev_branch.append(branch)
                    ev_state.append(event.state.value)
                    ev_info.append(json_text(event.info))
        return [
            [o.message_id for o in outcomes],
            [o.lease_token for o in outcomes],
            [o.finished_ms for o in outcomes],
            [codec.encode_response(o.response) for o in outcomes],
            [o.response.status for o in outcomes],
            *_effect_columns(decided),
            *_effect_columns(canceled),
            ev_ord,
            ev_branch,
            ev_state,
            ev_info,
            everything,
            announce,
        ]

    async def _record_all(
        self, conn: Conn, outcomes: Sequence[AttemptOutcome], announce: bool
    ) -> tuple[list[bool], int | None]:
        """Record outcomes with everything they entail, in the caller's transaction."""
        args = self._outcome_args(outcomes, True, announce)
        rows = await conn.fetch(Q["record_outcomes"], *args)
        applied = [bool(r["applied"]) for r in rows]
        earliest = _earliest(*(r["due_ms"] for r in rows if r["state"] == "ready"))
        effects = [
            o.effect_for(cancel_requested=r["cancel_requested"]) if r["applied"] else None
            for o, r in zip(outcomes, rows, strict=True)
        ]
        new = [
            (m, o.finished_ms)
            for o, e in zip(outcomes, effects, strict=True)
            if e is not None
            for m in e.new_messages
        ]
        if new:
            _, due = await insert(
                conn,
                [m for m, _ in new],
                max(t for _, t in new),
                0,
                [t for _, t in new],
                announce=announce,
            )
            earliest = _earliest(earliest, due)
        latest: dict[tuple[str, str], int] = {}
        for o, r in zip(outcomes, rows, strict=True):
            if r["applied"] and r["flow_key"] is not None:
                k = (r["account_id"], r["flow_key"])
                latest[k] = max(latest.get(k, o.finished_ms), o.finished_ms)
        for k, t in sorted(latest.items()):
            if await flow.promote(conn, [k], t):
                earliest = _earliest(earliest, t)
        slots = [
            (r["account_id"], r["queue_slot"])
            for r, e in zip(rows, effects, strict=True)
            if e is not None and r["queue_slot"] and e.frees_slot
        ]
        earliest = _earliest(earliest, await admit(conn, slots, announce=announce))
        return applied, earliest

    async def record_outcomes(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        if not outcomes:
            return []
        # Work made claimable (a retry, new messages) is announced to other nodes.
        creates = any(o.effect.due_ms is not None or o.new_messages for o in outcomes)
        announce = creates and self._announcer.inline()
        if any(o.new_messages for o in outcomes):
            applied, earliest = await self._db.run(
                lambda conn: self._record_all(conn, outcomes, announce)
            )
        else:
            # The common case in one autocommit statement; messages that hold a queue slot or
            # a flow key are left alone by it and recorded in a transaction of their own.
            args = self._outcome_args(outcomes, False, announce)
            rows = await self._db.fetch(Q["record_outcomes"], *args)
            applied = [bool(r["applied"]) for r in rows]
            earliest = _earliest(*(r["due_ms"] for r in rows if r["state"] == "ready"))
            deferred = [i for i, r in enumerate(rows) if r["deferred"]]
            if deferred:
                later = [outcomes[i] for i in deferred]
                done, due = await self._db.run(lambda conn: self._record_all(conn, later, announce))
                for i, ok in zip(deferred, done, strict=True):
                    applied[i] = ok
                earliest = _earliest(earliest, due)
        self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return applied

    # -- releasing --------------------------------------------------------------------------

    async def release_leases(self, *, node_id: str | None, now_ms: int) -> int:
        row = await self._db.fetchrow(
            Q["release_node"], now_ms, node_id, RELEASED.state.value, json_text(RELEASED.info)
        )
        count: int = row["n"]
        if count:
            self._wake(now_ms)
        return count

    async def release_expired_leases(self, *, now_ms: int) -> int:
        row = await self._db.fetchrow(
            Q["release_expired"], now_ms, RELEASED.state.value, json_text(RELEASED.info)
        )
        count: int = row["n"]
        if count:
            self._wake(now_ms)
        return count
