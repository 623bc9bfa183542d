"""A run's step list as the SDKs parse it, and the identity of a step result. Pure.

Every delivery of a step to the workflow endpoint carries, as its body, the run's messages in
the order Homing accepted them, up to and including the one delivered:
`[{"messageId", "body": base64, "callType"}, ...]`, the init (with the initial payload) first.
The SDK replays the prefix and runs the next step, so the list must end at the delivered message
(two parallel results that both saw every result would both continue the run).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import orjson

from homing.models import RunStep


def entry(step: RunStep) -> dict[str, str]:
    return {
        "messageId": step.message_id,
        # Standard alphabet with padding: Python's b64decode refuses anything else.
        "body": base64.b64encode(step.body).decode(),
        "callType": step.call_type,
    }


def step_list_body(steps: Sequence[RunStep]) -> bytes:
    """The body of a step delivery (or of `GET /v2/workflows/runs/{id}`)."""
    return orjson.dumps([entry(s) for s in steps])


def step_key(body: bytes) -> str | None:
    """Which step a published step result stands for, to accept a repeated result once.

    `s:<stepId>` for a result (stepId > 0), `t:<targetStep>` for a parallel plan step
    (stepId 0); None when the body is not a step (then it is never deduplicated). The JS SDK
    drops duplicates itself, the Python SDK replays by position and would fail on one.
    """
    if not body.startswith(b"{"):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    step_id = doc.get("stepId")
    if not isinstance(step_id, int) or isinstance(step_id, bool):
        return None
    if step_id > 0:
        return f"s:{step_id}"
    target = doc.get("targetStep")
    if step_id == 0 and isinstance(target, int) and not isinstance(target, bool) and target > 0:
        return f"t:{target}"
    return None
