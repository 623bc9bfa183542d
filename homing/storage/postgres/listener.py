"""Wake-ups from other nodes: one dedicated connection LISTENs on `homing_work`.

Every statement that makes work claimable sends `NOTIFY homing_work, '<due_ms>'` in its own
transaction, so PostgreSQL delivers it at commit, to every node. This listener hands each
`due_ms` to the storage's wake listeners (`Storage._wake`). It is only a hint: the engine polls
as well, so a notification lost while the connection is down delays work, never loses it.

The connection is watched (termination callback, plus a `SELECT 1` when it has been quiet for a
while, for connections that die silently) and re-opened in a loop with exponential backoff, as
procrastinate's and saq's listeners do. After a reconnect it reports `due_ms = 0` once, so that
anything announced while it was away is looked at now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "homing_work"
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
HEALTH_CHECK_S = 15.0
HEALTH_TIMEOUT_S = 5.0


class Listener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        on_due: Callable[[int], None],
        *,
        ignore_pid: Callable[[int], bool] = lambda pid: False,
    ) -> None:
        self._connect = connect
        self._on_due = on_due
        self._ignore_pid = ignore_pid
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while LISTEN is active (tests wait on it)
        self.connections = 0  # how many times LISTEN was (re)established

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="homing-pg-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notified(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if self._ignore_pid(pid):
            return
        try:
            due = int(payload)
        except ValueError:
            return
        self._on_due(due)

    async def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        while True:
            conn: Any = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                self.connections += 1
                self.connected.set()
                backoff = MIN_BACKOFF_S
                if self.connections > 1:
                    log.info("listening for work again", extra={"event": "storage.listen"})
                    self._on_due(0)  # whatever was announced while we were away
                await self._watch(conn, lost)
                log.warning(
                    "lost the LISTEN connection; reconnecting",
                    extra={"event": "storage.listen_lost"},
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "LISTEN connection failed (%s); retrying in %.1f s",
                    exc,
                    backoff,
                    extra={"event": "storage.listen_failed"},
                )
            finally:
                self.connected.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    @staticmethod
    async def _watch(conn: Any, lost: asyncio.Event) -> None:
        """Return when the connection is gone."""
        while not lost.is_set() and not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), HEALTH_CHECK_S)
            except TimeoutError:
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), HEALTH_TIMEOUT_S)
                except Exception:
                    return
