"""Domain objects -> the JSON shapes the QStash SDKs parse. Unset fields are omitted, never null.

Redaction (`Upstash-Redact-Fields`) is applied here, in every output, and nowhere else: delivery
always uses the original values.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from homing.cron import CronSchedule
from homing.errors import InvalidRequest
from homing.models import CallbackSpec, Headers, LogEntry, Message, Redaction, Schedule
from homing.storage.base import QueueInfo, UrlGroup


def redacted_value(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return "REDACTED:" + hashlib.sha256(raw).hexdigest()


def redact_headers(headers: Headers, redact: Redaction) -> Headers:
    if not (redact.all_headers or redact.header_names):
        return headers
    return {
        name: [redacted_value(v) for v in values] if redact.redacts_header(name) else values
        for name, values in headers.items()
    }


def _body_fields(body: bytes, redact: Redaction, out: dict[str, Any]) -> None:
    if not body:
        return
    if redact.body:
        out["body"] = redacted_value(body)
        return
    try:
        out["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        out["bodyBase64"] = base64.b64encode(body).decode()


def _flow_fields(m: Message, out: dict[str, Any]) -> None:
    if m.flow is None:
        return
    out["flowControlKey"] = m.flow.key
    if m.flow.parallelism is not None:
        out["parallelism"] = m.flow.parallelism
    if m.flow.rate is not None:
        out["rate"] = m.flow.rate
    out["period"] = m.flow.period_s


def _callbacks(cb: CallbackSpec | None, fcb: CallbackSpec | None, plural: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    suffix = "s" if plural else ""
    if cb is not None:
        out["callback"] = cb.url
        if cb.headers:
            out["callbackHeader" + suffix] = cb.headers
    if fcb is not None:
        out["failureCallback"] = fcb.url
        if fcb.headers:
            out["failureCallbackHeader" + suffix] = fcb.headers
    return out


def message_json(m: Message) -> dict[str, Any]:
    spec = m.spec
    out: dict[str, Any] = {"messageId": m.id, "url": m.url, "method": spec.method}
    if m.topic_name:
        out["topicName"] = m.topic_name
    if m.endpoint_name:
        out["endpointName"] = m.endpoint_name
    if m.queue_name:
        out["queueName"] = m.queue_name
    headers = redact_headers(spec.headers, spec.redact)
    if headers:
        out["header"] = headers
    _body_fields(m.body, spec.redact, out)
    out["maxRetries"] = spec.max_retries
    if spec.retry_delay:
        out["retryDelayExpression"] = spec.retry_delay
    out["notBefore"] = m.not_before_ms
    out["createdAt"] = m.created_ms
    out.update(_callbacks(spec.callback, spec.failure_callback, plural=False))
    if m.schedule_id:
        out["scheduleId"] = m.schedule_id
    if m.caller_ip:
        out["callerIP"] = out["callerIp"] = m.caller_ip
    _flow_fields(m, out)
    if m.labels:
        out["label"] = m.labels[0]
        out["labels"] = list(m.labels)
    if spec.timeout_s is not None:
        out["timeout"] = spec.timeout_s
    return out


def dlq_json(m: Message) -> dict[str, Any]:
    out = message_json(m)
    out["dlqId"] = m.dlq_id or ""
    response = m.last_response
    out["responseStatus"] = response.status if response else 0
    if response is not None:
        if response.headers:
            out["responseHeader"] = response.headers
        if response.body:
            try:
                out["responseBody"] = response.body.decode("utf-8")
            except UnicodeDecodeError:
                out["responseBodyBase64"] = base64.b64encode(response.body).decode()
    return out


def log_json(entry: LogEntry) -> dict[str, Any]:
    m = entry.message
    spec = m.spec
    out: dict[str, Any] = {
        "time": entry.time_ms,
        "messageId": m.id,
        "state": entry.state.value,
        "url": m.url,
    }
    for key in ("error", "nextDeliveryTime", "responseStatus"):
        if key in entry.info:
            out[key] = entry.info[key]
    if "responseHeader" in entry.info:
        out["responseHeader"] = out["responseHeaders"] = entry.info["responseHeader"]
    if entry.info.get("responseBody"):
        out["responseBody"] = entry.info["responseBody"]
    if m.topic_name:
        out["topicName"] = m.topic_name
    if m.endpoint_name:
        out["endpointName"] = m.endpoint_name
    if m.queue_name:
        out["queueName"] = m.queue_name
    if m.schedule_id:
        out["scheduleId"] = m.schedule_id
    headers = redact_headers(spec.headers, spec.redact)
    if headers:
        out["header"] = headers
    if m.body:
        shown = redacted_value(m.body).encode() if spec.redact.body else m.body
        out["body"] = base64.b64encode(shown).decode()
    out["method"] = spec.method
    if spec.timeout_s is not None:
        out["timeout"] = spec.timeout_s * 1000
    out.update(_callbacks(spec.callback, spec.failure_callback, plural=True))
    out["maxRetries"] = spec.max_retries
    if spec.retry_delay:
        out["retryDelayExpr"] = out["retryDelayExpression"] = spec.retry_delay
    _flow_fields(m, out)
    if m.labels:
        out["label"] = m.labels[0]
        out["labels"] = list(m.labels)
    if m.caller_ip:
        out["callerIP"] = m.caller_ip
    if spec.workflow is not None:
        # QStash's log entry has no field for this; the name is the workflow APIs' own.
        out["workflowRunId"] = spec.workflow.run_id
    return out


def queue_json(q: QueueInfo) -> dict[str, Any]:
    return {
        "name": q.name,
        "parallelism": q.parallelism,
        "createdAt": q.created_ms,
        "updatedAt": q.updated_ms,
        "lag": q.lag,
        "paused": q.paused,
    }


def url_group_json(g: UrlGroup) -> dict[str, Any]:
    return {
        "name": g.name,
        "createdAt": g.created_ms,
        "updatedAt": g.updated_ms,
        "endpoints": [{"url": e.url, **({"name": e.name} if e.name else {})} for e in g.endpoints],
    }


def _next_fire(s: Schedule, now_ms: int | None) -> int | None:
    """The stored next fire, except that a paused schedule's next trigger time keeps advancing
    (as QStash does): the scheduler skips paused schedules, so their stored value goes stale."""
    if not s.paused or now_ms is None or (s.next_fire_ms is not None and s.next_fire_ms > now_ms):
        return s.next_fire_ms
    try:
        return CronSchedule.parse(s.cron, now_ms=now_ms).next_after(now_ms)
    except InvalidRequest:
        return s.next_fire_ms


def schedule_json(s: Schedule, now_ms: int | None = None) -> dict[str, Any]:
    spec = s.spec
    out: dict[str, Any] = {
        "scheduleId": s.id,
        "cron": s.cron,
        "destination": s.destination,
        "createdAt": s.created_ms,
        "method": spec.method,
        "retries": spec.max_retries,
        "isPaused": s.paused,
    }
    headers = redact_headers(spec.headers, spec.redact)
    if headers:
        out["header"] = headers
    if s.body:
        if spec.redact.body:
            out["body"] = redacted_value(s.body)
        else:
            try:
                out["body"] = s.body.decode("utf-8")
            except UnicodeDecodeError:
                out["bodyBase64"] = base64.b64encode(s.body).decode()
    if s.delay_s:
        out["delay"] = s.delay_s
    if spec.timeout_s is not None:
        out["timeout"] = spec.timeout_s
    if spec.callback is not None:
        out["callback"] = spec.callback.url
        if spec.callback.headers:
            out["callbackHeader"] = spec.callback.headers
    if spec.failure_callback is not None:
        out["failureCallback"] = spec.failure_callback.url
        if spec.failure_callback.headers:
            out["failureCallbackHeader"] = spec.failure_callback.headers
    if s.queue_name:
        out["queueName"] = s.queue_name
    if s.flow is not None:
        out["flowControlKey"] = s.flow.key
        if s.flow.parallelism is not None:
            out["parallelism"] = s.flow.parallelism
        if s.flow.rate is not None:
            out["rate"] = s.flow.rate
        out["period"] = s.flow.period_s
    if spec.retry_delay:
        out["retryDelayExpression"] = spec.retry_delay
    if s.labels:
        out["label"] = s.labels[0]
        out["labels"] = list(s.labels)
    if s.caller_ip:
        out["callerIP"] = out["callerIp"] = s.caller_ip
    if s.last_fire_ms is not None:
        out["lastScheduleTime"] = s.last_fire_ms
    next_fire = _next_fire(s, now_ms)
    if next_fire is not None:
        out["nextScheduleTime"] = next_fire
    if s.last_states:
        out["lastScheduleStates"] = {k: v.value for k, v in s.last_states.items()}
    if s.error:
        out["error"] = s.error
    return out
