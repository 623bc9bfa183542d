"""The SQLite WAL file stays bounded under a steady stream of commits.

Checkpoints run beside the writer; under load a checkpoint never finds the WAL without new
frames, so the file would only grow (9 GB for a million messages in the benchmark) unless the
writer itself finishes a checkpoint now and then (`Writer._checkpoints`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from homing.models import DeliverySpec, NewMessage
from homing.storage.sqlite.backend import SqliteStorage
from homing.storage.sqlite.connection import WAL_WRITER_CHECKPOINT_PAGES

T0 = 1_800_000_000_000


def _batch(start: int, size: int) -> list[NewMessage]:
    return [
        NewMessage(
            id=f"msg_{n:08d}",
            account_id="acct",
            url="https://example.com/hook",
            body=b"x" * 1000,
            spec=DeliverySpec(),
            created_ms=T0,
            not_before_ms=T0 + 3_600_000,  # held back: nothing is delivered
        )
        for n in range(start, start + size)
    ]


async def test_the_wal_starts_over_while_publishes_keep_coming(tmp_path: Path) -> None:
    storage = SqliteStorage(str(tmp_path / "homing.db"))
    await storage.open()
    wal = tmp_path / "homing.db-wal"
    largest = 0
    try:
        # Eight publishers at once for ~60,000 messages of 1 KB: ~100 MB through the WAL.
        async def publisher(first: int) -> None:
            nonlocal largest
            for start in range(first, first + 7_500, 50):
                await storage.insert_messages(_batch(start, 50), now_ms=T0, dedup_window_ms=0)
                largest = max(largest, wal.stat().st_size)

        await asyncio.gather(*(publisher(n * 7_500) for n in range(8)))
    finally:
        await storage.close()

    limit = 4 * WAL_WRITER_CHECKPOINT_PAGES * 4096  # a few catch-up lengths at most
    assert largest < limit, f"the WAL grew to {largest / 2**20:.0f} MiB"
