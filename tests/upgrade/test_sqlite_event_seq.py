"""A SQLite store of schema 4, where a log entry found its message by id, upgrades to schema 5
(an entry also names its message's seq; see migrations/0005_event_message_seq.sql) with every
message, its log, the DLQ and queue order intact, and keeps working.

The schema-4 store is written by this release's storage code with migration 5 withheld and the
statements that read and write the log as schema 4 had them, so it holds messages in every state
made the way the code makes them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from homing.models import FlowControl, LogEntry, Message, MessageFilter, MessageState
from homing.storage.queries import load_migrations
from homing.storage.sqlite import backend
from homing.storage.sqlite.backend import SqliteStorage
from homing.storage.sqlite.core import Q
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    failed,
    insert,
    log_states,
    new_message,
    retry,
)

# The statements of schema 4 that name the log's columns. Today's writer passes the message id a
# second time, for `message_seq`; schema 4 has no such column, so `nullif(info, id)` reads it
# and keeps `info` (a BLOB of JSON or NULL, never equal to a text id).
SCHEMA_4 = {
    "log_events": "INSERT INTO events (id, account_id, message_id, time_ms, state, info) "
    "VALUES (?, ?, ?, ?, ?, nullif(?, ?))",
    "list_logs": Q["list_logs"].replace("m.seq = e.message_seq", "m.id = e.message_id", 1),
    "delivery_latencies": Q["delivery_latencies"].replace(
        "m.seq = e.message_seq", "m.id = e.message_id", 1
    ),
}


async def everything(store: SqliteStorage, ids: list[str]) -> tuple[Any, ...]:
    """What the API reads back: each message, the whole log, the DLQ."""
    messages: list[Message | None] = [await store.get_message(ACCOUNT, i) for i in ids]
    log: list[LogEntry] = []
    before: int | None = None
    while True:
        page = await store.list_logs(
            ACCOUNT, filter=MessageFilter(), before_id=before, count=7, newest_first=True
        )
        log.extend(page.items)
        if page.cursor is None:
            break
        before = int(page.cursor)
    dlq = await store.list_dlq(ACCOUNT, filter=MessageFilter(), cursor=None, count=100)
    return messages, log, dlq.items


async def test_a_schema_4_store_upgrades_with_everything_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "homing.db")
    # Given a store of schema 4
    monkeypatch.setattr(
        backend,
        "load_migrations",
        lambda package: [(v, sql) for v, sql in load_migrations(package) if v <= 4],
    )
    for name, sql in SCHEMA_4.items():
        monkeypatch.setitem(Q, name, sql)
    old = SqliteStorage(path)
    await old.open()
    try:
        # with messages in every state: a queue of three (one admitted, two queued, FIFO), a
        # flow-control key of parallelism 1 (one active, one waiting), one delivered, one
        # failed into the DLQ, one retrying, one delayed, one canceled
        await old.upsert_queue(ACCOUNT, "q", parallelism=1, paused=False, now_ms=T0)
        queued = await insert(old, *[new_message(queue="q") for _ in range(3)])
        key = FlowControl("k", parallelism=1)
        flowing = await insert(old, new_message(flow=key), new_message(flow=key))
        [done, dead, again] = await insert(old, *[new_message(max_retries=0) for _ in range(3)])
        [later, canceled] = await insert(
            old, new_message(delay_ms=3_600_000), new_message(delay_ms=3_600_000)
        )
        claims = {c.message.id: c for c in await claim(old)}
        assert set(claims) == {queued[0], flowing[0], done, dead, again}
        assert await old.record_outcomes(
            [delivered(claims[done]), failed(claims[dead]), retry(claims[again])]
        ) == [True, True, True]
        assert (
            await old.cancel_messages(
                ACCOUNT, message_ids=[canceled], filter=None, limit=None, now_ms=T0 + 200
            )
            == 1
        )
        ids = [*queued, *flowing, done, dead, again, later, canceled]
        states = [m.state if m else None for m in (await everything(old, ids))[0]]
        assert states == [
            MessageState.ACTIVE,
            MessageState.QUEUED,
            MessageState.QUEUED,
            MessageState.ACTIVE,
            MessageState.WAITING,
            MessageState.DELIVERED,
            MessageState.FAILED,
            MessageState.READY,
            MessageState.READY,
            MessageState.CANCELED,
        ]
        before = await everything(old, ids)
    finally:
        await old.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        # (an entry whose message was purged: no message to join, listed neither before nor after)
        db.execute(
            "INSERT INTO events (id, account_id, message_id, time_ms, state, info) "
            "VALUES (1, ?, 'msg_purged', 0, 'CREATED', NULL)",
            (ACCOUNT,),
        )
        db.commit()
    monkeypatch.undo()

    # When this release opens it
    store = SqliteStorage(path)
    await store.open()
    try:
        # Then it is at schema 5, and the API reads back exactly what it read before
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT max(version) FROM homing_schema_version").fetchone() == (5,)
            linked = db.execute(
                "SELECT count(*), count(*) FILTER (WHERE e.message_seq IS NOT m.seq) "
                "FROM events e JOIN messages m ON m.id = e.message_id"
            ).fetchone()
            assert linked == (len(before[1]), 0)
            orphans = db.execute(
                "SELECT message_id, message_seq FROM events "
                "WHERE message_id NOT IN (SELECT id FROM messages)"
            ).fetchall()
            assert orphans == [("msg_purged", None)]
        assert await everything(store, ids) == before
        assert [e.dlq_id for e in before[2]] == [before[0][ids.index(dead)].dlq_id]

        # And it goes on: the active claims finish, the queue admits its next in FIFO order,
        # the key lets its waiting message start, and the new entries are logged
        assert await store.record_outcomes(
            [delivered(claims[queued[0]], at=T0 + 300), delivered(claims[flowing[0]], at=T0 + 300)]
        ) == [True, True]
        next_claims = await claim(store, now=T0 + 20_000)
        assert {c.message.id for c in next_claims} == {queued[1], flowing[1], again}
        assert await log_states(store, queued[0]) == ["CREATED", "ACTIVE", "DELIVERED"]
        assert await log_states(store, queued[1]) == ["CREATED", "ACTIVE"]
        assert await log_states(store, canceled) == ["CREATED", "CANCEL_REQUESTED", "CANCELED"]
    finally:
        await store.close()
