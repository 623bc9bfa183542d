"""SQLite backend: the embedded default. One process owns the database file.

Writes go through one group-committing writer thread (see `connection.py`); reads use a small
pool of WAL readers. Claiming is a single `UPDATE ... RETURNING` inside the writer's transaction,
so each due message goes to exactly one claim. Wake-ups are in-process: the backend tells its
listeners after commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from homing import flow_control, log_events, url_groups
from homing.errors import InvalidRequest, StorageUnavailable
from homing.models import (
    AttemptOutcome,
    Claimed,
    InsertResult,
    LogEntry,
    LogEvent,
    LogState,
    Message,
    MessageFilter,
    MessageState,
    NewMessage,
    Page,
    Principal,
    SigningKeys,
    TokenInfo,
)
from homing.publish import Endpoint
from homing.storage import codec
from homing.storage.base import QueueInfo, Storage, UrlGroup
from homing.storage.queries import load_migrations, load_queries
from homing.storage.sqlite import flow
from homing.storage.sqlite.connection import Readers, Writer, open_reader
from homing.storage.sqlite.filters import message_where
from homing.storage.sqlite.flow import FlowControlStore
from homing.storage.sqlite.schedules import ScheduleStore

Q = load_queries("homing.storage.sqlite")
COLUMNS = (
    "id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts, "
    "caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow, "
    "cancel_requested, dlq_id, dlq_ms, last_response, final_ms"
)
M_COLUMNS = ", ".join("m." + c.strip() for c in COLUMNS.split(","))
T = TypeVar("T")

# Writes run on the event-loop thread (see connection.py) only while they are this small;
# larger ones go to the writer thread so that they never stall the loop. A claim takes at most
# this many body bytes per round (and at least one message), for the same reason.
INLINE_INSERT_LIMIT = 100
INLINE_BYTES = 1 << 20


def _within_budget(candidates: list[Any], budget: int) -> list[Any]:
    """The leading candidates whose bodies (last column) fit in `budget`; never none."""
    total = 0
    for index, row in enumerate(candidates):
        total += row[-1] or 0
        if total > budget and index > 0:
            return candidates[:index]
    return candidates


CLAIM = (
    "UPDATE messages SET state = 'active', lease_owner = ?, lease_until = ?, lease_token = ? "
    "WHERE seq IN ({seqs}) RETURNING " + COLUMNS
)


def _message(row: Sequence[Any]) -> Message:
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


def _is_position(cursor: str) -> bool:
    """A DLQ cursor we issued: a row position (anything else starts from the beginning)."""
    return cursor.isascii() and cursor.isdigit() and len(cursor) <= 18


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqliteStorage(ScheduleStore, FlowControlStore, Storage):
    single_node = True

    def __init__(self, path: str, *, synchronous: str = "FULL", exclusive: bool = True) -> None:
        super().__init__()
        self.path = path
        self._folder = os.path.dirname(os.path.abspath(path))
        self._exclusive = exclusive
        self._synchronous = synchronous
        self._writer = Writer(path, synchronous=synchronous)
        self._readers: Readers | None = None
        # Read on the event-loop thread itself, for indexed point lookups on every request (the
        # token): a WAL reader never waits for the writer, and a lookup in the page cache costs
        # a few microseconds, far less than a hop to the reader pool and back.
        self._inline: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._last_event_id = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        os.makedirs(self._folder, exist_ok=True)
        if self._exclusive:
            self._lock()
        await self._writer.start()
        try:
            await self._writer.call(self._migrate)
            self._readers = Readers(self.path)
            self._inline = open_reader(self.path, busy_timeout_ms=0)
        except BaseException:
            await self.close()
            raise

    def _lock(self) -> None:
        # One process per database file: a second Homing on the same file would release the
        # first one's claims at start and deliver its messages twice.
        self._lock_fd = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StorageUnavailable(
                f"{self.path} is in use by another Homing process; give each server its own "
                "--data-dir, or use PostgreSQL to run several nodes"
            ) from None

    async def close(self) -> None:
        try:
            await self._writer.stop()
        finally:
            self._close_readers()

    def _close_readers(self) -> None:
        if self._readers is not None:
            self._readers.close()
            self._readers = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT count(*) FROM accounts").fetchone())

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS homing_schema_version (version INTEGER PRIMARY KEY)"
        )
        done = {v for (v,) in conn.execute("SELECT version FROM homing_schema_version")}
        for version, sql in load_migrations("homing.storage.sqlite"):
            if version in done:
                continue
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO homing_schema_version VALUES (?)", (version,))
        self._last_event_id = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    async def _read(self, fn: Any) -> Any:
        if self._readers is None:
            raise StorageUnavailable("storage is closed")
        return await self._readers.call(fn)

    async def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short indexed read on the event-loop thread (see `_inline`).

        That connection never waits for a lock (busy timeout 0): in the rare case a read would
        (WAL recovery after a crash of another process), it goes to the reader pool instead.
        """
        if self._inline is None:
            raise StorageUnavailable("storage is closed")
        try:
            return fn(self._inline)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StorageUnavailable(f"SQLite read failed: {exc}") from exc
        found: T = await self._read(fn)
        return found

    def _event_id(self, now_ms: int) -> int:
        # Only inside writer transactions (one at a time), so no two callers race here.
        self._last_event_id = max(now_ms * 1000, self._last_event_id + 1)
        return self._last_event_id

    def _log(
        self,
        conn: sqlite3.Connection,
        rows: list[tuple[str, str, int, LogState, dict[str, Any] | None]],
    ) -> None:
        conn.executemany(
            Q["insert_event"],
            [
                (
                    self._event_id(t),
                    account,
                    message_id,
                    t,
                    state.value,
                    orjson.dumps(info) if info else None,
                )
                for account, message_id, t, state, info in rows
            ],
        )

    # -- accounts -------------------------------------------------------------------------

    async def ensure_account(
        self,
        account_id: str,
        *,
        now_ms: int,
        keys: SigningKeys,
        token: str | None = None,
        reset_keys: bool = False,
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO accounts (id, created_ms, current_key, next_key) "
                "VALUES (?, ?, ?, ?)",
                (account_id, now_ms, keys.current, keys.next),
            )
            if reset_keys:
                conn.execute(
                    "UPDATE accounts SET current_key = ?, next_key = ? WHERE id = ?",
                    (keys.current, keys.next, account_id),
                )
            if token is not None:
                digest = hash_token(token)
                conn.execute(
                    "INSERT INTO tokens (id, account_id, token_hash, read_only, created_ms) "
                    "VALUES (?, ?, ?, 0, ?) ON CONFLICT (token_hash) DO UPDATE SET "
                    "account_id = excluded.account_id, revoked_ms = NULL, read_only = 0",
                    ("tok_" + digest[:16], account_id, digest, now_ms),
                )

        await self._writer.call(run)

    async def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        row = await self._read_now(lambda c: c.execute(Q["token_principal"], (digest,)).fetchone())
        return None if row is None else Principal(row[0], bool(row[1]), row[2])

    async def token_active(self, token_id: str) -> bool:
        row = await self._read_now(
            lambda c: c.execute(
                "SELECT 1 FROM tokens WHERE id = ? AND revoked_ms IS NULL", (token_id,)
            ).fetchone()
        )
        return row is not None

    async def signing_keys(self, account_id: str) -> SigningKeys:
        row = await self._read(lambda c: c.execute(Q["account_keys"], (account_id,)).fetchone())
        if row is None:
            raise StorageUnavailable(f"account {account_id!r} has no signing keys")
        return SigningKeys(row[0], row[1])

    async def rotate_signing_keys(self, account_id: str, new_next: str) -> SigningKeys:
        def run(conn: sqlite3.Connection) -> SigningKeys:
            conn.execute(
                "UPDATE accounts SET current_key = next_key, next_key = ? WHERE id = ?",
                (new_next, account_id),
            )
            row = conn.execute(Q["account_keys"], (account_id,)).fetchone()
            return SigningKeys(row[0], row[1])

        keys: SigningKeys = await self._writer.call(run)
        return keys

    async def create_token(
        self,
        account_id: str,
        token: str,
        *,
        name: str | None,
        read_only: bool,
        now_ms: int,
        new_keys: SigningKeys,
    ) -> TokenInfo:
        digest = hash_token(token)
        token_id = "tok_" + digest[:16]

        def run(conn: sqlite3.Connection) -> TokenInfo:
            if (
                name is not None
                and conn.execute(
                    "SELECT 1 FROM tokens WHERE name = ? AND revoked_ms IS NULL", (name,)
                ).fetchone()
            ):
                raise InvalidRequest(f"a token named {name!r} already exists")
            conn.execute(
                "INSERT OR IGNORE INTO accounts (id, created_ms, current_key, next_key) "
                "VALUES (?, ?, ?, ?)",
                (account_id, now_ms, new_keys.current, new_keys.next),
            )
            conn.execute(
                "INSERT INTO tokens (id, account_id, token_hash, name, read_only, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, account_id, digest, name, int(read_only), now_ms),
            )
            return TokenInfo(token_id, account_id, name, read_only, now_ms)

        info: TokenInfo = await self._writer.call(run)
        return info

    async def list_tokens(self) -> list[TokenInfo]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, account_id, name, read_only, created_ms, revoked_ms FROM tokens "
                "ORDER BY created_ms, id"
            ).fetchall()
        )
        return [TokenInfo(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in rows]

    async def revoke_token(self, id_or_name: str, *, now_ms: int) -> TokenInfo | None:
        def run(conn: sqlite3.Connection) -> TokenInfo | None:
            row = conn.execute(
                "UPDATE tokens SET revoked_ms = ? WHERE revoked_ms IS NULL AND "
                "(id = ? OR name = ?) RETURNING id, account_id, name, read_only, created_ms",
                (now_ms, id_or_name, id_or_name),
            ).fetchone()
            return (
                None
                if row is None
                else TokenInfo(row[0], row[1], row[2], bool(row[3]), row[4], now_ms)
            )

        info: TokenInfo | None = await self._writer.call(run)
        return info

    async def list_accounts(self) -> list[str]:
        rows = await self._read(
            lambda c: c.execute("SELECT id FROM accounts ORDER BY id").fetchall()
        )
        return [r[0] for r in rows]

    # -- messages ---------------------------------------------------------------------------

    def _insert(
        self,
        conn: sqlite3.Connection,
        messages: Sequence[NewMessage],
        now_ms: int,
        dedup_window_ms: int,
    ) -> tuple[list[InsertResult], int | None]:
        results: list[InsertResult] = []
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[str, str, int, LogState, dict[str, Any] | None]] = []
        queues: set[tuple[str, str]] = set()
        earliest: int | None = None
        for m in messages:
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
                queues.add((m.account_id, m.queue_name))
                conn.execute(Q["ensure_queue"], (m.account_id, m.queue_name, now_ms, now_ms))
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
                )
            )
            created = log_events.created(m, now_ms)
            events.append((m.account_id, m.id, now_ms, created.state, created.info))
            results.append(InsertResult(m.id, m.url))
        conn.executemany(Q["insert_message"], rows)
        self._log(conn, events)
        for account_id, queue in queues:
            due = self._admit(conn, account_id, queue)
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        return results, earliest

    def _admit(self, conn: sqlite3.Connection, account_id: str, queue: str) -> int | None:
        """Let waiting messages of a queue start, in FIFO order, up to its parallelism."""
        settings = conn.execute(Q["queue_settings"], (account_id, queue)).fetchone()
        if settings is None or settings[1]:
            return None
        busy = conn.execute(Q["queue_busy"], (account_id, queue)).fetchone()[0]
        free = settings[0] - busy
        if free <= 0:
            return None
        admitted = conn.execute(Q["admit_queued"], (account_id, queue, free)).fetchall()
        return min((due for (due,) in admitted), default=None)

    async def insert_messages(
        self, messages: Sequence[NewMessage], *, now_ms: int, dedup_window_ms: int
    ) -> list[InsertResult]:
        results, earliest = await self._writer.call(
            lambda conn: self._insert(conn, messages, now_ms, dedup_window_ms),
            inline=len(messages) <= INLINE_INSERT_LIMIT
            and sum(len(m.body) for m in messages) <= INLINE_BYTES,
        )
        if earliest is not None:
            self._wake(earliest)
        return results

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        sql = f"SELECT {COLUMNS} FROM messages WHERE id = ? AND account_id = ?"
        row = await self._read(lambda c: c.execute(sql, (message_id, account_id)).fetchone())
        return None if row is None else _message(row)

    async def cancel_messages(
        self,
        account_id: str,
        *,
        message_ids: Sequence[str] | None,
        filter: MessageFilter | None,
        limit: int | None,
        now_ms: int,
    ) -> int:
        where, params = message_where(filter or MessageFilter())
        if message_ids is not None:
            where = f"m.id IN ({','.join('?' * len(message_ids))})"
            params = list(message_ids)
        sql = (
            "SELECT m.id, m.state, m.queue_slot FROM messages m WHERE m.account_id = ? AND "
            "(m.state IN ('queued', 'ready', 'waiting') "
            "OR (m.state = 'active' AND m.cancel_requested = 0))"
            + (f" AND {where}" if where else "")
            + " ORDER BY m.seq"
            + (" LIMIT ?" if limit is not None else "")
        )
        args = [account_id, *params] + ([limit] if limit is not None else [])

        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(sql, args).fetchall()
            events: list[tuple[str, str, int, LogState, dict[str, Any] | None]] = []
            slots: set[str] = set()
            for message_id, state, slot in rows:
                logged: tuple[LogEvent, ...]
                if state == "active":
                    conn.execute(
                        "UPDATE messages SET cancel_requested = 1 WHERE id = ?", (message_id,)
                    )
                    logged = log_events.CANCEL_ACTIVE
                else:
                    conn.execute(
                        "UPDATE messages SET state = 'canceled', final_ms = ?, due_ms = NULL "
                        "WHERE id = ?",
                        (now_ms, message_id),
                    )
                    logged = log_events.CANCEL_PENDING
                    if slot:
                        slots.add(slot)
                events.extend((account_id, message_id, now_ms, e.state, e.info) for e in logged)
            self._log(conn, events)
            for slot in slots:
                self._admit(conn, account_id, slot)
            return len(rows)

        count: int = await self._writer.call(run)
        self._wake(now_ms)
        return count

    # -- delivery ---------------------------------------------------------------------------

    def _claim(
        self,
        conn: sqlite3.Connection,
        now_ms: int,
        limit: int,
        node_id: str,
        lease: int,
        token: int,
    ) -> list[Any]:
        flow.promote_unblocked(conn, now_ms)
        candidates = _within_budget(
            conn.execute(Q["claim_candidates"], (now_ms, limit)).fetchall(), INLINE_BYTES
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
        sql = CLAIM.replace("{seqs}", ",".join("?" * len(chosen)))
        claimed = conn.execute(sql, (node_id, now_ms + lease, token, *chosen)).fetchall()
        self._log(conn, [(r[1], r[0], now_ms, LogState.ACTIVE, None) for r in claimed])
        return claimed

    async def claim_due(
        self, *, now_ms: int, limit: int, node_id: str, lease_ms: int
    ) -> list[Claimed]:
        token = secrets.randbits(62)
        rows = await self._writer.call(
            lambda conn: self._claim(conn, now_ms, limit, node_id, lease_ms, token), inline=True
        )
        return [Claimed(_message(row), token) for row in rows]

    async def next_due_ms(self) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            due = conn.execute(Q["next_due"]).fetchone()[0]
            unblock = flow.next_unblock_ms(conn)
            return min((t for t in (due, unblock) if t is not None), default=None)

        # On the loop: the claim loop asks after every round; both are index lookups.
        found: int | None = await self._read_now(run)
        return found

    async def renew_leases(self, node_id: str, *, until_ms: int) -> int:
        count: int = await self._writer.call(
            lambda c: c.execute(Q["renew_leases"], (until_ms, node_id)).rowcount
        )
        return count

    def _record(self, conn: sqlite3.Connection, o: AttemptOutcome) -> tuple[bool, int | None]:
        target = conn.execute(Q["outcome_target"], (o.message_id, o.lease_token)).fetchone()
        if target is None:
            return False, None  # fenced: the lease expired and someone else owns the message
        account_id, cancel_requested, slot, flow_key = target
        e = o.effect_for(cancel_requested=bool(cancel_requested))
        t = o.finished_ms
        conn.execute(
            Q["record_attempt"],
            (
                e.state.value,
                e.due_ms,
                e.final_ms,
                e.dlq_id,
                e.dlq_ms,
                codec.encode_response(o.response),
                o.message_id,
            ),
        )
        self._log(conn, [(account_id, o.message_id, t, ev.state, ev.info) for ev in e.events])
        earliest = e.due_ms
        if e.new_messages:
            _, due = self._insert(conn, e.new_messages, t, 0)
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        if flow_key is not None and flow.promote(conn, account_id, flow_key, t):
            earliest = t if earliest is None else min(earliest, t)
        if slot and e.frees_slot:
            due = self._admit(conn, account_id, slot)
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        return True, earliest

    async def record_outcomes(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        def run(conn: sqlite3.Connection) -> list[tuple[bool, int | None]]:
            return [self._record(conn, o) for o in outcomes]

        stored = sum(
            len(o.response.body) + sum(len(m.body) for m in o.new_messages) for o in outcomes
        )
        results = await self._writer.call(run, inline=stored <= INLINE_BYTES)
        dues = [due for _, due in results if due is not None]
        if dues:
            self._wake(min(dues))
        return [ok for ok, _ in results]

    def _release(self, conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], now: int) -> int:
        rows = conn.execute(sql, args).fetchall()
        e = log_events.LEASE_RELEASED
        self._log(conn, [(account, mid, now, e.state, e.info) for mid, account in rows])
        return len(rows)

    async def release_leases(self, *, node_id: str | None, now_ms: int) -> int:
        if node_id is None:
            count: int = await self._writer.call(
                lambda c: self._release(c, Q["release_all"], (now_ms,), now_ms)
            )
        else:
            count = await self._writer.call(
                lambda c: self._release(c, Q["release_node"], (now_ms, node_id), now_ms)
            )
        if count:
            self._wake(now_ms)
        return count

    async def release_expired_leases(self, *, now_ms: int) -> int:
        count: int = await self._writer.call(
            lambda c: self._release(c, Q["release_expired"], (now_ms, now_ms), now_ms)
        )
        if count:
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
        position = int(cursor) if cursor and _is_position(cursor) else None
        clauses = ["m.account_id = ?", "m.dlq_id IS NOT NULL"]
        args: list[Any] = [account_id]
        if where:
            clauses.append(where)
            args.extend(params)
        if position is not None:
            clauses.append("m.seq < ?" if newest_first else "m.seq > ?")
            args.append(position)
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {M_COLUMNS}, m.seq FROM messages m WHERE {' AND '.join(clauses)} "
            f"ORDER BY m.seq {order} LIMIT ?"
        )
        args.append(count + 1)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        more = len(rows) > count
        rows = rows[:count]
        return Page([_message(r) for r in rows], str(rows[-1][-1]) if more and rows else None)

    async def get_dlq(self, account_id: str, dlq_id: str) -> Message | None:
        sql = f"SELECT {COLUMNS} FROM messages WHERE account_id = ? AND dlq_id = ?"
        row = await self._read(lambda c: c.execute(sql, (account_id, dlq_id)).fetchone())
        return None if row is None else _message(row)

    async def delete_dlq(self, account_id: str, dlq_ids: Sequence[str]) -> int:
        if not dlq_ids:
            return 0
        sql = (
            "UPDATE messages SET dlq_id = NULL WHERE account_id = ? AND dlq_id IN "
            f"({','.join('?' * len(dlq_ids))})"
        )
        count: int = await self._writer.call(
            lambda c: c.execute(sql, (account_id, *dlq_ids)).rowcount
        )
        return count

    async def replace_dlq(
        self,
        account_id: str,
        replacements: Sequence[tuple[str, NewMessage]],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult | None]:
        def run(conn: sqlite3.Connection) -> tuple[list[InsertResult | None], int | None]:
            out: list[InsertResult | None] = []
            earliest: int | None = None
            for dlq_id, message in replacements:
                gone = conn.execute(
                    "UPDATE messages SET dlq_id = NULL WHERE account_id = ? AND dlq_id = ?",
                    (account_id, dlq_id),
                ).rowcount
                if not gone:
                    out.append(None)
                    continue
                results, due = self._insert(conn, [message], now_ms, dedup_window_ms)
                out.append(results[0])
                if due is not None:
                    earliest = due if earliest is None else min(earliest, due)
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
        clauses = ["e.account_id = ?"]
        args: list[Any] = [account_id]
        if where:
            clauses.append(where)
            args.extend(params)
        if before_id is not None:
            clauses.append("e.id < ?" if newest_first else "e.id > ?")
            args.append(before_id)
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT e.id, e.time_ms, e.state, e.info, {M_COLUMNS} FROM events e "
            f"JOIN messages m ON m.id = e.message_id WHERE {' AND '.join(clauses)} "
            f"ORDER BY e.id {order} LIMIT ?"
        )
        args.append(count + 1)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        more = len(rows) > count
        rows = rows[:count]
        entries = [
            LogEntry(
                id=r[0],
                time_ms=r[1],
                state=LogState(r[2]),
                message=_message(r[4:]),
                info=orjson.loads(r[3]) if r[3] else {},
            )
            for r in rows
        ]
        return Page(entries, str(rows[-1][0]) if more and rows else None)

    # -- queues -----------------------------------------------------------------------------

    def _queue_info(self, conn: sqlite3.Connection, account_id: str, name: str) -> QueueInfo | None:
        row = conn.execute(
            "SELECT name, parallelism, paused, created_ms, updated_ms, "
            "(SELECT count(*) FROM messages m WHERE m.account_id = q.account_id "
            " AND m.queue_name = q.name AND m.state IN ('queued', 'ready', 'waiting', 'active')) "
            "FROM queues q WHERE account_id = ? AND name = ?",
            (account_id, name),
        ).fetchone()
        if row is None:
            return None
        return QueueInfo(row[0], row[1], bool(row[2]), row[3], row[4], row[5])

    async def upsert_queue(
        self, account_id: str, name: str, *, parallelism: int, paused: bool, now_ms: int
    ) -> None:
        def run(conn: sqlite3.Connection) -> int | None:
            conn.execute(
                "INSERT INTO queues (account_id, name, parallelism, paused, created_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE "
                "SET parallelism = excluded.parallelism, paused = excluded.paused, "
                "updated_ms = excluded.updated_ms",
                (account_id, name, parallelism, int(paused), now_ms, now_ms),
            )
            if paused:
                conn.execute(Q["demote_ready"], (account_id, name))
                return None
            return self._admit(conn, account_id, name)

        due = await self._writer.call(run)
        if due is not None:
            self._wake(due)

    async def get_queue(self, account_id: str, name: str) -> QueueInfo | None:
        info: QueueInfo | None = await self._read(lambda c: self._queue_info(c, account_id, name))
        return info

    async def list_queues(self, account_id: str) -> list[QueueInfo]:
        def run(conn: sqlite3.Connection) -> list[QueueInfo]:
            names = conn.execute(
                "SELECT name FROM queues WHERE account_id = ? ORDER BY name", (account_id,)
            ).fetchall()
            return [q for (n,) in names if (q := self._queue_info(conn, account_id, n))]

        queues: list[QueueInfo] = await self._read(run)
        return queues

    async def set_queue_paused(
        self, account_id: str, name: str, *, paused: bool, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> tuple[bool, int | None]:
            changed = conn.execute(
                "UPDATE queues SET paused = ?, updated_ms = ? WHERE account_id = ? AND name = ?",
                (int(paused), now_ms, account_id, name),
            ).rowcount
            if not changed:
                return False, None
            if paused:
                conn.execute(Q["demote_ready"], (account_id, name))
                return True, None
            return True, self._admit(conn, account_id, name)

        found, due = await self._writer.call(run)
        if due is not None:
            self._wake(due)
        return bool(found)

    async def delete_queue(self, account_id: str, name: str, *, now_ms: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                "UPDATE messages SET state = 'canceled', final_ms = ?, due_ms = NULL "
                "WHERE account_id = ? AND queue_name = ? "
                "AND state IN ('queued', 'ready', 'waiting') "
                "RETURNING id",
                (now_ms, account_id, name),
            ).fetchall()
            e = log_events.QUEUE_DELETED
            self._log(conn, [(account_id, mid, now_ms, e.state, e.info) for (mid,) in rows])
            conn.execute("DELETE FROM queues WHERE account_id = ? AND name = ?", (account_id, name))

        await self._writer.call(run)

    # -- URL groups -------------------------------------------------------------------------

    @staticmethod
    def _group(row: Sequence[Any]) -> UrlGroup:
        return UrlGroup(row[0], row[1], row[2], tuple(codec.decode_endpoints(row[3])))

    async def upsert_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT endpoints FROM url_groups WHERE account_id = ? AND name = ?",
                (account_id, group),
            ).fetchone()
            current = codec.decode_endpoints(row[0]) if row else []
            doc = codec.encode_endpoints(url_groups.merge(current, endpoints))
            conn.execute(
                "INSERT INTO url_groups (account_id, name, created_ms, updated_ms, endpoints) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET "
                "endpoints = excluded.endpoints, updated_ms = excluded.updated_ms",
                (account_id, group, now_ms, now_ms, doc),
            )

        await self._writer.call(run)

    async def remove_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT endpoints FROM url_groups WHERE account_id = ? AND name = ?",
                (account_id, group),
            ).fetchone()
            if row is None:
                return False
            kept = url_groups.remove(codec.decode_endpoints(row[0]), endpoints)
            if kept:
                conn.execute(
                    "UPDATE url_groups SET endpoints = ?, updated_ms = ? "
                    "WHERE account_id = ? AND name = ?",
                    (codec.encode_endpoints(kept), now_ms, account_id, group),
                )
            else:
                conn.execute(
                    "DELETE FROM url_groups WHERE account_id = ? AND name = ?", (account_id, group)
                )
            return True

        found: bool = await self._writer.call(run)
        return found

    async def get_url_group(self, account_id: str, name: str) -> UrlGroup | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT name, created_ms, updated_ms, endpoints FROM url_groups "
                "WHERE account_id = ? AND name = ?",
                (account_id, name),
            ).fetchone()
        )
        return None if row is None else self._group(row)

    async def list_url_groups(self, account_id: str) -> list[UrlGroup]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, created_ms, updated_ms, endpoints FROM url_groups "
                "WHERE account_id = ? ORDER BY name",
                (account_id,),
            ).fetchall()
        )
        return [self._group(r) for r in rows]

    async def delete_url_group(self, account_id: str, name: str) -> None:
        await self._writer.call(
            lambda c: c.execute(
                "DELETE FROM url_groups WHERE account_id = ? AND name = ?", (account_id, name)
            )
        )

    # -- statistics -------------------------------------------------------------------------

    async def event_counts(
        self, account_id: str | None, *, since_ms: int, bucket_ms: int
    ) -> list[tuple[int, str, int]]:
        sql = (
            "SELECT (time_ms / ?) * ?, state, count(*) FROM events "
            "WHERE id >= ? AND time_ms >= ? AND (? IS NULL OR account_id = ?) "
            "GROUP BY 1, 2 ORDER BY 1"
        )
        # An event's id is never below time_ms * 1000: the id bound narrows the index range,
        # the time condition makes it exact (ids follow write order, not event time).
        args = (bucket_ms, bucket_ms, since_ms * 1000, since_ms, account_id, account_id)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def state_counts(self, account_id: str | None) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            where = "" if account_id is None else " WHERE account_id = ?"
            args = () if account_id is None else (account_id,)
            out = {s.value: 0 for s in MessageState}
            for state, n in conn.execute(
                f"SELECT state, count(*) FROM messages{where} GROUP BY state", args
            ):
                out[state] = n
            dlq_where = " WHERE dlq_id IS NOT NULL" + (
                "" if account_id is None else " AND account_id = ?"
            )
            out["dlq"] = conn.execute(f"SELECT count(*) FROM messages{dlq_where}", args).fetchone()[
                0
            ]
            return out

        counts: dict[str, int] = await self._read(run)
        return counts

    async def delivery_latencies(
        self, account_id: str | None, *, since_ms: int, limit: int
    ) -> list[int]:
        sql = (
            "SELECT e.time_ms - m.not_before_ms FROM events e "
            "JOIN messages m ON m.id = e.message_id WHERE e.id >= ? AND e.time_ms >= ? "
            "AND e.state = 'DELIVERED' AND (? IS NULL OR e.account_id = ?)"
            " ORDER BY e.id DESC LIMIT ?"
        )
        args = (since_ms * 1000, since_ms, account_id, account_id, limit)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [max(0, int(r[0])) for r in rows]

    # -- housekeeping -----------------------------------------------------------------------

    async def purge(self, *, now_ms: int, retention_ms: int, dlq_retention_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            removed = conn.execute(Q["purge_dedup"], (now_ms,)).rowcount
            removed += conn.execute(Q["purge_dlq"], (now_ms - dlq_retention_ms,)).rowcount
            removed += conn.execute(Q["purge_events"], (now_ms - retention_ms,)).rowcount
            removed += conn.execute(Q["purge_messages"], (now_ms - retention_ms,)).rowcount
            return removed

        count: int = await self._writer.call(run)
        return count
