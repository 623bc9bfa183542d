"""The SQLite writer under another process's write lock (an admin command writing at the same
time): publishes wait for the lock, the event loop does not."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from homing.errors import StorageUnavailable
from homing.models import DeliverySpec, NewMessage
from homing.storage.sqlite.backend import SqliteStorage
from homing.storage.sqlite.connection import RESERVE_BYTES, Writer

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


@pytest.mark.asyncio
async def test_a_held_write_lock_delays_the_publish_but_never_blocks_the_event_loop(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "homing.db")
    storage = SqliteStorage(path, synchronous="NORMAL", exclusive=False)
    await storage.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        # Given another connection holding the write lock
        other.execute("BEGIN IMMEDIATE")
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
