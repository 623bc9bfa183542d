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
        dedup_window_ms: int = 0,
    ) -> None:
        self.storage = storage
        self.metrics = metrics
        self.max_callback_body = max_callback_body
        self.dedup_window_ms = dedup_window_ms

    async def prepare(self, message: Message) -> Message | None:
        """The message as it is sent, or None when its run has ended (drop it unsent)."""
        tag = message.spec.workflow
        if tag is None or tag.call_type in (
            CallType.TO_CALLBACK.value,
            CallType.FAILURE_CALL.value,
        ):
            return message
        if not tag.step_list:
            if await self._active(message.account_id, tag.run_id):
                return message
            return None
        listed = await self.storage.run_steps(
            message.account_id, tag.run_id, upto_message_id=message.id
        )
        if listed is None:
            return None
        return dataclasses.replace(message, body=steps.step_list_body(listed))

    async def _active(self, account_id: str, run_id: str) -> bool:
        page = await self.storage.list_runs(
            account_id,
            filter=RunFilter(run_ids=(run_id,), states=(RunState.STARTED,)),
            cursor=None,
            count=1,
        )
        return bool(page.items)

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
        end = await self.storage.end_run(
            message.account_id, tag.run_id, state=RunState.FAILED, now_ms=now_ms, failure=failure
        )
        if not end.changed:
            return
        if self.metrics is not None:
            self.metrics.record_run("failed")
        run = await self.storage.get_run(message.account_id, tag.run_id)
        if run is None:
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
        if callback is not None:
            await self.storage.insert_messages(
                [callback], now_ms=now_ms, dedup_window_ms=self.dedup_window_ms
            )
        log.info(
            "workflow run %s failed: %s",
            tag.run_id,
            failure,
            extra={"event": "workflow.run_failed", "run_id": tag.run_id},
        )
