"""What the engine does for the messages of Upstash Workflow runs, around one attempt.

Before: a step goes out with its run's step list as body (the prefix ending at the step, read
at the time of the attempt, so a redelivery after a crash carries the same list), and a message
of a run that has ended is not sent at all. After: a step message that failed for good fails its
run, once on every node, and the run's failure callback is stored (`workflow.runs` decides what
it carries).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from homing import ids
from homing.headers import Limits
from homing.metrics import Metrics
from homing.models import (
    AttemptOutcome,
    CallType,
    Message,
    OutcomeKind,
    Run,
    RunFilter,
    RunState,
)
from homing.storage.base import Storage
from homing.workflow import dlq, invoke, runs, steps

log = logging.getLogger(__name__)


async def route_to_invoker(
    storage: Storage,
    run: Run,
    state: RunState,
    result: bytes | None,
    *,
    now_ms: int,
    limits: Limits,
    metrics: Metrics | None,
) -> None:
    """A child run started by `context.invoke` has ended (its caller made the transition, so
    this runs once per child): its end becomes the `Invoke` step of the parent run. A parent
    that has ended meanwhile gets nothing (its step list is closed)."""
    invoker = run.config.invoker
    if invoker is None:
        return
    page = await storage.list_runs(
        run.account_id,
        filter=RunFilter(run_ids=(invoker.run_id,), states=(RunState.STARTED,)),
        cursor=None,
        count=1,
    )
    parent = page.items[0] if page.items else None
    append = None
    if parent is not None:
        append = invoke.result_append(
            invoker, parent, state, result, now_ms=now_ms, new_id=ids.message_id, limits=limits
        )
    stored = None
    if parent is not None and append is not None:
        stored = await storage.append_to_run(
            run.account_id, parent.run_id, [append], now_ms=now_ms, dedup_window_ms=0
        )
    outcome = "returned" if stored is not None else "unrouted"
    if metrics is not None:
        metrics.record_invoke(outcome)
    log.info(
        "workflow run %s (invoked by %s) ended %s; result %s",
        run.run_id,
        invoker.run_id,
        state.value,
        outcome,
        extra={
            "event": "workflow.invoke_result",
            "run_id": run.run_id,
            "invoker_run_id": invoker.run_id,
            "state": state.value,
            "routed": stored is not None,
        },
    )


class RunDeliveries:
    def __init__(
        self,
        storage: Storage,
        *,
        metrics: Metrics | None,
        max_callback_body: int,
        limits: Limits | None = None,
    ) -> None:
        self.storage = storage
        self.limits = limits or Limits()
        self.metrics = metrics
        self.max_callback_body = max_callback_body

    async def prepare(self, message: Message) -> Message | None:
        """The message as it is sent, or None when its run has ended (drop it unsent)."""
        tag = message.spec.workflow
        if tag is None or tag.call_type in (
            CallType.TO_CALLBACK.value,
            CallType.FAILURE_CALL.value,
        ):
            return message
        if not tag.step_list:
            run = await self._latest(message.account_id, tag.run_id)
            if run is None or run.state.is_final or run.created_ms != tag.created_ms:
                return None
            return message
        listed = await self.storage.run_steps(
            message.account_id, tag.run_id, upto_message_id=message.id
        )
        if not listed or listed[-1].message_id != message.id:
            return None  # the run ended (a later run of the same id does not list it)
        return dataclasses.replace(message, body=steps.step_list_body(listed))

    async def _latest(self, account_id: str, run_id: str) -> Run | None:
        """The latest run of this id, without its step list."""
        page = await self.storage.list_runs(
            account_id, filter=RunFilter(run_ids=(run_id,)), cursor=None, count=1
        )
        return page.items[0] if page.items else None

    async def after(
        self,
        message: Message,
        decision: AttemptOutcome,
        *,
        now_ms: int,
        new_id: Callable[[], str],
    ) -> None:
        """Count a delivered step; fail the run of a step message that failed for good (once),
        with its failure callback."""
        tag = message.spec.workflow
        delivered_step = tag is not None and tag.step_list
        if decision.kind is OutcomeKind.DELIVERED and delivered_step and self.metrics is not None:
            self.metrics.workflow_steps_delivered.inc()
        if decision.kind is not OutcomeKind.FAILED or not runs.fails_run(message.spec):
            return
        assert tag is not None
        failure = runs.failure_text(decision.response)
        # The run as it started (its payload and configuration never change): the failure
        # callback is built first and stored by the transition itself, so it exists exactly
        # once, however many nodes see a step of the run fail.
        run = await self._latest(message.account_id, tag.run_id)
        if run is None or run.state.is_final or run.created_ms != tag.created_ms:
            return
        dlq_id = decision.dlq_id
        callback = runs.failure_callback(
            message,
            decision.response,
            run,
            dlq_id=decision.dlq_id,
            now_ms=now_ms,
            new_id=new_id if dlq_id is None else lambda: dlq.failure_callback_id(dlq_id),
            max_body=self.max_callback_body,
        )
        end = await self.storage.end_run(
            message.account_id,
            tag.run_id,
            state=RunState.FAILED,
            now_ms=now_ms,
            failure=failure,
            new_messages=() if callback is None else (callback,),
        )
        if not end.changed:
            return
        if self.metrics is not None:
            self.metrics.record_run("failed")
        await route_to_invoker(
            self.storage,
            run,
            RunState.FAILED,
            None,
            now_ms=now_ms,
            limits=self.limits,
            metrics=self.metrics,
        )
        log.info(
            "workflow run %s failed: %s",
            tag.run_id,
            failure,
            extra={"event": "workflow.run_failed", "run_id": tag.run_id},
        )
