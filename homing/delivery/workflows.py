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
from homing.workflow import runs, steps

log = logging.getLogger(__name__)


class RunDeliveries:
    def __init__(
        self,
        storage: Storage,
        *,
        metrics: Metrics | None,
        max_callback_body: int,
    ) -> None:
        self.storage = storage
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
        callback = runs.failure_callback(
            message,
            decision.response,
            run,
            dlq_id=decision.dlq_id,
            now_ms=now_ms,
            new_id=new_id,
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
        log.info(
            "workflow run %s failed: %s",
            tag.run_id,
            failure,
            extra={"event": "workflow.run_failed", "run_id": tag.run_id},
        )
