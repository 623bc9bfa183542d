"""Wake-ups between nodes: NOTIFY when work becomes claimable, LISTEN for other nodes' work.

`Announcer`: a statement that makes work claimable sends `NOTIFY homing_work, '<due_ms>'` inside
its own transaction, so PostgreSQL delivers it at commit, to every node. But PostgreSQL
serializes the commits of all notifying transactions on one lock held through the WAL flush,
which halves publish throughput under load (measured: 16 concurrent publishers, 312/s with a
NOTIFY in each transaction, 629/s without). So at most one transaction per node and window
(50 ms) carries its own NOTIFY; work committed by the others in that window is announced by
one coalesced NOTIFY (the earliest due) sent right after, in a transaction of its own. At low
rates every transaction notifies itself; under load, other nodes hear within 50 ms.

`Listener`: one dedicated connection LISTENs and hands each `due_ms` to the storage's wake
listeners (`Storage._wake`). It is only a hint: the engine polls as well, so a notification
lost while the connection is down delays work, never loses it.

The connection is watched (termination callback, plus a `SELECT 1` when it has been quiet for a
while, for connections that die or stall silently) and re-opened in a loop with exponential
backoff, as procrastinate's and saq's listeners do. After a reconnect it reports `due_ms = 0`
once, so that anything announced while it was away is looked at now. While it is not listening
it reports itself to the node's `Health` (`storage.listen`), so `/readyz` names the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from homing.health import Health

log = logging.getLogger(__name__)

CHANNEL = "homing_work"
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0  # also how long a node may stay unready after the database returns
HEALTH_CHECK_S = 5.0  # a quiet connection is checked this often
HEALTH_TIMEOUT_S = 2.0  # default wait for that check's answer
HEALTH_NAME = "storage.listen"
ANNOUNCE_WINDOW_S = 0.05


class Announcer:
    """Which transactions NOTIFY themselves, and one trailing NOTIFY for the others."""

    def __init__(
        self, send: Callable[[int], Awaitable[None]], *, window_s: float = ANNOUNCE_WINDOW_S
    ) -> None:
        self._send = send
        self._window = window_s
        self._last = -window_s
        self._pending: int | None = None
        self._task: asyncio.Task[None] | None = None

    def inline(self) -> bool:
        """True: the caller's transaction carries its own NOTIFY (once per window)."""
        now = time.monotonic()
        if now - self._last >= self._window:
            self._last = now
            return True
        return False

    def after_commit(self, due: int | None, *, announced: bool) -> None:
        """Work due at `due` committed; announce it unless its transaction did."""
        if due is None or announced:
            return
        self._pending = due if self._pending is None else min(self._pending, due)
        if self._task is None:
            self._task = asyncio.create_task(self._flush(), name="homing-pg-announce")

    async def _flush(self) -> None:
        try:
            while self._pending is not None:
                delay = self._last + self._window - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                due, self._pending = self._pending, None
                self._last = time.monotonic()
                try:
                    await self._send(due)
                except Exception as exc:  # a hint: the other nodes poll anyway
                    log.debug("NOTIFY failed: %s", exc)
        finally:
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Listener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        on_due: Callable[[int], None],
        *,
        ignore_pid: Callable[[int], bool] = lambda pid: False,
        check_timeout_s: float = HEALTH_TIMEOUT_S,
        health: Health | None = None,
    ) -> None:
        self._connect = connect
        self._on_due = on_due
        self._ignore_pid = ignore_pid
        self._check_timeout_s = check_timeout_s
        self._health = health
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while LISTEN is active (tests wait on it)
        self.connections = 0  # how many times LISTEN was (re)established
        self.server_pid: int | None = None  # of the listening session, while there is one

    def report_to(self, health: Health) -> None:
        self._health = health

    def start(self) -> None:
        if self._task is None:
            self._down("not connected yet")
            self._task = asyncio.create_task(self._run(), name="homing-pg-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._health is not None:
            self._health.clear(HEALTH_NAME)

    def _down(self, reason: str) -> None:
        if self._health is not None:
            self._health.fail(HEALTH_NAME, f"not listening for other nodes' work: {reason}")

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
            connections = self.connections
            try:
                await self._listen_once()
                log.warning(
                    "lost the LISTEN connection; reconnecting",
                    extra={"event": "storage.listen_lost"},
                )
                self._down("the connection was lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                log.warning(
                    "LISTEN connection failed (%s); retrying in %.1f s",
                    reason,
                    backoff,
                    extra={"event": "storage.listen_failed"},
                )
                self._down(reason)
            if self.connections > connections:
                backoff = MIN_BACKOFF_S  # it worked for a while: start the backoff over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _listen_once(self) -> None:
        """Connect, LISTEN, and return when the connection is gone."""
        conn = await self._connect()
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._notified)
            self.server_pid = conn.get_server_pid()
            self.connections += 1
            self.connected.set()
            if self._health is not None:
                self._health.clear(HEALTH_NAME)
            if self.connections > 1:
                log.info("listening for work again", extra={"event": "storage.listen"})
                self._on_due(0)  # whatever was announced while we were away
            await self._watch(conn, lost, self._check_timeout_s)
        finally:
            self.connected.clear()
            self.server_pid = None
            conn.terminate()

    @staticmethod
    async def _watch(conn: Any, lost: asyncio.Event, check_timeout_s: float) -> None:
        """Return when the connection is gone or no longer answers."""
        while not lost.is_set() and not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), HEALTH_CHECK_S)
            except TimeoutError:
                try:
                    await conn.fetchval("SELECT 1", timeout=check_timeout_s)
                except Exception:
                    return
