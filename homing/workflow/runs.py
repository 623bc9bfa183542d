"""How a run governs its messages: its configuration, its end, its failure. Pure.

A run is RUN_STARTED from its init until exactly one of: the run end the SDK sends when the
workflow function returns (RUN_SUCCESS), a permanent failure of one of its step messages or of
the init's trigger detection (RUN_FAILED), or a cancel (RUN_CANCELED). Storage makes the
transition atomic and once-only (`Storage.end_run`); this module says what each request answers
and what a transition sends.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable

import orjson

from homing.callbacks import callback_doc
from homing.errors import InvalidRequest, NotFound
from homing.headers import PublishOptions
from homing.models import (
    CallbackSpec,
    CallType,
    DeliverySpec,
    Message,
    MessageKind,
    NewMessage,
    Response,
    Run,
    RunConfig,
    RunEnd,
    RunState,
    WorkflowTag,
)
from homing.workflow import control as ctl
from homing.workflow.control import Control

# The step error of a run whose init reached an endpoint that is not a workflow (WF_DetectTrigger),
# exactly as the hosted service words it (the SDK's CI compares it).
DETECT_TRIGGER_ERROR = (
    "detected a non-workflow destination for trigger/invoke. "
    "make sure you are sending the request to the correct endpoint"
)
SDK_VERSION_HEADER = "upstash-workflow-sdk-version"


def config_of(
    options: PublishOptions, features: tuple[str, ...], forwarded: dict[str, list[str]]
) -> RunConfig:
    """What an init message configures for its whole run."""
    return RunConfig(
        headers=ctl.run_headers(forwarded),
        features=features,
        retries=options.max_retries,
        retry_delay=options.retry_delay.text if options.retry_delay else None,
        flow=options.flow,
        failure_callback=options.failure_callback,
        redact=options.redact,
    )


def init_message(m: NewMessage, control: Control, config: RunConfig) -> NewMessage:
    """The init message of a new run: delivered to the workflow URL with the step list."""
    tag = WorkflowTag(
        run_id=control.run_id,
        created_ms=m.created_ms,
        call_type=CallType.STEP.value,
        init=True,
        detect_trigger=control.has(ctl.DETECT_TRIGGER),
    )
    headers = ctl.delivery_headers(
        config.headers, m.spec.headers, run_id=tag.run_id, created_ms=tag.created_ms, url=m.url
    )
    return dataclasses.replace(m, spec=dataclasses.replace(m.spec, headers=headers, workflow=tag))


def run_message(m: NewMessage, control: Control, run: Run) -> NewMessage:
    """A later message of `run`, as it will be stored and delivered.

    A call to a third party (`toCallback`) keeps its own configuration and headers; its
    callback becomes a message of the run. Every other message goes to the workflow URL with
    the step list, the run headers and, under `WF_TriggerOnConfig`, the run's configuration.
    """
    if control.call_type == CallType.TO_CALLBACK.value:
        tag = WorkflowTag(run.run_id, run.created_ms, CallType.TO_CALLBACK.value, step_list=False)
        callback = m.spec.callback
        if callback is not None:
            callback = _run_callback(callback, run)
        spec = dataclasses.replace(m.spec, workflow=tag, callback=callback)
        return dataclasses.replace(m, spec=spec)
    tag = WorkflowTag(run.run_id, run.created_ms, control.call_type)
    headers = ctl.delivery_headers(
        run.config.headers,
        m.spec.headers,
        run_id=run.run_id,
        created_ms=run.created_ms,
        url=run.url,
    )
    spec = dataclasses.replace(m.spec, headers=headers, workflow=tag)
    labels, flow = m.labels, m.flow
    if control.takes_run_config:
        config = run.config
        spec = dataclasses.replace(
            spec,
            max_retries=spec.max_retries if config.retries is None else config.retries,
            retry_delay=config.retry_delay if config.retry_delay is not None else spec.retry_delay,
            failure_callback=config.failure_callback or spec.failure_callback,
            redact=config.redact if config.redact.any else spec.redact,
        )
        labels = run.labels or labels
        flow = config.flow or flow
    return dataclasses.replace(m, spec=spec, labels=labels, flow=flow)


def _run_callback(cb: CallbackSpec, run: Run) -> CallbackSpec:
    """The callback of a call: when its configuration names the run, it is a message of the
    run (`fromCallback`), delivered to the workflow URL with the run's headers (never the step
    list: its body is the call's result, which the SDK reads)."""
    found = ctl.from_mapping(cb.control)
    if found is None or found.run_id != run.run_id:
        return cb
    headers = ctl.delivery_headers(
        run.config.headers, cb.headers, run_id=run.run_id, created_ms=run.created_ms, url=run.url
    )
    tag = WorkflowTag(run.run_id, run.created_ms, found.call_type, step_list=False)
    retries, retry_delay = cb.retries, cb.retry_delay
    if found.takes_run_config:
        retries = run.config.retries if run.config.retries is not None else retries
        retry_delay = run.config.retry_delay or retry_delay
    return dataclasses.replace(
        cb, headers=headers, workflow=tag, retries=retries, retry_delay=retry_delay
    )


def fails_run(spec: DeliverySpec) -> bool:
    """Whether the permanent failure of a message with this spec fails its run: any message
    of a run except a call to a third party (`WF_NoDelete`: the run goes on with the call's
    last answer) and the run's own failure callback."""
    tag = spec.workflow
    return tag is not None and tag.call_type not in (
        CallType.TO_CALLBACK.value,
        CallType.FAILURE_CALL.value,
    )


def trigger_not_detected(spec: DeliverySpec, response: Response) -> bool:
    """WF_DetectTrigger: the init's endpoint answered 2xx without saying it is a workflow."""
    tag = spec.workflow
    if tag is None or not (tag.init and tag.detect_trigger):
        return False
    if not 200 <= response.status < 300:
        return False
    return not any(name.lower() == SDK_VERSION_HEADER for name in response.headers)


def failure_body(
    message: Message, response: Response, run: Run, *, dlq_id: str | None, max_body: int
) -> bytes:
    """The body of a run's failure callback: the QStash failure-callback JSON, plus the run id
    and creation time, with the run's initial payload as `sourceBody` (`InitialBody`)."""
    doc = callback_doc(message, response, max_body=max_body, dlq_id=dlq_id)
    doc.update(
        url=run.url,
        sourceBody=base64.b64encode(run.payload).decode(),
        workflowRunId=run.run_id,
        workflowCreatedAt=run.created_ms,
    )
    return orjson.dumps(doc)


def failure_callback(
    message: Message,
    response: Response,
    run: Run,
    *,
    dlq_id: str | None,
    now_ms: int,
    new_id: Callable[[], str],
    max_body: int,
) -> NewMessage | None:
    """The one failure callback of a failed run: the failing message's own failure callback
    (the Python SDK puts it on every step), else the run's (the JS SDK puts it on the init)."""
    cb = message.spec.failure_callback or run.config.failure_callback
    if cb is None:
        return None
    headers = ctl.delivery_headers(
        run.config.headers, cb.headers, run_id=run.run_id, created_ms=run.created_ms, url=None
    )
    headers.setdefault("Content-Type", ["application/json"])
    spec = DeliverySpec(
        method=cb.method,
        headers=headers,
        max_retries=message.spec.max_retries if cb.retries is None else cb.retries,
        retry_delay=cb.retry_delay,
        timeout_s=cb.timeout_s,
        trace=message.spec.trace,
        kind=MessageKind.FAILURE_CALLBACK,
        workflow=WorkflowTag(
            run.run_id, run.created_ms, CallType.FAILURE_CALL.value, step_list=False
        ),
    )
    return NewMessage(
        id=new_id(),
        account_id=message.account_id,
        url=cb.url,
        body=failure_body(message, response, run, dlq_id=dlq_id, max_body=max_body),
        spec=spec,
        created_ms=now_ms,
        not_before_ms=now_ms + (cb.delay_s or 0) * 1000,
        caller_ip=message.caller_ip,
        labels=run.labels,
    )


def failure_text(response: Response) -> str:
    """Why a run failed, for the run's record."""
    if response.error:
        return response.error
    return f"status {response.status}"


def end_answer(end: RunEnd, requested: RunState) -> None:
    """What `DELETE /v2/workflows/runs/{id}` answers: nothing to raise is a 200.

    The SDK sends the run end again when the last step is delivered twice, and treats any answer
    but 2xx as an error to retry (it no longer tolerates 404), so ending a run that already
    succeeded succeeds again; a cancel of a run already canceled also does.
    """
    if not end.found:
        raise NotFound("workflow run not found")
    if end.changed or end.state is requested:
        return
    state = end.state.value if end.state else "ended"
    raise InvalidRequest(f"workflow run has already ended ({state})")


def not_appendable(run_id: str) -> InvalidRequest:
    """A step for a run that is unknown or has ended. The JS SDK reads any 400 on a step publish
    as "the run is over" and stops quietly."""
    return InvalidRequest(
        f"failed to publish to url: can not append to workflow run {run_id!r}: "
        "it does not exist or has ended"
    )
