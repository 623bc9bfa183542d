"""The delivery engine: claim due messages, send them concurrently, record what happened.

    wait (wake hint | next due time | poll) -> claim_due (batch) -> one task per attempt
        -> Sender.send -> outcome.decide -> buffered -> record_outcomes (batch) -> wake

Outcomes are buffered and recorded together: while one batch is being committed the next one
gathers, so a busy engine makes one storage round trip for many attempts. Side tasks renew the
leases of attempts in flight, reclaim leases that expired elsewhere, and purge old records; one
that fails is logged, counted (`homing_task_failures_total{task="engine.reap"}`) and reported to
the node's `Health` until it succeeds again, so `/readyz` shows it.

Shutdown (`stop()`): stop claiming, let attempts in flight finish within the grace period, record
their outcomes, then release only what is still open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from homing import ids
from homing.clock import Clock
from homing.delivery import outcome
from homing.delivery.sender import Sender
from homing.delivery.workflows import RunDeliveries
from homing.errors import StorageUnavailable
from homing.health import Health
from homing.metrics import Metrics
from homing.models import AttemptOutcome, Claimed, Lease, OutcomeKind, SigningKeys
from homing.storage.base import Storage
from homing.telemetry import Telemetry

log = logging.getLogger(__name__)

# How far ahead the engine claims messages without a flow-control key (delays, retries): each
# is then sent at its due time with the claim already committed, not a commit after it.
CLAIM_AHEAD_MS = 20

# Calls of `Storage.purge` in one purge round at most (each removes up to a few thousand rows):
# enough to clear a day's backlog at 1,000 messages a second over a few rounds.
MAX_PURGE_CALLS = 1000


@dataclass(frozen=True, slots=True)
class EngineSettings:
    concurrency: int = 512
    claim_batch: int = 256
    lease_ms: int = 30_000
    poll_interval_ms: int = 1_000
    shutdown_timeout_s: float = 8.0
    reaper_interval_ms: int = 2_000
    purge_interval_ms: int = 60_000
    retention_ms: int = 7 * 86_400_000
    dlq_retention_ms: int = 7 * 86_400_000
    policy: outcome.Policy = outcome.Policy()


class KeyCache:
    """Signing keys per account, re-read at most once a second (rotation takes effect then;
    at once on the node that rotated: the runtime wires `notices.keys_rotated` to `forget`)."""

    def __init__(self, load: Callable[[str], Awaitable[SigningKeys]]) -> None:
        self._load = load
        self._keys: dict[str, tuple[float, SigningKeys]] = {}

    async def current(self, account_id: str) -> str:
        cached = self._keys.get(account_id)
        now = time.monotonic()
        if cached is None or now - cached[0] > 1.0:
            keys = await self._load(account_id)
            self._keys[account_id] = (now, keys)
            return keys.current
        return cached[1].current

    def forget(self, account_id: str) -> None:
        self._keys.pop(account_id, None)


class DeliveryEngine:
    def __init__(
        self,
        storage: Storage,
        sender: Sender,
        clock: Clock,
        *,
        settings: EngineSettings = EngineSettings(),
        node_id: str | None = None,
        metrics: Metrics | None = None,
        telemetry: Telemetry | None = None,
        health: Health | None = None,
    ) -> None:
        self.storage = storage
        self.sender = sender
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.telemetry = telemetry
        self.health = health or Health()
        self.node_id = node_id or "node_" + secrets.token_hex(6)
        self.keys = KeyCache(storage.signing_keys)
        self.runs = RunDeliveries(
            storage, metrics=metrics, max_callback_body=settings.policy.max_callback_body
        )
        self._dlq_ids = ids.DlqIdSource()
        self._wake = asyncio.Event()
        self._never = asyncio.Event()  # for waits nothing cuts short
        self._slot_freed = asyncio.Event()
        self._sleep_target = 0
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._pending: list[AttemptOutcome] = []
        self._pending_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reserved = 0  # slots promised to inserts that hand their messages over (`reserve`)
        self.delivered = 0  # counters for metrics and tests
        self.failed_attempts = 0
        storage.add_wake_listener(self._on_wake)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        log.info(
            "delivery engine %s started", self.node_id,
            extra={"event": "engine.started", "node_id": self.node_id},
        )  # fmt: skip
        self.storage.attach_taker(self)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="homing-claim"),
            asyncio.create_task(self._record_loop(), name="homing-record"),
            asyncio.create_task(
                self._every("renew", self.settings.lease_ms // 3, self._renew),
                name="homing-renew",
            ),
            asyncio.create_task(
                self._every("reap", self.settings.reaper_interval_ms, self._reap),
                name="homing-reap",
            ),
            asyncio.create_task(
                self._every("purge", self.settings.purge_interval_ms, self._purge),
                name="homing-purge",
            ),
        ]

    async def recover(self) -> None:
        """Release claims that a dead process left behind, so they are delivered again now."""
        now = self.clock.now_ms()
        if self.storage.single_node:
            released = await self.storage.release_leases(node_id=None, now_ms=now)
        else:
            released = await self.storage.release_expired_leases(now_ms=now)
        if released:
            log.warning(
                "redelivering %d messages whose attempt was interrupted",
                released,
                extra={"event": "engine.recovered"},
            )

    async def stop(self) -> None:
        """Stop claiming; let attempts finish within the grace period; release what is open."""
        if self._stopping or not self._tasks:
            return
        self._stopping = True
        self._wake.set()
        claim_loop, *side = self._tasks
        await asyncio.gather(claim_loop, return_exceptions=True)
        if self._inflight:
            _, still = await asyncio.wait(
                set(self._inflight), timeout=self.settings.shutdown_timeout_s
            )
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await self._flush()
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        released = await self.storage.release_leases(
            node_id=self.node_id, now_ms=self.clock.now_ms()
        )
        if released:
            log.info(
                "released %d unfinished attempts", released, extra={"event": "engine.released"}
            )

    def _on_wake(self, due_ms: int) -> None:
        if due_ms - CLAIM_AHEAD_MS <= self._sleep_target:
            self._wake.set()

    # -- messages handed over by the insert that stored them (storage.base.Taker) -----------

    def reserve(self, count: int) -> Lease | None:
        free = self.settings.concurrency - len(self._inflight) - self._reserved
        if self._stopping or free <= 0:
            return None
        slots = min(count, free)
        self._reserved += slots
        until = self.clock.now_ms() + self.settings.lease_ms
        return Lease(self.node_id, until, secrets.randbits(62), slots)

    def take(self, lease: Lease, claimed: Sequence[Claimed]) -> None:
        self._reserved -= lease.slots
        if self._stopping:  # stored under our lease: `stop` releases it for the next start
            self._slot_freed.set()
            return
        self._start(claimed)

    def release(self, lease: Lease) -> None:
        self._reserved -= lease.slots
        self._slot_freed.set()

    def _start(self, claimed: Sequence[Claimed]) -> None:
        for claim in claimed:
            task = asyncio.create_task(self._attempt(claim))
            self._inflight.add(task)
            task.add_done_callback(self._attempt_done)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        while not self._stopping:
            self._sleep_target = 2**62  # any wake during this round counts
            self._wake.clear()
            free = s.concurrency - len(self._inflight) - self._reserved
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            now = self.clock.now_ms()
            try:
                claimed = await self.storage.claim_due(
                    now_ms=now,
                    limit=min(free, s.claim_batch),
                    node_id=self.node_id,
                    lease_ms=s.lease_ms,
                    due_by_ms=now + CLAIM_AHEAD_MS,
                )
            except Exception:
                log.exception("claim failed; retrying", extra={"event": "engine.claim_failed"})
                await asyncio.sleep(s.poll_interval_ms / 1000)
                continue
            self._start(claimed)
            if len(claimed) == min(free, s.claim_batch):
                await asyncio.sleep(0)  # likely more due: claim again at once
                continue
            try:
                due = await self.storage.next_due_ms()
            except Exception:
                due = None
            if due is not None and due - CLAIM_AHEAD_MS > now:
                due -= CLAIM_AHEAD_MS  # wake to claim it ahead
            # (Due sooner and still unclaimed: flow-controlled, claimable once due.)
            target = now + s.poll_interval_ms if due is None else min(due, now + s.poll_interval_ms)
            self._sleep_target = target
            if self._wake.is_set() or self._stopping:
                continue
            await self.clock.sleep_until(target, self._wake)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_freed.set()

    async def _attempt(self, claim: Claimed) -> None:
        message = claim.message
        if message.due_ms is not None and message.due_ms > self.clock.now_ms():
            # Claimed ahead: send it when due, unless it was canceled meanwhile.
            await self.clock.sleep_until(message.due_ms, self._never)
            try:
                canceled = await self.storage.cancel_requested(message.id)
            except Exception:
                canceled = False  # decided when its outcome is recorded, as for any attempt
            if canceled:
                finished = self.clock.now_ms()
                self._record(
                    outcome.canceled_unsent(message.id, claim.lease_token, finished_ms=finished)
                )
                return
        started = time.monotonic()
        started_ns = time.time_ns()
        try:
            if message.spec.workflow is not None:
                prepared = await self.runs.prepare(message)
                if prepared is None:  # its run has ended: not sent
                    finished = self.clock.now_ms()
                    self._record(
                        outcome.dropped(message.id, claim.lease_token, finished_ms=finished)
                    )
                    return
                message = prepared
            key = await self.keys.current(message.account_id)
            response = await self.sender.send(message, key)
            decision = outcome.decide(
                message,
                claim.lease_token,
                response,
                now_ms=self.clock.now_ms(),
                new_id=ids.message_id,
                new_dlq_id=self._dlq_ids.next,
                policy=self.settings.policy,
            )
        except asyncio.CancelledError:
            raise  # shutdown: the lease is released and the message delivered again
        except Exception:
            log.exception("attempt of %s crashed", message.id, extra={"event": "engine.crash"})
            return  # the lease will expire and another attempt follow
        if decision.kind is OutcomeKind.DELIVERED:
            self.delivered += 1
            log.debug("delivered %s", message.id, extra={"event": "message.delivered"})
        else:
            self.failed_attempts += 1
            _log_failure(message.id, decision)
        if self.metrics is not None:
            self.metrics.record_attempt(message, decision, time.monotonic() - started)
        if self.telemetry is not None:
            self.telemetry.attempt(
                trace=message.spec.trace,
                message_id=message.id,
                account=message.account_id,
                url=message.url,
                attempt=message.attempts + 1,
                start_ns=started_ns,
                end_ns=time.time_ns(),
                status=decision.response.status,
                error=decision.response.error,
                outcome=decision.kind,
                kind=message.spec.kind,
            )
        self._record(decision)
        if message.spec.workflow is not None:
            try:
                await self.runs.after(
                    message, decision, now_ms=decision.finished_ms, new_id=ids.message_id
                )
            except Exception:
                log.exception(
                    "could not end the workflow run of %s",
                    message.id,
                    extra={"event": "workflow.run_end_failed"},
                )

    # -- recording --------------------------------------------------------------------------

    def _record(self, decision: AttemptOutcome) -> None:
        """Queue an outcome for the next batch `_record_loop` writes."""
        self._pending.append(decision)
        self._pending_ready.set()

    async def _record_loop(self) -> None:
        while True:
            await self._pending_ready.wait()
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self._pending_ready.clear()
            try:
                started = time.monotonic()
                await self.storage.record_outcomes(batch)
                if self.metrics is not None:
                    self.metrics.commit_outcomes.observe(time.monotonic() - started)
            except StorageUnavailable as exc:
                if self._stopping:  # no time left: the leases expire as below
                    log.warning(
                        "could not record %d outcomes: %s",
                        len(batch),
                        exc.message,
                        extra={"event": "engine.record_failed"},
                    )
                    return
                # The store is away for now (a database outage): keep the outcomes and record
                # them once it is back. Late is safe, since each outcome is fenced by its lease
                # token, and `_renew` keeps those leases while the outcomes wait.
                log.warning(
                    "could not record %d outcomes yet (%s); retrying",
                    len(batch),
                    exc.message,
                    extra={"event": "engine.record_delayed"},
                )
                self._pending[:0] = batch
                await asyncio.sleep(0.5)
            except Exception:
                # Not recorded: the leases expire and the messages are attempted again, which
                # keeps at-least-once; log loudly because it means duplicates.
                log.exception(
                    "could not record %d outcomes",
                    len(batch),
                    extra={"event": "engine.record_failed"},
                )
                await asyncio.sleep(0.5)

    # -- side tasks -------------------------------------------------------------------------

    async def _every(self, task: str, interval_ms: int, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` every `interval_ms` for good. A failure is logged (with its traceback on the
        first of a run of failures), counted, and makes the node unready until a run succeeds:
        a reaper that keeps failing leaves dead nodes' messages stuck, which an operator must
        see rather than discover."""
        check = f"engine.{task}"
        failing = False
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                await job()
            except Exception as exc:
                reason = f"{_TASKS[task]} failing: {str(exc) or type(exc).__name__}"
                log.error("%s", reason, exc_info=not failing, extra={"event": f"{check}_failed"})
                failing = True
                if self.metrics is not None:
                    self.metrics.task_failures.labels(check).inc()
                self.health.fail(check, reason)
            else:
                if failing:
                    log.info("%s recovered", _TASKS[task], extra={"event": f"{check}_recovered"})
                    failing = False
                self.health.clear(check)

    async def _renew(self) -> None:
        if self._inflight or self._pending:
            until = self.clock.now_ms() + self.settings.lease_ms
            await self.storage.renew_leases(self.node_id, until_ms=until)

    async def _reap(self) -> None:
        await self.storage.release_expired_leases(now_ms=self.clock.now_ms())

    async def _purge(self) -> None:
        # The store removes a bounded batch per call, to keep each write transaction short; one
        # call a minute would fall behind any rate above ~30 messages a second (each leaves
        # several log entries) and the store would grow for ever. So a round goes on while it
        # still finds something to remove, letting other work in between calls.
        s = self.settings
        for _ in range(MAX_PURGE_CALLS):
            removed = await self.storage.purge(
                now_ms=self.clock.now_ms(),
                retention_ms=s.retention_ms,
                dlq_retention_ms=s.dlq_retention_ms,
            )
            if not removed:
                return
            await asyncio.sleep(0)


_TASKS = {"renew": "lease renewal", "reap": "lease reaper", "purge": "purge"}


def _log_failure(message_id: str, decision: AttemptOutcome) -> None:
    detail = decision.response.error or f"status {decision.response.status}"
    if decision.kind is OutcomeKind.RETRY:
        log.info(
            "attempt of %s failed (%s); retry at %s",
            message_id,
            detail,
            decision.retry_at_ms,
            extra={"event": "message.retry_scheduled", "message_id": message_id},
        )
    else:
        log.warning(
            "%s failed for good (%s); moved to the DLQ as %s",
            message_id,
            detail,
            decision.dlq_id,
            extra={"event": "message.dead_lettered", "message_id": message_id},
        )
