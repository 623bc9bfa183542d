"""Workflow run logs (`client.logs`, `GET /v2/workflows/events`): a stored run and its step list
as the SDK types a `WorkflowRun`. Pure: no I/O, no clock.

The step list holds every message of the run in acceptance order, with the body the SDK
published (the step result); the logs group them as the SDK expects: the init first, then
consecutive sequential steps together, and each parallel group's results together.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from homing.models import LogEntry, LogState, Message, Run, RunState, RunStep
from homing.workflow import dlq

# Step fields the SDK sends in a step result and the logs repeat.
_STEP_FIELDS = ("stepId", "stepName", "stepType", "out", "concurrent", "targetStep",
                "sleepFor", "sleepUntil", "callUrl", "callMethod", "callHeaders", "callBody",
                "waitEventId", "timeout", "waitTimeout")  # fmt: skip


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def init_step(run: Run, first: RunStep) -> dict[str, Any]:
    headers = {k: v for k, v in run.config.headers.items()}
    return {
        "stepName": "init",
        "stepType": "Initial",
        "callType": "step",
        "messageId": first.message_id,
        "out": _text(run.payload),
        "concurrent": 1,
        "state": "STEP_SUCCESS",
        "createdAt": first.created_ms,
        "retries": 3 if run.config.retries is None else run.config.retries,
        "headers": headers,
    }


def step_log(step: RunStep) -> dict[str, Any] | None:
    """One step result as a StepLog; None for entries that are not results (plans of parallel
    steps, calls' own messages, anything that is not a JSON step)."""
    try:
        doc = orjson.loads(step.body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "stepName" not in doc:
        return None
    if doc.get("stepId") == 0:  # a plan: its result follows as its own entry
        return None
    out: dict[str, Any] = {k: doc[k] for k in _STEP_FIELDS if k in doc}
    out.setdefault("concurrent", 1)
    out.update(
        callType=step.call_type,
        messageId=step.message_id,
        state="STEP_SUCCESS",
        createdAt=step.created_ms,
    )
    return out


def step_groups(run: Run) -> list[dict[str, Any]]:
    if not run.steps:
        return []
    groups: list[dict[str, Any]] = [{"type": "sequential", "steps": [init_step(run, run.steps[0])]}]
    for step in run.steps[1:]:
        log = step_log(step)
        if log is None:
            continue
        kind = "parallel" if int(log.get("concurrent") or 1) > 1 else "sequential"
        last = groups[-1]
        if last["type"] == kind:
            last["steps"].append(log)
        else:
            groups.append({"type": kind, "steps": [log]})
    return groups


_NEXT_STATES = {
    LogState.CREATED: "STEP_PROGRESS",
    LogState.ACTIVE: "STEP_PROGRESS",
    LogState.CANCEL_REQUESTED: "STEP_PROGRESS",
    LogState.ERROR: "STEP_RETRY",
    LogState.RETRY: "STEP_RETRY",
    LogState.FAILED: "STEP_FAILED",
    LogState.CANCELED: "STEP_CANCELED",
}


def _error(entry: LogEntry) -> dict[str, Any]:
    info = entry.info
    body = base64.b64decode(info.get("responseBody") or "")
    return {
        "error": info.get("error", ""),
        "body": body.decode("utf-8", "replace"),
        "headers": info.get("responseHeader") or {},
        "status": info.get("responseStatus", 0),
        "time": entry.time_ms,
    }


def next_group(entries: list[LogEntry]) -> dict[str, Any] | None:
    """The trailing `next` group: the delivery of the run's last step-list message while its
    successor has not arrived (in progress, retrying, failed or canceled), with an entry in
    `errors` per failed attempt. `entries` are that message's log entries, oldest first."""
    if not entries:
        return None
    last = entries[-1]
    state = _NEXT_STATES.get(last.state)
    if state is None:  # delivered: what follows is in the step list
        return None
    message = last.message
    step: dict[str, Any] = {
        "messageId": message.id,
        "state": state,
        "retries": message.spec.max_retries if message.spec.max_retries is not None else 3,
    }
    if message.spec.retry_delay:
        step["retryDelay"] = message.spec.retry_delay
    errors = [_error(e) for e in entries if e.state is LogState.ERROR]
    if errors:
        step["errors"] = errors
    if state == "STEP_RETRY" and message.due_ms is not None:
        step["nextDeliveryTime"] = message.due_ms
    return {"type": "next", "steps": [step]}


def failure_function(failed: Message, callback: Message) -> dict[str, Any]:
    """`failureFunction` of a failed run: its failure callback's latest send, and the failed
    delivery that caused it."""
    out: dict[str, Any] = {
        "messageId": callback.id,
        "url": callback.url,
        "state": dlq.callback_state(callback),
        "dlqId": failed.dlq_id or "",
        "maxRetries": callback.spec.max_retries if callback.spec.max_retries is not None else 3,
    }
    response = failed.last_response
    if response is not None:
        out["failHeaders"] = response.headers
        out["failStatus"] = response.status
        out["failResponse"] = _text(response.body)
    sent = callback.last_response
    if sent is not None and sent.status:
        out["responseStatus"] = sent.status
        out["responseBody"] = _text(sent.body)
        out["responseHeaders"] = sent.headers
    return out


def run_json(
    run: Run, last_entries: list[LogEntry] | None = None, callback: Message | None = None
) -> dict[str, Any]:
    """A `WorkflowRun` of the logs API; `last_entries` are the log entries of the run's last
    step-list message (what the `next` group and a failed run's `dlqId` come from), `callback`
    the latest send of a failed run's failure callback."""
    out: dict[str, Any] = {
        "workflowRunId": run.run_id,
        "workflowUrl": run.url,
        "workflowState": run.state.value,
        "workflowRunCreatedAt": run.created_ms,
    }
    if run.ended_ms is not None and run.state.is_final:
        out["workflowRunCompletedAt"] = run.ended_ms
    if run.state is RunState.SUCCESS and run.result:
        out["workflowRunResponse"] = _text(run.result)
    invoker = run.config.invoker
    if invoker is not None:
        out["invoker"] = {
            "workflowRunId": invoker.run_id,
            "workflowUrl": invoker.url,
            "workflowRunCreatedAt": invoker.created_ms,
        }
    if run.labels:
        out["label"] = ",".join(run.labels)
        out["labels"] = list(run.labels)
    if run.config.flow is not None:
        out["flowControlKey"] = run.config.flow.key
    if run.caller_ip:
        out["workflowRunCallerIp"] = run.caller_ip
    groups = step_groups(run)
    if run.state is not RunState.SUCCESS:
        following = next_group(last_entries or [])
        if following is not None:
            groups.append(following)
    out["steps"] = groups
    if run.state is RunState.FAILED and last_entries:
        dlq_id = last_entries[-1].message.dlq_id
        if dlq_id:
            out["dlqId"] = dlq_id
        if callback is not None:
            out["failureFunction"] = failure_function(last_entries[-1].message, callback)
    return out
