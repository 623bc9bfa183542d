"""Messages on PostgreSQL: decoding, the insert path, queue admission, the event log,
cancelling, the DLQ and the log (mixed into PostgresStorage).

The module functions run on a connection the caller provides, inside the caller's transaction,
so that an operation (a publish, an outcome with its callbacks, a schedule fire) stays atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from homing import log_events
from homing.models import (
    InsertResult,
    Lease,
    LogEntry,
    LogState,
    Message,
    MessageFilter,
    MessageState,
    NewMessage,
    Page,
)
from homing.storage import codec, handoff
from homing.storage.handoff import eligible
from homing.storage.postgres.filters import Params, compose, message_where
from homing.storage.postgres.listener import Announcer
from homing.storage.postgres.pool import Conn, Database
from homing.storage.queries import load_queries

if TYPE_CHECKING:  # batch.py builds on this module's `insert`
    from homing.storage.base import Taker
    from homing.storage.postgres.batch import InsertBatcher

Q = load_queries("homing.storage.postgres")

# `message()` decodes these columns, in this order (as the SQLite backend does): id, account_id,
# url, body, spec, state, created_ms, not_before_ms, due_ms, attempts, caller_ip, queue_name,
# topic_name, endpoint_name, schedule_id, labels, flow_key, flow, cancel_requested, dlq_id,
# dlq_ms, last_response, final_ms. The queries that return messages list them so.

EventRow = tuple[str, str, int, LogState, dict[str, Any] | None]


def message(row: Any, offset: int = 0) -> Message:
    r = offset
    return Message(
        id=row[r],
        account_id=row[r + 1],
        url=row[r + 2],
        body=bytes(row[r + 3]),
        spec=codec.decode_spec(row[r + 4]),
        state=MessageState(row[r + 5]),
        created_ms=row[r + 6],
        not_before_ms=row[r + 7],
        due_ms=row[r + 8],
        attempts=row[r + 9],
        caller_ip=row[r + 10],
        queue_name=row[r + 11],
        topic_name=row[r + 12],
        endpoint_name=row[r + 13],
        schedule_id=row[r + 14],
        labels=codec.decode_labels(row[r + 15]),
        flow=codec.decode_flow(row[r + 16], row[r + 17]),
        cancel_requested=bool(row[r + 18]),
        dlq_id=row[r + 19],
        dlq_ms=row[r + 20],
        last_response=codec.decode_response(row[r + 21]),
        final_ms=row[r + 22],
    )


def json_text(info: dict[str, Any] | None) -> str | None:
    return orjson.dumps(info).decode() if info else None


async def write_events(conn: Conn, rows: Sequence[EventRow]) -> None:
    """Append events in the given order (ids increase in that order)."""
    if not rows:
        return
    await conn.execute(
        Q["log_events"],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3].value for r in rows],
        [json_text(r[4]) for r in rows],
    )


def is_plain(messages: Sequence[NewMessage]) -> bool:
    """True when inserting needs no dedup check, queue or flow key: one autocommit statement."""
    return all(m.dedup_key is None and m.queue_name is None and m.flow is None for m in messages)


def _earliest(*times: int | None) -> int | None:
    return min((t for t in times if t is not None), default=None)


async def admit(
    conn: Conn, queues: Iterable[tuple[str, str]], *, announce: bool = True
) -> int | None:
    """Let queued messages of these queues start, in FIFO order, up to each one's parallelism.

    Locks the queue rows first (in order), so the busy count it reads is current and two nodes
    never admit past the limit together. Returns the earliest due time admitted (NOTIFY-ed
    with the transaction when `announce`)."""
    keys = sorted(set(queues))
    if not keys:
        return None
    accounts, names = [k[0] for k in keys], [k[1] for k in keys]
    await conn.fetch(Q["lock_queues"], accounts, names)
    due: int | None = await conn.fetchval(Q["admit"], accounts, names, announce)
    return due


async def _deduplicate(
    conn: Conn, messages: Sequence[NewMessage], now_ms: int, window_ms: int
) -> list[InsertResult | None]:
    """Claim dedup keys; the result of each message that must not be stored (else None)."""
    results: list[InsertResult | None] = [None] * len(messages)
    claimant: dict[tuple[str, str], int] = {}  # key -> the message that claims it
    for i, m in enumerate(messages):
        if m.dedup_key is None:
            continue
        key = (m.account_id, m.dedup_key)
        # With a window, the first message of a batch holds the key for the others. Without
        # one, a key expires at once: each message replaces the last, so the last one claims.
        if window_ms <= 0 or key not in claimant:
            claimant[key] = i
    if not claimant:
        return results
    keys = sorted(claimant)
    taken_rows = await conn.fetch(
        Q["dedup_claim"],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [messages[claimant[k]].id for k in keys],
        now_ms + window_ms,
        now_ms,
    )
    taken = {(r[0], r[1]) for r in taken_rows}
    original: dict[tuple[str, str], str] = {}
    missing = [k for k in keys if k not in taken]
    if missing:
        rows = await conn.fetch(
            Q["dedup_originals"], [k[0] for k in missing], [k[1] for k in missing]
        )
        original = {(r[0], r[1]): r[2] for r in rows}
    for i, m in enumerate(messages):
        if m.dedup_key is None:
            continue
        key = (m.account_id, m.dedup_key)
        if key not in taken:
            results[i] = InsertResult(original.get(key, m.id), m.url, deduplicated=True)
        elif window_ms > 0 and claimant[key] != i:
            results[i] = InsertResult(messages[claimant[key]].id, m.url, deduplicated=True)
    return results


async def _ensure_flow_keys(conn: Conn, messages: Sequence[NewMessage], now_ms: int) -> None:
    latest: dict[tuple[str, str], Any] = {}
    for m in messages:
        if m.flow is not None:
            latest[(m.account_id, m.flow.key)] = m.flow  # the last message's settings win
    if not latest:
        return
    keys = sorted(latest)
    await conn.execute(
        Q["flow_ensure"],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [latest[k].parallelism for k in keys],
        [latest[k].rate for k in keys],
        [latest[k].period_s for k in keys],
        now_ms,
    )


async def insert(
    conn: Conn,
    messages: Sequence[NewMessage],
    now_ms: int,
    dedup_window_ms: int,
    event_times: Sequence[int] | None = None,
    *,
    announce: bool = True,
    lease: Lease | None = None,
    taken: list[NewMessage] | None = None,
) -> tuple[list[InsertResult], int | None]:
    """Store messages and log CREATED (at `event_times`, one per message, else `now_ms`);
    returns (results in input order, earliest claimable due, NOTIFY-ed when `announce`).
    With `lease`, up to `lease.slots` messages that `handoff.eligible` allows are stored ACTIVE
    under it instead (logged CREATED, then ACTIVE); `taken` is set to them.

    Runs in the caller's transaction; only `is_plain(messages)` batches may run without one."""
    if taken is not None:
        taken.clear()  # a transaction retried after a deadlock starts over
    if not messages:
        return [], None
    results = await _deduplicate(conn, messages, now_ms, dedup_window_ms)
    kept = [
        (m, now_ms if event_times is None else event_times[i])
        for i, (m, r) in enumerate(zip(messages, results, strict=True))
        if r is None
    ]
    keep = [m for m, _ in kept]
    if not keep:
        return [r for r in results if r is not None], None
    queues = sorted({(m.account_id, m.queue_name) for m in keep if m.queue_name is not None})
    if queues:
        await conn.execute(
            Q["ensure_queues"], [q[0] for q in queues], [q[1] for q in queues], now_ms
        )
    await _ensure_flow_keys(conn, keep, now_ms)
    leased = [False] * len(keep)
    if lease is not None and taken is not None:
        for i, m in enumerate(keep):
            if len(taken) < lease.slots and eligible(m, now_ms):
                leased[i] = True
                taken.append(m)
    ready_due = _earliest(
        *(
            m.not_before_ms
            for m, held in zip(keep, leased, strict=True)
            if not held and m.queue_name is None
        )
    )
    parts = [codec.url_parts(m.url) for m in keep]
    await conn.execute(
        Q["insert_messages"],
        [m.id for m in keep],
        [m.account_id for m in keep],
        [
            MessageState.ACTIVE.value
            if held
            else MessageState.QUEUED.value
            if m.queue_name is not None
            else MessageState.READY.value
            for m, held in zip(keep, leased, strict=True)
        ],
        [m.created_ms for m in keep],
        [m.not_before_ms for m in keep],
        [m.url for m in keep],
        [p[0] for p in parts],
        [p[1] for p in parts],
        [m.caller_ip for m in keep],
        [m.queue_name for m in keep],
        [m.queue_name or m.queue_slot for m in keep],
        [m.topic_name for m in keep],
        [m.endpoint_name for m in keep],
        [m.schedule_id for m in keep],
        [codec.encode_labels(m.labels) for m in keep],
        [m.flow.key if m.flow else None for m in keep],
        [codec.encode_flow(m.flow) for m in keep],
        [codec.encode_spec(m.spec) for m in keep],
        [m.body for m in keep],
        [json_text(log_events.created(m, t).info) for m, t in kept],
        [t for _, t in kept],
        ready_due if announce else None,
        leased,
        lease.node_id if lease else None,
        lease.until_ms if lease else None,
        lease.token if lease else None,
    )
    admitted = await admit(conn, queues, announce=announce)
    it = iter(keep)
    out = [r if r is not None else InsertResult((m := next(it)).id, m.url) for r in results]
    return out, _earliest(ready_due, admitted)


class MessageStore:
    """The messages, DLQ and log part of the storage contract."""

    _db: Database
    _batcher: InsertBatcher
    _announcer: Announcer
    _taker: Taker | None  # set by Storage.attach_taker

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def insert_messages(
        self, messages: Sequence[NewMessage], *, now_ms: int, dedup_window_ms: int
    ) -> list[InsertResult]:
        if not messages:
            return []
        if is_plain(messages):
            results, earliest = await self._batcher.insert(messages, now_ms)
        else:
            announce = self._announcer.inline()
            taker = self._taker
            lease = handoff.reserve(taker, messages, now_ms)
            taken: list[NewMessage] = []
            try:
                results, earliest = await self._db.run(
                    lambda conn: insert(
                        conn,
                        messages,
                        now_ms,
                        dedup_window_ms,
                        announce=announce,
                        lease=lease,
                        taken=taken,
                    )
                )
            except BaseException:
                # Rolled back, or (cancelled while committing) perhaps not: then the messages
                # wait for the lease to expire, as after a crash.
                handoff.settle(taker, lease, taken, durable=False)
                raise
            handoff.settle(taker, lease, taken, durable=True)
            self._announcer.after_commit(earliest, announced=announce)
        if earliest is not None:
            self._wake(earliest)
        return results

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        row = await self._db.fetchrow(Q["get_message"], message_id, account_id)
        return None if row is None else message(row)

    async def cancel_messages(
        self,
        account_id: str,
        *,
        message_ids: Sequence[str] | None,
        filter: MessageFilter | None,
        limit: int | None,
        now_ms: int,
    ) -> int:
        params = Params(account_id)
        if message_ids is not None:
            clauses = [f"m.id = ANY({params.add(list(message_ids))}::text[])"]
        else:
            clauses = message_where(filter or MessageFilter(), params)
        limit_clause = "" if limit is None else f"LIMIT {params.add(limit)}"
        sql = compose(Q["cancel_candidates"], clauses, limit=limit_clause)

        async def run(conn: Conn) -> int:
            rows = await conn.fetch(sql, *params.values)
            ids = [r[0] for r in rows]
            if not ids:
                return 0
            # Lock order: active messages, then queues, then the messages waiting in them
            # (the order admission uses), so cancelling never deadlocks with an outcome.
            marked = await conn.fetch(Q["cancel_mark_active"], ids, account_id)
            slots = sorted({r[2] for r in rows if r[1] != "active" and r[2]})
            if slots:
                await conn.fetch(Q["lock_queues"], [account_id] * len(slots), slots)
            canceled = await conn.fetch(Q["cancel_pending"], ids, account_id, now_ms)
            changed = [(r["seq"], r["id"], False) for r in marked]
            changed += [(r["seq"], r["id"], True) for r in canceled]
            events: list[EventRow] = [
                (account_id, message_id, now_ms, e.state, e.info)
                for _, message_id, pending in sorted(changed)
                for e in (log_events.CANCEL_PENDING if pending else log_events.CANCEL_ACTIVE)
            ]
            await write_events(conn, events)
            await admit(conn, {(account_id, r["queue_slot"]) for r in canceled if r["queue_slot"]})
            return len(marked) + len(canceled)

        count = await self._db.run(run)
        self._wake(now_ms)
        return count

    # -- dead-letter queue ------------------------------------------------------------------

    async def list_dlq(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        cursor: str | None,
        count: int,
        newest_first: bool = False,
    ) -> Page[Message]:
        params = Params(account_id)
        clauses = message_where(filter, params, time_column="m.dlq_ms")
        if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= 18:
            op = "<" if newest_first else ">"
            clauses.append(f"m.seq {op} {params.add(int(cursor))}::bigint")
        order = "DESC" if newest_first else "ASC"
        sql = compose(Q["list_dlq"], clauses, order=order, limit=params.add(count + 1))
        rows = await self._db.fetch(sql, *params.values)
        more = len(rows) > count
        rows = rows[:count]
        return Page([message(r) for r in rows], str(rows[-1][-1]) if more and rows else None)

    async def get_dlq(self, account_id: str, dlq_id: str) -> Message | None:
        row = await self._db.fetchrow(Q["get_dlq"], account_id, dlq_id)
        return None if row is None else message(row)

    async def delete_dlq(self, account_id: str, dlq_ids: Sequence[str]) -> int:
        if not dlq_ids:
            return 0
        rows = await self._db.fetch(Q["take_dlq"], account_id, list(dict.fromkeys(dlq_ids)))
        return len(rows)

    async def replace_dlq(
        self,
        account_id: str,
        replacements: Sequence[tuple[str, NewMessage]],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult | None]:
        async def run(conn: Conn) -> tuple[list[InsertResult | None], int | None]:
            wanted = list(dict.fromkeys(dlq_id for dlq_id, _ in replacements))
            taken = {r[0] for r in await conn.fetch(Q["take_dlq"], account_id, wanted)}
            chosen: list[int] = []  # the first replacement of each entry that existed
            for i, (dlq_id, _) in enumerate(replacements):
                if dlq_id in taken:
                    chosen.append(i)
                    taken.discard(dlq_id)
            out: list[InsertResult | None] = [None] * len(replacements)
            if not chosen:
                return out, None
            news = [replacements[i][1] for i in chosen]
            results, due = await insert(conn, news, now_ms, dedup_window_ms)
            for i, result in zip(chosen, results, strict=True):
                out[i] = result
            return out, due

        results, earliest = await self._db.run(run)
        if earliest is not None:
            self._wake(earliest)
        return results

    # -- logs -------------------------------------------------------------------------------

    async def list_logs(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        before_id: int | None,
        count: int,
        newest_first: bool = True,
    ) -> Page[LogEntry]:
        params = Params(account_id)
        clauses = message_where(filter, params, time_column="e.time_ms", with_states=True)
        if before_id is not None:
            op = "<" if newest_first else ">"
            clauses.append(f"e.id {op} {params.add(before_id)}::bigint")
        order = "DESC" if newest_first else "ASC"
        sql = compose(Q["list_logs"], clauses, order=order, limit=params.add(count + 1))
        rows = await self._db.fetch(sql, *params.values)
        more = len(rows) > count
        rows = rows[:count]
        entries = [
            LogEntry(
                id=r[0],
                time_ms=r[1],
                state=LogState(r[2]),
                message=message(r, 4),
                info=orjson.loads(r[3]) if r[3] else {},
            )
            for r in rows
        ]
        return Page(entries, str(rows[-1][0]) if more and rows else None)
