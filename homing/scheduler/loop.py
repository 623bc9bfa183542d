"""The scheduler: fire every due cron schedule, once per tick, on any number of nodes.

    wait (next fire time | wake | poll) -> due_schedules -> for each: the tick to fire
        (cron.due_tick: the latest missed tick within the grace period, never a burst)
        -> messages (publish.schedule_messages) -> record_fire (unique per schedule and tick)

No leader election: every node may run this loop; the store's unique key on (schedule, tick)
makes a second node's fire of the same tick a no-op. Time comes from the database where it has a
shared clock, so a node whose own clock is skewed neither fires early nor twice.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from homing import ids
from homing.actions.publish import resolve_targets
from homing.actions.schedules import schedule_now
from homing.clock import Clock
from homing.cron import CronSchedule, due_tick
from homing.errors import HomingError
from homing.health import Health
from homing.metrics import Metrics
from homing.models import Schedule
from homing.publish import Destination, is_url, schedule_messages
from homing.storage.base import Storage

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def _cron(text: str) -> CronSchedule:
    return CronSchedule.parse(text)


class Scheduler:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        grace_ms: int = 3_600_000,
        poll_interval_ms: int = 1_000,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.metrics = metrics
        self.health = health or Health()
        self.storage = storage
        self.clock = clock
        self.grace_ms = grace_ms
        self.poll_interval_ms = poll_interval_ms
        self.fired = 0
        self._wake = asyncio.Event()
        self._target = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        storage.add_wake_listener(self._on_wake)

    def _on_wake(self, due_ms: int) -> None:
        if due_ms <= self._target:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="homing-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _now(self) -> int:
        return await schedule_now(self.storage, self.clock)

    async def _loop(self) -> None:
        while not self._stopping:
            self._target = 2**62
            self._wake.clear()
            try:
                await self.run_once()
                nxt = await self.storage.next_schedule_ms()
            except Exception as exc:
                log.exception("scheduler round failed", extra={"event": "scheduler.failed"})
                if self.metrics is not None:
                    self.metrics.task_failures.labels("scheduler").inc()
                self.health.fail(
                    "scheduler", f"schedule rounds failing: {str(exc) or type(exc).__name__}"
                )
                nxt = None
            else:
                self.health.clear("scheduler")
            local = self.clock.now_ms()
            target = local + self.poll_interval_ms
            if nxt is not None:
                target = min(target, nxt)
            self._target = target
            if not self._wake.is_set() and not self._stopping:
                await self.clock.sleep_until(target, self._wake)

    async def run_once(self) -> int:
        """Fire every schedule that is due now; returns how many fired."""
        now = await self._now()
        fired = 0
        for schedule in await self.storage.due_schedules(now_ms=now, limit=500):
            try:
                fired += await self._fire(schedule, now)
            except Exception:
                log.exception("schedule %s failed to fire", schedule.id)
        return fired

    async def _fire(self, schedule: Schedule, now: int) -> int:
        cron = _cron(schedule.cron)
        tick = due_tick(
            cron,
            last_fire_ms=schedule.last_fire_ms,
            created_ms=schedule.created_ms,
            now_ms=now,
            grace_ms=self.grace_ms,
        )
        next_fire = cron.next_after(now)
        if tick is None:
            await self.storage.record_fire(
                schedule, tick_ms=None, messages=[], next_fire_ms=next_fire, error=None, now_ms=now
            )
            return 0
        stored = schedule.destination
        destination = Destination(url=stored) if is_url(stored) else Destination(group=stored)
        # A group that is gone does not stop the schedule: the fire is recorded with the error.
        targets = await resolve_targets(self.storage, schedule.account_id, destination)
        error = targets.problem
        messages = schedule_messages(schedule, targets.endpoints, now_ms=now, new_id=ids.message_id)
        try:
            fired = await self.storage.record_fire(
                schedule, tick_ms=tick, messages=messages, next_fire_ms=next_fire, error=error,
                now_ms=now,
            )  # fmt: skip
        except HomingError as exc:
            log.warning("schedule %s: %s", schedule.id, exc.message)
            return 0
        if fired:
            self.fired += 1
            if self.metrics is not None:
                self.metrics.schedule_fires.inc()
            log.info(
                "schedule %s fired for %d (%d messages)",
                schedule.id,
                tick,
                len(messages),
                extra={"event": "schedule.fired", "schedule_id": schedule.id, "tick_ms": tick},
            )
        return int(fired)
