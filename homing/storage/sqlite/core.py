"""What every part of the SQLite backend shares: its named queries, its connections, the log.

The backend is split by concern (accounts.py, messages.py, delivery.py, queues.py,
url_groups.py, schedules.py, flow.py, stats.py), like the PostgreSQL one; each part is a mixin
of `SqliteStorage` built on `Core`.

Where a statement runs is chosen for speed (see `connection.py`): writes go through the single
group-committing `Writer`; hot writes of bounded size run inline on the event loop (callers
pass `inline=True` only under the budgets below); reads go to the reader pool, or, for indexed
point lookups on every request, to `_read_now` on the event-loop thread.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from homing.errors import StorageUnavailable
from homing.models import LogState
from homing.storage.queries import load_queries

if TYPE_CHECKING:
    from homing.storage.base import Taker
from homing.storage.sqlite.connection import Readers, Writer

Q = load_queries("homing.storage.sqlite")
T = TypeVar("T")
EventRow = tuple[str, str, int, LogState, dict[str, Any] | None]

# Writes run on the event-loop thread (see connection.py) only while they are this small;
# larger ones go to the writer thread so that they never stall the loop. A claim takes at most
# this many body bytes per round (and at least one message), for the same reason.
INLINE_INSERT_LIMIT = 100
INLINE_BYTES = 1 << 20


def marks(count: int) -> str:
    """`?, ?, ...`: the placeholders of an IN list of `count` values."""
    return ",".join("?" * count)


# The statement sizes `insert_rows` uses: a few fixed ones, so that the connection's statement
# cache (128 by default) holds them all, and small enough that a row of a message (23 values)
# times the largest stays within the 999 parameters of SQLite builds before 3.32.
ROW_CHUNKS = (32, 8, 1)


@functools.lru_cache(maxsize=64)
def _rows_statement(query: str, rows: int) -> str:
    head, _, values = query.rpartition("VALUES")
    return f"{head}VALUES {', '.join([values.strip()] * rows)}"


def insert_rows(conn: sqlite3.Connection, query: str, rows: Sequence[Sequence[Any]]) -> None:
    """`query`, an INSERT of one row (`... VALUES (?, ...)`, plain `?` parameters only), for
    every row, with one statement per `ROW_CHUNKS` size instead of one execution per row: a
    statement of many rows costs about a quarter less per row than as many executions of one
    (per message, the insert of its row and its log entry was the largest part of a publish's
    own CPU)."""
    at, count = 0, len(rows)
    for size in ROW_CHUNKS:
        if count - at < size:
            continue
        statement = _rows_statement(query, size)
        while count - at >= size:
            conn.execute(statement, [value for row in rows[at : at + size] for value in row])
            at += size


class EventLog:
    """Writes log entries. An entry's id encodes its time (`time_ms * 1000`, or one more than
    the last id when that is larger), so ids follow write order and time ranges are id ranges.
    Only used inside writer transactions (one at a time), so no two callers race here."""

    def __init__(self) -> None:
        self.last_id = 0

    def _next_id(self, now_ms: int) -> int:
        self.last_id = max(now_ms * 1000, self.last_id + 1)
        return self.last_id

    def write(self, conn: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
        insert_rows(
            conn,
            Q["log_events"],
            [
                (
                    self._next_id(t),
                    account,
                    message_id,
                    t,
                    state.value,
                    orjson.dumps(info) if info else None,
                    message_id,
                )
                for account, message_id, t, state, info in rows
            ],
        )


class Core:
    """The connections and the log; each concern's mixin reads and writes through these."""

    _writer: Writer
    _readers: Readers | None
    # Read on the event-loop thread itself, for indexed point lookups on every request (the
    # token): a WAL reader never waits for the writer, and a lookup in the page cache costs
    # a few microseconds, far less than a hop to the reader pool and back.
    _inline: sqlite3.Connection | None
    _events: EventLog
    _taker: Taker | None  # set by Storage.attach_taker

    if TYPE_CHECKING:  # provided by Storage; declared for the type checker only

        def _wake(self, due_ms: int) -> None: ...

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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
        return await self._read(fn)
