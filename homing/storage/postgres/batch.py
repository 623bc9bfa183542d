"""Group commit for publishes: concurrent plain inserts share one statement and one commit.

Each publish request inserts one message or a few. Run one by one, every request would pay a
round trip and, above all, a WAL flush of its own, and the pool's size would cap how many wait
for one at a time. The SQLite backend's single writer avoids this by committing together
whatever arrived while the previous transaction was committing; this does the same on
PostgreSQL for the hot path (no dedup key, no queue, no flow key: `messages.is_plain`).

Up to `max_inflight` batches run at once, so a lone request starts at once (no added latency
at low load), and under load each batch takes everything that queued while the others ran.
Every caller gets its answer only after its batch committed. A batch that fails for a reason
other than the connection is split up, so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homing.errors import StorageUnavailable
from homing.models import InsertResult, NewMessage
from homing.storage import handoff
from homing.storage.postgres.listener import Announcer
from homing.storage.postgres.messages import insert
from homing.storage.postgres.pool import Database

if TYPE_CHECKING:
    from homing.storage.base import Taker

Inserted = tuple[list[InsertResult], int | None]


@dataclass(slots=True)
class _Request:
    messages: Sequence[NewMessage]
    now_ms: int
    future: asyncio.Future[Inserted]


class InsertBatcher:
    def __init__(
        self,
        db: Database,
        announcer: Announcer,
        *,
        max_inflight: int = 4,
        max_messages: int = 1000,
        taker: Callable[[], Taker | None] = lambda: None,
    ) -> None:
        self._db = db
        self._announcer = announcer
        self._taker = taker  # the engine messages due at once are handed to (`Taker`)
        self._max_inflight = max_inflight
        self._max_messages = max_messages
        self._queue: deque[_Request] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def insert(self, messages: Sequence[NewMessage], now_ms: int) -> Inserted:
        """Insert plain messages (see `messages.is_plain`) in a batch with other callers'."""
        future: asyncio.Future[Inserted] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(messages, now_ms, future))
        self._start()
        return await future

    def _start(self) -> None:
        while self._queue and len(self._tasks) < self._max_inflight:
            batch = [self._queue.popleft()]
            size = len(batch[0].messages)
            while self._queue and size + len(self._queue[0].messages) <= self._max_messages:
                size += len(self._queue[0].messages)
                batch.append(self._queue.popleft())
            task = asyncio.create_task(self._run(batch), name="homing-pg-insert")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start()

    async def _run(self, batch: list[_Request]) -> None:
        try:
            await self._execute(batch)
        except BaseException as exc:  # cancelled at shutdown, or a bug: never leave callers
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(
                        exc if isinstance(exc, Exception) else StorageUnavailable()
                    )
            if not isinstance(exc, Exception):
                raise

    async def _execute(self, batch: list[_Request]) -> None:
        messages = [m for r in batch for m in r.messages]
        times = [r.now_ms for r in batch for _ in r.messages]
        now_ms = max(times)
        announce = self._announcer.inline()
        taker = self._taker()
        lease = handoff.reserve(taker, messages, now_ms)
        taken: list[NewMessage] = []
        try:
            _, earliest = await self._db.run(
                lambda conn: insert(
                    conn, messages, now_ms, 0, times, announce=announce, lease=lease, taken=taken
                ),
                transaction=False,
            )
        except BaseException as exc:
            handoff.settle(taker, lease, taken, durable=False)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, StorageUnavailable) or len(batch) == 1:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                return
            for r in batch:  # find the request at fault; the others still commit
                await self._execute([r])
            return
        handoff.settle(taker, lease, taken, durable=True)
        self._announcer.after_commit(earliest, announced=announce)
        handed = {m.id for m in taken}
        for r in batch:
            if not r.future.done():
                # The wake-up hint: messages the engine was handed need no claim.
                due = min((m.not_before_ms for m in r.messages if m.id not in handed), default=None)
                r.future.set_result(([InsertResult(m.id, m.url) for m in r.messages], due))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Let batches in flight commit (their callers are waiting), then stop."""
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
