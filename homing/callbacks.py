"""The JSON document QStash posts to a callback or failure callback, as the SDKs parse it.

Pure. `homing.delivery.outcome` sends it as it is; a workflow run's failure function gets it
with the run's fields added (`homing.workflow.runs.failure_body`).
"""

from __future__ import annotations

import base64
from typing import Any

from homing.models import Message, Response


def callback_doc(
    message: Message, response: Response, *, max_body: int, dlq_id: str | None = None
) -> dict[str, Any]:
    """The JSON document of a callback or failure callback, as the SDKs parse it."""
    doc: dict[str, Any] = {
        "status": response.status,
        "header": response.headers,
        "body": base64.b64encode(response.body[:max_body]).decode(),
        "retried": message.attempts,
        "maxRetries": message.spec.max_retries,
        "sourceMessageId": message.id,
        "url": message.url,
        "method": message.spec.method,
        "sourceHeader": message.spec.headers,
        "sourceBody": base64.b64encode(message.body).decode(),
        "notBefore": message.not_before_ms,
        "createdAt": message.created_ms,
        "callerIP": message.caller_ip,
    }
    if message.topic_name:
        doc["topicName"] = message.topic_name
    if message.endpoint_name:
        doc["endpointName"] = message.endpoint_name
    if message.schedule_id:
        doc["scheduleId"] = message.schedule_id
    if dlq_id is not None:
        doc["dlqId"] = dlq_id
    return doc
