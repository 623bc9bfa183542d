"""The SQLite writer under another process's write lock (an admin command writing at the same
time): publishes wait for the lock, the event loop does not. Gathered writes, and the chunked
multi-row inserts they use."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from homing.errors import StorageUnavailable
from homing.models import DeliverySpec, LogState, MessageFilter, NewMessage
from homing.storage.sqlite.backend import SqliteStorage
from homing.storage.sqlite.connection import RESERVE_BYTES, Writer
from homing.storage.sqlite.core import ROW_CHUNKS, Q, insert_rows

T0 = 1_700_000_000_000


def message(n: int) -> NewMessage:
    return NewMessage(
        id=f"msg_{n:04d}",
        account_id="acct",
        url="https://example.com/hook",
        body=b"x",
        spec=DeliverySpec(),
        created_ms=T0,
        not_before_ms=T0,
    )


def _queued_behind_a_lock(path: str) -> sqlite3.Connection:
    """Another connection holding the write lock: publishes made meanwhile wait in the
    writer's queue, and are written in one transaction when it lets go."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


@pytest.mark.asyncio
async def test_a_held_write_lock_delays_the_publish_but_never_blocks_the_event_loop(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "homing.db")
    storage = SqliteStorage(path, synchronous="NORMAL", exclusive=False)
    await storage.open()
    # Given another connection holding the write lock
    other = _queued_behind_a_lock(path)
    try:
        publish = asyncio.create_task(
            storage.insert_messages([message(1)], now_ms=T0, dedup_window_ms=0)
        )

        # Then the loop keeps running while the publish waits
        ticks = 0
        for _ in range(30):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 30 and not publish.done()

        # And the publish completes once the lock is released
        other.execute("COMMIT")
        [result] = await asyncio.wait_for(publish, 5)
        assert result.message_id == "msg_0001"
        assert (await storage.get_message("acct", "msg_0001")) is not None
    finally:
        other.close()
        await storage.close()


class _Fatal(BaseException):
    """Something no operation should raise (think KeyboardInterrupt on the loop thread)."""


@pytest.mark.asyncio
async def test_if_the_writer_dies_every_waiting_caller_gets_an_error_instead_of_hanging(
    tmp_path: Path,
) -> None:
    writer = Writer(str(tmp_path / "w.db"), synchronous="NORMAL")
    await writer.start()

    def fatal(conn: sqlite3.Connection) -> None:
        raise _Fatal()

    def harmless(conn: sqlite3.Connection) -> int:
        return 1

    # Given a transaction whose first operation kills the writer, and others queued behind it
    doomed = asyncio.create_task(writer.call(fatal, inline=True))
    queued = [asyncio.create_task(writer.call(harmless, inline=True)) for _ in range(3)]

    # Then every caller gets an answer, and later calls are refused at once
    results = await asyncio.wait_for(
        asyncio.gather(doomed, *queued, return_exceptions=True), timeout=5
    )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    with pytest.raises(StorageUnavailable):
        await writer.call(harmless)
    await writer.stop()


@pytest.mark.asyncio
async def test_the_server_keeps_a_disk_full_reserve_that_admin_commands_leave_alone(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "homing.db")
    reserve = tmp_path / "homing.db.reserve"
    server = SqliteStorage(path, synchronous="NORMAL")
    await server.open()
    try:
        # The server holds room for draining a full disk (see connection.py)...
        assert reserve.stat().st_size == RESERVE_BYTES
        # ...which an admin command opening the same store neither takes nor gives back.
        admin = SqliteStorage(path, synchronous="NORMAL", exclusive=False)
        await admin.open()
        await admin.close()
        assert reserve.stat().st_size == RESERVE_BYTES
    finally:
        await server.close()
    assert not reserve.exists(), "a stopped server leaves its reserve behind"


@pytest.mark.asyncio
async def test_publishes_written_in_one_transaction_each_get_their_own_answer(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "homing.db")
    storage = SqliteStorage(path, synchronous="NORMAL", exclusive=False)
    await storage.open()
    other = _queued_behind_a_lock(path)
    try:
        # Given twenty publishes waiting together, two of them with the same deduplication key
        first = dataclasses.replace(message(100), dedup_key="k")
        again = dataclasses.replace(message(101), dedup_key="k")
        batches = [[message(2 * n), message(2 * n + 1)] for n in range(18)] + [[first], [again]]
        tasks = [
            asyncio.create_task(storage.insert_messages(b, now_ms=T0, dedup_window_ms=60_000))
            for b in batches
        ]
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 5)

        # Then every publish is answered with its own messages, in its own order
        for batch, answer in zip(batches[:18], answers[:18], strict=True):
            assert [r.message_id for r in answer] == [m.id for m in batch]
            assert not any(r.deduplicated for r in answer)
        # And the second of the same key is deduplicated against the first, written with it
        assert answers[18][0].message_id == "msg_0100" and not answers[18][0].deduplicated
        assert answers[19][0].message_id == "msg_0100" and answers[19][0].deduplicated
        assert await storage.get_message("acct", "msg_0101") is None
        # And every stored message is logged CREATED once
        for n in [*range(36), 100]:
            logs = await storage.list_logs(
                "acct",
                filter=MessageFilter(message_ids=(f"msg_{n:04d}",)),
                before_id=None,
                count=10,
            )
            assert [e.state for e in logs.items] == [LogState.CREATED]
    finally:
        other.close()
        await storage.close()


@pytest.mark.asyncio
async def test_a_publish_that_fails_in_a_shared_transaction_fails_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "homing.db")
    storage = SqliteStorage(path, synchronous="NORMAL", exclusive=False)
    await storage.open()
    try:
        await storage.insert_messages([message(7)], now_ms=T0, dedup_window_ms=0)
        other = _queued_behind_a_lock(path)
        try:
            # Given publishes waiting together, one of which cannot be stored (an id taken)
            good = [
                asyncio.create_task(
                    storage.insert_messages([message(n)], now_ms=T0, dedup_window_ms=0)
                )
                for n in (1, 2)
            ]
            bad = asyncio.create_task(
                storage.insert_messages([message(3), message(7)], now_ms=T0, dedup_window_ms=0)
            )
            more = asyncio.create_task(
                storage.insert_messages([message(4)], now_ms=T0, dedup_window_ms=0)
            )
            await asyncio.sleep(0.05)
            other.execute("COMMIT")
        finally:
            other.close()

        # Then that publish fails, with nothing of it stored, and the others are stored
        with pytest.raises(sqlite3.IntegrityError):
            await asyncio.wait_for(bad, 5)
        assert await storage.get_message("acct", "msg_0003") is None
        for task, n in zip([*good, more], (1, 2, 4), strict=True):
            [result] = await asyncio.wait_for(task, 5)
            assert result.message_id == f"msg_{n:04d}"
            assert await storage.get_message("acct", result.message_id) is not None
    finally:
        await storage.close()


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 31, 32, 33, 100])
def test_rows_inserted_in_chunks_all_arrive_in_order(count: int) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER)")
    rows = [(n, f"row {n}", n * 2) for n in range(count)]

    insert_rows(conn, "INSERT INTO t (a, b, c) VALUES (?, ?, (SELECT ? * 1))", rows)

    assert conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows


def test_a_chunk_of_message_rows_fits_the_oldest_parameter_limit() -> None:
    # SQLite before 3.32 allows 999 parameters a statement; a message row has 23.
    values = Q["insert_messages"].rpartition("VALUES")[2].count("?")
    assert max(ROW_CHUNKS) * values <= 999
