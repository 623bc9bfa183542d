"""Workflow run logs (`client.logs`, `GET /v2/workflows/events`): a stored run and its step list
as the SDK types a `WorkflowRun`. Pure: no I/O, no clock.

The step list holds every message of the run in acceptance order, with the body the SDK
published (the step result); the logs group them as the SDK expects: the init first, then
consecutive sequential steps together, and each parallel group's results together.
"""

from __future__ import annotations

from typing import Any

import orjson

from homing.models import Run, RunState, RunStep

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


def run_json(run: Run) -> dict[str, Any]:
    """A `WorkflowRun` of the logs API."""
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
    out["steps"] = step_groups(run)
    return out
