"""The workflow DLQ: what a failed run's DLQ entry shows, and the message a resume or a restart
delivers. Pure: no I/O, no clock.

A run's DLQ entry is the QStash DLQ entry of the message whose permanent failure failed the run
(a step, or the init): it already holds the failed attempt's response. The workflow view adds
the run (its id, creation time, URL and initial payload); a resume starts a new run with the
failed run's step list up to that message and delivers that message again; a restart starts a
new run from the initial payload alone.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from homing.models import Message, MessageState, NewMessage, Run, RunStep, WorkflowTag
from homing.workflow import control as ctl
from homing.workflow import runs

# Re-sends of one run's failure callback from the DLQ (`client.dlq.retryFailureFunction`).
MAX_CALLBACK_RETRIES = 20


def failure_callback_id(dlq_id: str, retry: int = 0) -> str:
    """The message id of a failed run's failure callback (`retry` 0) and of its re-sends:
    derived from the run's DLQ entry, so the entry finds its callback's state without a link
    stored beside it, and two re-sends of the same retry collide instead of both going out."""
    base = f"msg_fcb{dlq_id}"
    return base if retry == 0 else f"{base}~{retry}"


_CALLBACK_STATES = {
    MessageState.DELIVERED: "CALLBACK_SUCCESS",
    MessageState.FAILED: "CALLBACK_FAIL",
    MessageState.CANCELED: "CALLBACK_CANCELED",
}


def callback_state(callback: Message) -> str:
    return _CALLBACK_STATES.get(callback.state, "CALLBACK_INPROGRESS")


def callback_info(callback: Message) -> dict[str, Any]:
    """`failureCallbackInfo` of a DLQ entry: the latest send of the run's failure callback."""
    info: dict[str, Any] = {"state": callback_state(callback)}
    response = callback.last_response
    if response is not None and response.status:
        info["responseStatus"] = response.status
        info["responseBody"] = response.body.decode("utf-8", "replace")
        info["responseHeaders"] = response.headers
    return info


def is_run_failure(entry: Message) -> bool:
    """A DLQ entry that failed its run (calls to third parties and failure callbacks go to the
    DLQ too, but their failure does not fail the run)."""
    return runs.fails_run(entry.spec)


def entry_json(
    view: dict[str, Any], entry: Message, run: Run | None, callback: Message | None = None
) -> dict[str, Any]:
    """The workflow DLQ entry as the SDKs type it: the QStash entry (`view`) with the run's
    fields, and the initial payload as `body` (the workflow docs' shape)."""
    tag = entry.spec.workflow
    out = dict(view)
    if tag is not None:
        out["workflowRunId"] = tag.run_id
        out["workflowCreatedAt"] = tag.created_ms
    if run is not None:
        out["workflowUrl"] = run.url
        out["url"] = run.url
        out.pop("body", None)
        out.pop("bodyBase64", None)
        try:
            out["body"] = run.payload.decode("utf-8")
        except UnicodeDecodeError:
            out["bodyBase64"] = base64.b64encode(run.payload).decode()
        if run.config.failure_callback is not None or entry.spec.failure_callback is not None:
            cb = entry.spec.failure_callback or run.config.failure_callback
            assert cb is not None
            out["failureCallback"] = cb.url
    if callback is not None:
        out["failureCallbackInfo"] = callback_info(callback)
    return out


def _moved(headers: dict[str, list[str]], run_id: str, created_ms: int) -> dict[str, list[str]]:
    out = {
        name: list(values)
        for name, values in headers.items()
        if name.lower() not in (ctl.RUN_ID_HEADER.lower(), ctl.CREATED_AT_HEADER.lower())
    }
    out[ctl.RUN_ID_HEADER] = [run_id]
    out[ctl.CREATED_AT_HEADER] = [str(created_ms)]
    return out


def resumed(
    entry: Message,
    run: Run,
    *,
    new_run_id: str,
    new_message_id: str,
    now_ms: int,
    retries: int | None,
    restart: bool = False,
) -> tuple[NewMessage, list[RunStep]]:
    """The message a resume delivers (the failed one, under the new run) and the steps copied
    before it: the failed run's step list up to, not including, the failed message. A restart
    (and the resume of a failed init) delivers `entry` as the new run's init, with the initial
    payload and nothing copied."""
    position = 0
    if not restart:
        position = next((s.position for s in run.steps if s.message_id == entry.id), 0)
    copied = [s for s in run.steps if s.position < position]
    tag = entry.spec.workflow or WorkflowTag(run.run_id, run.created_ms)
    spec = dataclasses.replace(
        entry.spec,
        headers=_moved(entry.spec.headers, new_run_id, now_ms),
        workflow=dataclasses.replace(
            tag,
            run_id=new_run_id,
            created_ms=now_ms,
            call_type=tag.call_type if position else "step",
            step_list=True,
        ),
        max_retries=entry.spec.max_retries if retries is None else retries,
    )
    message = NewMessage(
        id=new_message_id,
        account_id=entry.account_id,
        url=entry.url,
        body=run.payload if position == 0 else entry.body,
        spec=spec,
        created_ms=now_ms,
        not_before_ms=now_ms,
        caller_ip=entry.caller_ip,
        labels=entry.labels,
        flow=entry.flow,
    )
    return message, copied
