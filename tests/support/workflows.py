"""Starting and extending Upstash Workflow runs over plain HTTP, with the request shapes of the
JS SDK (`@upstash/workflow`): a `/v2/batch` item carrying the workflow control headers."""

from __future__ import annotations

import json
from typing import Any

import httpx

FEATURES_JS = "LazyFetch,InitialBody,WF_DetectTrigger,WF_TriggerOnConfig"


def step_headers(run_id: str, url: str, *, init: bool, **more: str) -> dict[str, str]:
    """The control headers every JS SDK step or init carries (lower-case, as in its batches)."""
    return {
        "upstash-workflow-init": "true" if init else "false",
        "upstash-workflow-runid": run_id,
        "upstash-workflow-url": url,
        "upstash-feature-set": FEATURES_JS,
        "upstash-workflow-sdk-version": "1",
        "upstash-forward-upstash-workflow-sdk-version": "1",
        "upstash-method": "POST",
        "content-type": "application/json",
        **more,
    }


def start_run(client: httpx.Client, run_id: str, url: str, payload: str, **more: str) -> str:
    """Start run `run_id` at workflow `url` with `payload`; returns its init message id."""
    headers = step_headers(run_id, url, init=True, **more)
    answer = client.post(
        "/v2/batch", json=[{"destination": url, "headers": headers, "body": payload}]
    )
    assert answer.status_code == 201, answer.text
    message_id: str = answer.json()[0]["messageId"]
    return message_id


def publish_step(
    client: httpx.Client, run_id: str, url: str, step: dict[str, Any], **more: str
) -> httpx.Response:
    """Publish a step result of run `run_id`, as the SDK does after running the step (the
    answer is returned as is: a step of an ended run is refused)."""
    headers = step_headers(run_id, url, init=False, **more)
    return client.post(
        "/v2/batch", json=[{"destination": url, "headers": headers, "body": json.dumps(step)}]
    )


def step_message_id(answer: httpx.Response) -> str:
    """The message id of an accepted `publish_step`."""
    assert answer.status_code == 201, answer.text
    message_id: str = answer.json()[0]["messageId"]
    return message_id


def wait_step(step_id: int = 1, step_type: str = "Wait") -> dict[str, Any]:
    return {"stepId": step_id, "stepType": step_type, "stepName": "waiting", "concurrent": 1}


def wait_for_event(
    client: httpx.Client,
    run_id: str,
    url: str,
    event_id: str,
    *,
    timeout: str = "10d",
    step: dict[str, Any] | None = None,
) -> httpx.Response:
    """`context.waitForEvent` as the JS SDK sends it (`LazyWaitForEventStep`)."""
    headers = step_headers(run_id, url, init=False, **{"upstash-workflow-calltype": "step"})
    timeout_headers = {
        "Upstash-Workflow-Runid": [run_id],
        "Upstash-Workflow-Init": ["false"],
        "Upstash-Workflow-Url": [url],
        "Upstash-Workflow-CallType": ["step"],
        "content-type": ["application/json"],
    }
    body = {
        "url": url,
        "timeout": timeout,
        "timeoutUrl": url,
        "timeoutHeaders": timeout_headers,
        "step": step or wait_step(),
    }
    return client.post(f"/v2/wait/{event_id}", headers=headers, content=json.dumps(body))
