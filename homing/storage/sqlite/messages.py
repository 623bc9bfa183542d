"""Messages on SQLite: decoding, the insert path, queue admission, cancelling, the DLQ and the
log (mixed into SqliteStorage).

`insert` and `admit` run on a connection the caller provides, inside the caller's transaction,
so that an operation (a publish, an outcome with its callbacks, a schedule fire, a DLQ retry)
stays atomic. A publish of bounded size runs inline on the event loop (see `core.py`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from homing import log_events
from homing.models import (
    InsertResult,
    Lease,
    LogEntry,
    LogEvent,
    LogState,
    Message,
    MessageFilter,
    MessageState,
    NewMessage,
    Page,
)
from homing.storage import codec, handoff
from homing.storage.handoff import eligible
from homing.storage.sqlite import flow
from homing.storage.sqlite.core import (
    INLINE_BYTES,
    INLINE_INSERT_LIMIT,
    Core,
    EventLog,
    EventRow,
    Q,
    insert_rows,
    marks,
)
from homing.storage.sqlite.filters import compose, message_where

if TYPE_CHECKING:
    from homing.storage.base import Taker

# `message()` decodes these columns, in this order (as the PostgreSQL backend does): id,
# account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts, caller_ip,
# queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow, cancel_requested,
# dlq_id, dlq_ms, last_response, final_ms. The queries that return messages list them so.


def message(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0],
        account_id=row[1],
        url=row[2],
        body=bytes(row[3]),
        spec=codec.decode_spec(row[4]),
        state=MessageState(row[5]),
        created_ms=row[6],
        not_before_ms=row[7],
        due_ms=row[8],
        attempts=row[9],
        caller_ip=row[10],
        queue_name=row[11],
        topic_name=row[12],
        endpoint_name=row[13],
        schedule_id=row[14],
        labels=codec.decode_labels(row[15]),
        flow=codec.decode_flow(row[16], row[17]),
        cancel_requested=bool(row[18]),
        dlq_id=row[19],
        dlq_ms=row[20],
        last_response=codec.decode_response(row[21]),
        final_ms=row[22],
    )


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


_NO_LEASE: tuple[str | None, int | None, int | None] = (None, None, None)


def admit(conn: sqlite3.Connection, account_id: str, queue: str) -> int | None:
    """Let waiting messages of a queue start, in FIFO order, up to its parallelism; returns the
    earliest due time of those admitted."""
    settings = conn.execute(Q["queue_settings"], (account_id, queue)).fetchone()
    if settings is None or settings[1]:
        return None
    busy = conn.execute(Q["queue_busy"], (account_id, queue)).fetchone()[0]
    free = settings[0] - busy
    if free <= 0:
        return None
    admitted = conn.execute(Q["admit_queued"], (account_id, queue, free)).fetchall()
    return min((due for (due,) in admitted), default=None)


class _Rows:
    """What inserts write, gathered so that several publishes go in one statement each."""

    __slots__ = ("logged", "queues", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.logged: list[EventRow] = []
        self.queues: set[tuple[str, str]] = set()


def insert(
    conn: sqlite3.Connection,
    events: EventLog,
    messages: Sequence[NewMessage],
    now_ms: int,
    dedup_window_ms: int,
    lease: Lease | None = None,
    taken: list[NewMessage] | None = None,
) -> tuple[list[InsertResult], int | None]:
    """Store messages and log CREATED for each; returns (results in input order, earliest
    claimable due time). With `lease`, up to `lease.slots` messages that `handoff.eligible`
    allows are stored ACTIVE under it instead (logged CREATED, then ACTIVE) and appended to
    `taken`."""
    out = _Rows()
    results, earliest = _gather(conn, out, messages, now_ms, dedup_window_ms, lease, taken)
    return results, _earliest(earliest, _write(conn, events, out))


def _gather(
    conn: sqlite3.Connection,
    out: _Rows,
    messages: Sequence[NewMessage],
    now_ms: int,
    dedup_window_ms: int,
    lease: Lease | None,
    taken: list[NewMessage] | None,
) -> tuple[list[InsertResult], int | None]:
    """`insert` up to its writes: deduplication, state, the rows and log entries (into `out`)."""
    results: list[InsertResult] = []
    rows = out.rows
    logged = out.logged
    earliest: int | None = None
    claim = _NO_LEASE if lease is None else (lease.node_id, lease.until_ms, lease.token)
    for m in messages:
        leased = _NO_LEASE
        if m.dedup_key is not None:
            found = conn.execute(Q["find_dedup"], (m.account_id, m.dedup_key)).fetchone()
            if found is not None and found[1] > now_ms:
                results.append(InsertResult(found[0], m.url, deduplicated=True))
                continue
            conn.execute(
                Q["put_dedup"], (m.account_id, m.dedup_key, m.id, now_ms + dedup_window_ms)
            )
        if m.queue_name is not None:
            state = "queued"
            out.queues.add((m.account_id, m.queue_name))
            conn.execute(Q["ensure_queue"], (m.account_id, m.queue_name, now_ms, now_ms))
        elif (
            lease is not None
            and taken is not None
            and len(taken) < lease.slots
            and eligible(m, now_ms)
        ):
            state = "active"
            leased = claim
            taken.append(m)
        else:
            state = "ready"
            earliest = m.not_before_ms if earliest is None else min(earliest, m.not_before_ms)
        if m.flow is not None:
            flow.upsert_key(conn, m.account_id, m.flow, now_ms)
        host, path = codec.url_parts(m.url)
        rows.append(
            (
                m.id,
                m.account_id,
                state,
                m.not_before_ms,
                m.created_ms,
                m.not_before_ms,
                m.url,
                host,
                path,
                m.caller_ip,
                m.queue_name,
                m.queue_name or m.queue_slot,
                m.topic_name,
                m.endpoint_name,
                m.schedule_id,
                codec.encode_labels(m.labels),
                m.flow.key if m.flow else None,
                codec.encode_flow(m.flow),
                codec.encode_spec(m.spec),
                m.body,
                *leased,
            )
        )
        created = log_events.created(m, now_ms)
        logged.append((m.account_id, m.id, now_ms, created.state, created.info))
        if state == "active":
            logged.append((m.account_id, m.id, now_ms, LogState.ACTIVE, None))
        results.append(InsertResult(m.id, m.url))
    return results, earliest


def _write(conn: sqlite3.Connection, events: EventLog, out: _Rows) -> int | None:
    """Write what `_gather` collected; returns the earliest due time of the queued messages
    that could be admitted."""
    insert_rows(conn, Q["insert_messages"], out.rows)
    events.write(conn, out.logged)
    earliest = None
    for account_id, queue in out.queues:
        earliest = _earliest(earliest, admit(conn, account_id, queue))
    return earliest


def _share(messages: Sequence[NewMessage]) -> float:
    """What an insert of `messages` takes of one inline operation's budget (core.py)."""
    size = sum(len(m.body) for m in messages)
    return max(len(messages) / INLINE_INSERT_LIMIT, size / INLINE_BYTES)


class _Publish:
    """One `insert_messages` call as the writer sees it: what it stores, and its hand-off."""

    __slots__ = ("_reserved", "dedup_window_ms", "lease", "messages", "now_ms", "taken", "taker")

    def __init__(
        self,
        messages: Sequence[NewMessage],
        now_ms: int,
        dedup_window_ms: int,
        taker: Taker | None,
    ) -> None:
        self.messages = messages
        self.now_ms = now_ms
        self.dedup_window_ms = dedup_window_ms
        self.taker = taker
        self.lease: Lease | None = None
        self.taken: list[NewMessage] = []
        self._reserved = False

    def start(self) -> Lease | None:
        """The lease to store messages under; reserved once, however often the insert runs
        (a gathered insert that failed runs again on its own)."""
        if not self._reserved:
            self._reserved = True
            self.lease = handoff.reserve(self.taker, self.messages, self.now_ms)
        self.taken.clear()
        return self.lease

    def settled(self, durable: bool) -> None:
        # Called by the writer whether or not the publisher still waits: a request
        # cancelled after its insert ran still commits, and its messages must be sent.
        handoff.settle(self.taker, self.lease, self.taken, durable=durable)


def _is_position(cursor: str) -> bool:
    """A DLQ cursor we issued: a row position (anything else starts from the beginning)."""
    return cursor.isascii() and cursor.isdigit() and len(cursor) <= 18


class MessageStore(Core):
    """The messages, DLQ and log part of the storage contract."""

    async def insert_messages(
        self, messages: Sequence[NewMessage], *, now_ms: int, dedup_window_ms: int
    ) -> list[InsertResult]:
        share = _share(messages)
        inline = share <= 1.0  # within INLINE_INSERT_LIMIT rows and INLINE_BYTES of bodies
        # Only inline inserts hand off: their room is reserved on the event-loop thread, the
        # only one the engine's bookkeeping may be touched from.
        publish = _Publish(messages, now_ms, dedup_window_ms, self._taker if inline else None)

        def run(conn: sqlite3.Connection) -> tuple[list[InsertResult], int | None]:
            return insert(
                conn,
                self._events,
                messages,
                now_ms,
                dedup_window_ms,
                publish.start(),
                publish.taken,
            )

        results, earliest = await self._writer.call(
            run,
            inline=inline,
            grows=True,
            settled=publish.settled,
            gather=(self._insert_gathered, publish, share) if inline else None,
        )
        if earliest is not None:
            self._wake(earliest)
        return results

    def _insert_gathered(
        self, conn: sqlite3.Connection, publishes: list[Any]
    ) -> list[tuple[list[InsertResult], int | None]]:
        """The inserts of several publishes of one transaction, with one statement for all
        their messages and one for all their log entries: per publish, those statements' own
        cost was a third of the insert's."""
        out = _Rows()
        gathered = []
        for p in publishes:
            assert isinstance(p, _Publish)
            gathered.append(
                _gather(conn, out, p.messages, p.now_ms, p.dedup_window_ms, p.start(), p.taken)
            )
        admitted = _write(conn, self._events, out)
        return [(results, _earliest(earliest, admitted)) for results, earliest in gathered]

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        row = await self._read(
            lambda c: c.execute(Q["get_message"], (message_id, account_id)).fetchone()
        )
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
        if message_ids is not None:
            where, params = f"m.id IN ({marks(len(message_ids))})", list(message_ids)
        else:
            where, params = message_where(filter or MessageFilter())
        sql = compose(Q["cancel_candidates"], where, limit="" if limit is None else "LIMIT ?")
        args = [account_id, *params] + ([limit] if limit is not None else [])

        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(sql, args).fetchall()
            logged: list[EventRow] = []
            slots: set[str] = set()
            for message_id, state, slot in rows:
                entries: tuple[LogEvent, ...]
                if state == "active":
                    conn.execute(Q["cancel_mark_active"], (message_id,))
                    entries = log_events.CANCEL_ACTIVE
                else:
                    conn.execute(Q["cancel_pending"], (now_ms, message_id))
                    entries = log_events.CANCEL_PENDING
                    if slot:
                        slots.add(slot)
                logged.extend((account_id, message_id, now_ms, e.state, e.info) for e in entries)
            self._events.write(conn, logged)
            for slot in slots:
                admit(conn, account_id, slot)
            return len(rows)

        count = await self._writer.call(run)
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
        where, params = message_where(filter, time_column="m.dlq_ms")
        args: list[Any] = [account_id, *params]
        if cursor and _is_position(cursor):
            position = "m.seq < ?" if newest_first else "m.seq > ?"
            where = f"{where} AND {position}" if where else position
            args.append(int(cursor))
        sql = compose(Q["list_dlq"], where, order="DESC" if newest_first else "ASC")
        args.append(count + 1)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        more = len(rows) > count
        rows = rows[:count]
        return Page([message(r) for r in rows], str(rows[-1][-1]) if more and rows else None)

    async def get_dlq(self, account_id: str, dlq_id: str) -> Message | None:
        row = await self._read(lambda c: c.execute(Q["get_dlq"], (account_id, dlq_id)).fetchone())
        return None if row is None else message(row)

    async def delete_dlq(self, account_id: str, dlq_ids: Sequence[str]) -> int:
        if not dlq_ids:
            return 0
        sql = Q["take_dlq"].format(ids=marks(len(dlq_ids)))
        return await self._writer.call(lambda c: c.execute(sql, (account_id, *dlq_ids)).rowcount)

    async def replace_dlq(
        self,
        account_id: str,
        replacements: Sequence[tuple[str, NewMessage]],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult | None]:
        take_one = Q["take_dlq"].format(ids="?")

        def run(conn: sqlite3.Connection) -> tuple[list[InsertResult | None], int | None]:
            out: list[InsertResult | None] = []
            earliest: int | None = None
            for dlq_id, new in replacements:
                if not conn.execute(take_one, (account_id, dlq_id)).rowcount:
                    out.append(None)  # already retried or deleted: nothing runs twice
                    continue
                results, due = insert(conn, self._events, [new], now_ms, dedup_window_ms)
                out.append(results[0])
                earliest = _earliest(earliest, due)
            return out, earliest

        results, earliest = await self._writer.call(run)
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
        where, params = message_where(filter, time_column="e.time_ms", with_states=True)
        args: list[Any] = [account_id, *params]
        if before_id is not None:
            position = "e.id < ?" if newest_first else "e.id > ?"
            where = f"{where} AND {position}" if where else position
            args.append(before_id)
        sql = compose(Q["list_logs"], where, order="DESC" if newest_first else "ASC")
        args.append(count + 1)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        more = len(rows) > count
        rows = rows[:count]
        entries = [
            LogEntry(
                id=r[0],
                time_ms=r[1],
                state=LogState(r[2]),
                message=message(r[4:]),
                info=orjson.loads(r[3]) if r[3] else {},
            )
            for r in rows
        ]
        return Page(entries, str(rows[-1][0]) if more and rows else None)
