"""Upstash Workflow events: `context.waitForEvent` (a waiter), `notify` (account-wide and
run-scoped), the waiters of an event, waiter timeouts, and webhook calls.

The rules are in `homing.workflow.waits` (pure). A waiter is resolved by publishing its result
step to the run (`actions.publish.publish`, as the SDK's own step publishes), under the wait
step's key: the run accepts that result once, so a notify and a timeout racing on two nodes
resolve a waiter once; the one whose result was a repeat learns it (`deduplicated`) and reports
nothing. The waiter row is removed afterwards; a crash in between leaves it, and its next
resolution is a repeat that removes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homing import ids
from homing.actions import publish
from homing.actions.context import Services
from homing.actions.workflows import active_run
from homing.errors import HomingError, InvalidRequest, NotFound
from homing.models import NewWaiter, Waiter
from homing.workflow import waits

log = logging.getLogger(__name__)

# Waiters one account-wide notify resolves, and waiters one listing or timeout round reads.
MAX_NOTIFIED = 1000
TIMEOUT_ROUND = 200
# Waiters resolved at once by one notify or timeout round.
RESOLVE_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Resolution:
    """One waiter reached by an event: the message of its result, or why there is none."""

    waiter: Waiter
    message_id: str | None
    error: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "waiter": waits.view(self.waiter),
            "messageId": self.message_id or "",
            "error": self.error,
        }


async def resolve(svc: Services, waiter: Waiter, *, data: bytes | None) -> Resolution | None:
    """Publish the waiter's result (notified with `data`, or timed out when None) and forget the
    waiter. None when another resolution got there first (a repeat result)."""
    notified = data is not None
    url = waiter.url if notified else waiter.timeout_url
    headers = waiter.headers if notified else waiter.timeout_headers
    draft = publish.Draft(
        destination=url,
        headers=waits.publish_headers(headers),
        config=[],
        body=waits.result_body(waiter, data=data),
    )
    try:
        published = await publish.publish(
            svc, waiter.account_id, draft, caller="", started_ns=time.time_ns()
        )
    except HomingError as exc:
        # The run ended (canceled, failed) while it waited, or the stored headers no longer
        # make a valid publish: nothing will ever take this waiter's result.
        await svc.storage.remove_waiter(waiter.id)
        log.info(
            "workflow waiter dropped: %s",
            exc.message,
            extra={"event": "workflow.waiter_dropped", "run_id": waiter.run_id},
        )
        return Resolution(waiter, None, exc.message)
    await svc.storage.remove_waiter(waiter.id)
    [result] = published.results
    if result.deduplicated:
        return None
    event = "notified" if notified else "timed_out"
    svc.metrics.record_waiter(event)
    log.info(
        "workflow waiter %s",
        event.replace("_", " "),
        extra={
            "event": f"workflow.waiter_{event}",
            "run_id": waiter.run_id,
            "event_id": waiter.event_id,
            "message_id": result.message_id,
        },
    )
    return Resolution(waiter, result.message_id)


async def _resolve_all(
    svc: Services, found: Sequence[Waiter], *, data: bytes | None
) -> list[Resolution | None]:
    """Resolve waiters a few at a time: each is its own publish, and concurrent publishes
    share commits (SQLite's writer, PostgreSQL's pool), so one event reaching hundreds of
    runs does not take hundreds of commit times."""
    gate = asyncio.Semaphore(RESOLVE_CONCURRENCY)

    async def one(waiter: Waiter) -> Resolution | None:
        async with gate:
            return await resolve(svc, waiter, data=data)

    return list(await asyncio.gather(*(one(w) for w in found)))


async def wait(
    svc: Services,
    account_id: str,
    event_id: str,
    body: bytes,
    raw_headers: Iterable[tuple[str, str]],
) -> str:
    """`POST /v2/wait/{eventId}`: register the run's waiter; an event kept for the run resolves
    it at once. Returns the waiter's id."""
    event_id = waits.event_id(event_id)
    headers = waits.kept_headers(raw_headers)
    request = waits.parse_wait(body, headers)
    if await active_run(svc, account_id, request.run_id) is None:
        raise InvalidRequest(
            f"workflow run {request.run_id!r} does not exist or has ended: it cannot wait"
        )
    now = svc.clock.now_ms()
    lookback = svc.settings.keep_unmatched_events_ms
    registered = await svc.storage.add_waiter(
        NewWaiter(
            id=ids.message_id(),
            account_id=account_id,
            run_id=request.run_id,
            event_id=event_id,
            step_key=request.step_key,
            url=request.url,
            deadline_ms=now + request.timeout_ms,
            headers=headers,
            timeout_url=request.timeout_url,
            timeout_headers=request.timeout_headers,
            step=request.step,
            timeout=request.timeout,
            created_ms=now,
        ),
        unmatched_since_ms=now - lookback if lookback > 0 else None,
    )
    waiter = registered.waiter
    if registered.duplicate:
        return waiter.id
    svc.metrics.record_waiter("registered")
    log.info(
        "workflow waiter registered",
        extra={
            "event": "workflow.waiter_registered",
            "run_id": waiter.run_id,
            "event_id": event_id,
            "deadline_ms": waiter.deadline_ms,
        },
    )
    if registered.event is not None:
        await resolve(svc, waiter, data=registered.event)
    return waiter.id


async def _scope(svc: Services, account_id: str, rest: str) -> tuple[str | None, str]:
    candidate = waits.run_scoped(rest)
    if candidate is not None:
        run_id, event_id = candidate
        if run_id.startswith("wfr_") or await active_run(svc, account_id, run_id) is not None:
            return run_id, event_id
    return None, rest


async def notify(svc: Services, account_id: str, rest: str, data: bytes) -> list[Resolution]:
    """`POST /v2/notify/{eventId}` (every waiter of the account; none: dropped, or kept for
    the first wait of the event id with `--keep-unmatched-events`) or
    `POST /v2/notify/{workflowRunId}/{eventId}` (the run's waiter; none: kept for the run's
    next wait, if the run is active). Returns the waiters it reached: each with the message of
    its result, or the error that kept the run from taking it (the run ended meanwhile)."""
    run_id, event_id = await _scope(svc, account_id, rest)
    event_id = waits.event_id(event_id)
    keep: bytes | None = data
    if run_id is None and svc.settings.keep_unmatched_events_ms <= 0:
        keep = None  # account-wide and nobody waits: dropped, as the hosted service does
    elif run_id is not None and await active_run(svc, account_id, run_id) is None:
        keep = None  # an ended run never waits again: nothing to keep the event for
    found = await svc.storage.waiters_to_notify(
        account_id,
        event_id,
        run_id=run_id,
        keep=keep,
        now_ms=svc.clock.now_ms(),
        limit=MAX_NOTIFIED,
    )
    # None: another resolution of this waiter got there first.
    out = [r for r in await _resolve_all(svc, found, data=data) if r is not None]
    if any(r.message_id for r in out):
        svc.metrics.workflow_notifies.labels("delivered").inc()
        outcome = "delivered"
    elif keep is not None and not found:
        svc.metrics.workflow_notifies.labels("kept").inc()
        outcome = "kept"
    else:
        svc.metrics.workflow_notifies.labels("unmatched").inc()
        outcome = "unmatched"
    log.info(
        "workflow event %s",
        outcome,
        extra={
            "event": f"workflow.notify_{outcome}",
            "event_id": event_id,
            "run_id": run_id,
            "waiters": sum(1 for r in out if r.message_id),
        },
    )
    return out


async def waiters(svc: Services, account_id: str, event_id: str) -> list[Waiter]:
    """`GET /v2/waiters/{eventId}`: the account's waiters for the event, oldest first."""
    return await svc.storage.list_waiters(account_id, waits.event_id(event_id), limit=MAX_NOTIFIED)


async def run_waiters(svc: Services, account_id: str, run_id: str) -> list[Waiter]:
    """The events a run waits for, oldest first (its console page)."""
    return await svc.storage.run_waiters(account_id, run_id, limit=MAX_NOTIFIED)


async def webhook(
    svc: Services,
    user_id: str,
    run_id: str,
    event_id: str,
    event: bytes,
) -> None:
    """A call to a run's webhook URL: the run's event, kept for its next wait if it does not
    wait yet. The URL is the capability: the account it names must have that run active."""
    if not user_id or await active_run(svc, user_id, run_id) is None:
        raise NotFound("no active workflow run for this webhook")
    await notify_run(svc, user_id, run_id, event_id, event)


async def notify_run(
    svc: Services, account_id: str, run_id: str, event_id: str, data: bytes
) -> list[Resolution]:
    return await notify(svc, account_id, f"{run_id}/{event_id}", data)


async def expire(svc: Services, *, now_ms: int) -> int:
    """Resolve every waiter whose deadline has passed as timed out; returns how many this
    call resolved (a waiter another node resolved first is not counted)."""
    resolved = 0
    while True:
        due = await svc.storage.due_waiters(now_ms=now_ms, limit=TIMEOUT_ROUND)
        done = await _resolve_all(svc, due, data=None)
        resolved += sum(1 for r in done if r is not None and r.message_id)
        if len(due) < TIMEOUT_ROUND:
            return resolved
