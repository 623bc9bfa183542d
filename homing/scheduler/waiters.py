"""Workflow waiter timeouts: a waiter whose deadline passes gets its timed-out result step.

    wait (earliest deadline | poll) -> actions.events.expire -> forget old kept events

Runs on `worker` and `all` nodes, like the scheduler; every node may run it at once (a waiter's
result is accepted once by its run, `actions/events.py`). A failing round is reported to Health
(`waiters`) and counted (`homing_task_failures{task="waiters"}`) and tried again.
"""

from __future__ import annotations

import asyncio
import logging

from homing.actions import events
from homing.actions.context import Services

log = logging.getLogger(__name__)

TASK = "waiters"


class WaiterTimer:
    def __init__(self, svc: Services, *, poll_interval_ms: int = 1_000) -> None:
        self.svc = svc
        self.poll_interval_ms = poll_interval_ms
        self.timed_out = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="homing-waiter-timeouts")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_once(self) -> int:
        """Time out every waiter that is due now; returns how many this node resolved."""
        svc = self.svc
        now = svc.clock.now_ms()
        resolved = await events.expire(svc, now_ms=now)
        # Events kept for a run's next wait live as long as ended runs are kept.
        await svc.storage.expire_events(before_ms=now - svc.settings.retention_ms)
        self.timed_out += resolved
        return resolved

    async def _loop(self) -> None:
        svc = self.svc
        while not self._stopping:
            self._wake.clear()
            nxt: int | None = None
            try:
                await self.run_once()
                nxt = await svc.storage.next_waiter_deadline()
            except Exception as exc:
                log.exception("waiter timeouts failed", extra={"event": "workflow.waiters_failed"})
                svc.metrics.task_failures.labels(TASK).inc()
                svc.health.fail(TASK, f"waiter timeouts failing: {str(exc) or type(exc).__name__}")
            else:
                svc.health.clear(TASK)
            target = svc.clock.now_ms() + self.poll_interval_ms
            if nxt is not None:
                target = min(target, nxt)
            if not self._stopping:
                await svc.clock.sleep_until(target, self._wake)
