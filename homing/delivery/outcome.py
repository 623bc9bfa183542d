"""What one attempt means: delivered, retry later, or failed for good; and which callbacks follow.

Pure policy (which answers count as delivered, when to retry, callbacks and failure callbacks):
the engine hands in the message and the response and storage records the returned
`AttemptOutcome` as it is. The outcome spells out everything that recording writes (`Effect`:
the message's new state, its times, its DLQ entry, the log entries, the new messages), in two
branches: as decided, and what happens instead when the message was canceled while the attempt
was in flight (a cancel cannot be seen before the attempt ends, since it arrives on another
request). Storage reads the message's cancel flag and records one branch; it decides nothing.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from homing.callbacks import callback_doc
from homing.models import (
    AttemptOutcome,
    CallbackSpec,
    DeliverySpec,
    Effect,
    LogEvent,
    LogState,
    Message,
    MessageKind,
    MessageState,
    NewMessage,
    OutcomeKind,
    Response,
)
from homing.retry import RetryDelay, next_retry_delay_ms
from homing.workflow import runs


@dataclass(frozen=True, slots=True)
class Policy:
    """Settings that shape outcomes."""

    backoff_scale: float = 1.0  # multiplies the default backoff only (a dev-mode option)
    max_callback_body: int = 1024 * 1024


def is_success(response: Response) -> bool:
    return 200 <= response.status < 300


def is_non_retryable(response: Response) -> bool:
    """489 with `Upstash-NonRetryable-Error: true` stops retries at once, as on QStash."""
    if response.status != 489:
        return False
    for name, values in response.headers.items():
        if name.lower() == "upstash-nonretryable-error":
            return any(v.strip().lower() == "true" for v in values)
    return False


def callback_body(
    message: Message, response: Response, *, max_body: int, dlq_id: str | None = None
) -> bytes:
    return orjson.dumps(callback_doc(message, response, max_body=max_body, dlq_id=dlq_id))


def _callback_message(
    message: Message,
    cb: CallbackSpec,
    kind: MessageKind,
    body: bytes,
    now_ms: int,
    new_id: Callable[[], str],
) -> NewMessage:
    headers = dict(cb.headers)
    headers.setdefault("Content-Type", ["application/json"])
    spec = DeliverySpec(
        method=cb.method,
        headers=headers,
        max_retries=message.spec.max_retries if cb.retries is None else cb.retries,
        retry_delay=cb.retry_delay,
        timeout_s=cb.timeout_s,
        trace=message.spec.trace,
        kind=kind,
        workflow=cb.workflow,
    )
    return NewMessage(
        id=new_id(),
        account_id=message.account_id,
        url=cb.url,
        body=body,
        spec=spec,
        created_ms=now_ms,
        not_before_ms=now_ms + (cb.delay_s or 0) * 1000,
        caller_ip=message.caller_ip,
        schedule_id=message.schedule_id,
        labels=message.labels,
        # Holding the parent's queue slot keeps a FIFO queue's next message waiting until
        # this callback is done.
        queue_slot=message.queue_name,
    )


def error_info(response: Response) -> dict[str, Any]:
    """The log fields of a failed attempt (`error`, `responseStatus`, ... of a log entry)."""
    info: dict[str, Any] = {"error": response.error or f"status {response.status}"}
    if response.status:
        info["responseStatus"] = response.status
        info["responseHeader"] = response.headers
        info["responseBody"] = base64.b64encode(response.body).decode()
    return info


def _canceled_instead(finished_ms: int, response: Response) -> Effect:
    """A cancel requested during a failed attempt wins: no retry, no DLQ entry and no further
    callbacks. A delivered attempt is not undone by a late cancel."""
    return Effect(
        state=MessageState.CANCELED,
        due_ms=None,
        final_ms=finished_ms,
        dlq_id=None,
        dlq_ms=None,
        events=(LogEvent(LogState.ERROR, error_info(response)), LogEvent(LogState.CANCELED)),
    )


def delivered(
    message_id: str,
    lease_token: int,
    *,
    finished_ms: int,
    response: Response,
    new_messages: tuple[NewMessage, ...] = (),
) -> AttemptOutcome:
    effect = Effect(
        state=MessageState.DELIVERED,
        due_ms=None,
        final_ms=finished_ms,
        dlq_id=None,
        dlq_ms=None,
        events=(LogEvent(LogState.DELIVERED, {"responseStatus": response.status}),),
        new_messages=new_messages,
    )
    return AttemptOutcome(
        message_id, lease_token, OutcomeKind.DELIVERED, finished_ms, response, effect, effect
    )


def retry(
    message_id: str,
    lease_token: int,
    *,
    finished_ms: int,
    response: Response,
    retry_at_ms: int,
    new_messages: tuple[NewMessage, ...] = (),
) -> AttemptOutcome:
    effect = Effect(
        state=MessageState.READY,
        due_ms=retry_at_ms,
        final_ms=None,
        dlq_id=None,
        dlq_ms=None,
        events=(
            LogEvent(LogState.ERROR, error_info(response)),
            LogEvent(LogState.RETRY, {"nextDeliveryTime": retry_at_ms}),
        ),
        new_messages=new_messages,
    )
    return AttemptOutcome(
        message_id,
        lease_token,
        OutcomeKind.RETRY,
        finished_ms,
        response,
        effect,
        _canceled_instead(finished_ms, response),
    )


def failed(
    message_id: str,
    lease_token: int,
    *,
    finished_ms: int,
    response: Response,
    dlq_id: str,
    new_messages: tuple[NewMessage, ...] = (),
) -> AttemptOutcome:
    error = error_info(response)
    effect = Effect(
        state=MessageState.FAILED,
        due_ms=None,
        final_ms=finished_ms,
        dlq_id=dlq_id,
        dlq_ms=finished_ms,
        events=(
            LogEvent(LogState.ERROR, error),
            LogEvent(LogState.FAILED, {"error": error["error"]}),
        ),
        new_messages=new_messages,
    )
    return AttemptOutcome(
        message_id,
        lease_token,
        OutcomeKind.FAILED,
        finished_ms,
        response,
        effect,
        _canceled_instead(finished_ms, response),
    )


def dropped(message_id: str, lease_token: int, *, finished_ms: int) -> AttemptOutcome:
    """A message of a workflow run that ended before the message was sent: canceled unsent
    (a sleeping step, a retry or a callback of a canceled run must not reach the endpoint)."""
    return _unsent(message_id, lease_token, finished_ms, "workflow run has ended")


def canceled_unsent(message_id: str, lease_token: int, *, finished_ms: int) -> AttemptOutcome:
    """A message claimed ahead of its due time and canceled before it was sent."""
    return _unsent(message_id, lease_token, finished_ms, "canceled before it was sent")


def _unsent(message_id: str, lease_token: int, finished_ms: int, why: str) -> AttemptOutcome:
    effect = Effect(
        state=MessageState.CANCELED,
        due_ms=None,
        final_ms=finished_ms,
        dlq_id=None,
        dlq_ms=None,
        events=(LogEvent(LogState.CANCELED),),
    )
    response = Response(status=0, error=why)
    return AttemptOutcome(
        message_id, lease_token, OutcomeKind.FAILED, finished_ms, response, effect, effect
    )


def decide(
    message: Message,
    lease_token: int,
    response: Response,
    *,
    now_ms: int,
    new_id: Callable[[], str],
    new_dlq_id: Callable[[int], str],
    policy: Policy = Policy(),
) -> AttemptOutcome:
    """Decide the outcome of the attempt `message.attempts + 1` that got `response`."""
    spec = message.spec
    if (
        200 <= response.status < 300
        and spec.workflow is None
        and (spec.callback is None or spec.kind is not MessageKind.MESSAGE)
    ):
        # Most attempts: delivered, and no callback to create (callbacks get none of their own).
        return delivered(message.id, lease_token, finished_ms=now_ms, response=response)
    attempt = message.attempts + 1
    new: list[NewMessage] = []
    detected = not runs.trigger_not_detected(spec, response)
    if not detected:
        # Not a workflow endpoint: the run fails at once, with the response kept as the error's.
        response = dataclasses.replace(response, error=runs.DETECT_TRIGGER_ERROR)
    is_source = spec.kind is MessageKind.MESSAGE  # callbacks get no callbacks of their own
    if is_source and spec.callback is not None:
        body = callback_body(message, response, max_body=policy.max_callback_body)
        new.append(
            _callback_message(message, spec.callback, MessageKind.CALLBACK, body, now_ms, new_id)
        )

    if is_success(response) and detected:
        return delivered(
            message.id, lease_token, finished_ms=now_ms, response=response, new_messages=tuple(new)
        )

    if attempt <= spec.max_retries and detected and not is_non_retryable(response):
        delay = next_retry_delay_ms(
            retry_number=attempt,
            retry_delay=RetryDelay.parse(spec.retry_delay) if spec.retry_delay else None,
            response_headers=response.headers,
            now_ms=now_ms,
            scale=policy.backoff_scale,
        )
        return retry(
            message.id,
            lease_token,
            finished_ms=now_ms,
            response=response,
            retry_at_ms=now_ms + delay,
            new_messages=tuple(new),
        )

    dlq_id = new_dlq_id(now_ms)
    # A run's failure callback is sent once per run, by the run's failure (`workflow.runs`).
    if is_source and spec.failure_callback is not None and not runs.fails_run(spec):
        body = callback_body(message, response, max_body=policy.max_callback_body, dlq_id=dlq_id)
        new.append(
            _callback_message(
                message, spec.failure_callback, MessageKind.FAILURE_CALLBACK, body, now_ms, new_id
            )
        )
    return failed(
        message.id,
        lease_token,
        finished_ms=now_ms,
        response=response,
        dlq_id=dlq_id,
        new_messages=tuple(new),
    )
