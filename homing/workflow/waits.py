"""`context.waitForEvent`, `notify` and webhooks: what a wait request says, which waiters an
event reaches, and the wait-result step a waiter's resolution publishes. Pure: no I/O, no
clock (the time is an argument).

A waiter is resolved once: its result step is appended to the run under the wait step's key
(`steps.step_key`), which the run accepts once however many nodes, notifies and timeouts race.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from homing.errors import InvalidRequest
from homing.models import Headers, Waiter
from homing.workflow import steps

# The SDK's default (`JS: src/context/context.ts`); the longest a hosted plan allows is a year.
DEFAULT_TIMEOUT = "7d"
MAX_TIMEOUT_S = 366 * 24 * 3600
MAX_EVENT_ID = 512

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """The body of `POST /v2/wait/{eventId}`, checked."""

    url: str
    timeout: str  # as given, echoed in the result step
    timeout_ms: int
    timeout_url: str
    timeout_headers: Headers
    step: bytes  # the step object, re-encoded
    step_key: str
    run_id: str  # from the timeout headers (the SDK puts the run id there)


def event_id(raw: str) -> str:
    if not raw:
        raise InvalidRequest("expected an event id")
    if len(raw) > MAX_EVENT_ID:
        raise InvalidRequest(f"an event id has at most {MAX_EVENT_ID} characters")
    return raw


def parse_duration(value: Any) -> int:
    """A wait timeout in milliseconds: `"10d"`, `"90s"`, `"1h"`, or seconds as a number."""
    if isinstance(value, bool):
        raise InvalidRequest('timeout must be a duration such as "10s" or "7d"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise InvalidRequest(f'timeout {value!r} is not a duration such as "10s" or "7d"')
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise InvalidRequest('timeout must be a duration such as "10s" or "7d"')
    if seconds <= 0 or seconds > MAX_TIMEOUT_S:
        raise InvalidRequest(f"timeout must be more than 0 s and at most {MAX_TIMEOUT_S} s")
    return int(seconds * 1000)


def _headers(value: Any, what: str) -> Headers:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be an object of header names to lists of values")
    out: Headers = {}
    for name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidRequest(f"{what}: the values of {name!r} must be strings")
        out[str(name)] = list(values)
    return out


def _run_id(headers: Headers) -> str:
    for name, values in headers.items():
        if name.lower() == "upstash-workflow-runid" and values and values[0].strip():
            return values[0].strip()
    return ""


def parse_wait(body: bytes, request_headers: Headers) -> WaitRequest:
    """Read a wait request; the run id comes from its step headers (or the timeout headers)."""
    try:
        doc = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the wait body must be JSON") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("the wait body must be a JSON object")
    url = doc.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest("url must be the workflow's URL")
    timeout_url = doc.get("timeoutUrl") or url
    if not isinstance(timeout_url, str):
        raise InvalidRequest("timeoutUrl must be a URL")
    raw_timeout = doc.get("timeout")
    timeout_ms = parse_duration(DEFAULT_TIMEOUT if raw_timeout is None else raw_timeout)
    timeout = raw_timeout if isinstance(raw_timeout, str) else f"{timeout_ms // 1000}s"
    if raw_timeout is None:
        timeout = DEFAULT_TIMEOUT
    timeout_headers = _headers(doc.get("timeoutHeaders"), "timeoutHeaders")
    step = doc.get("step")
    if not isinstance(step, dict):
        raise InvalidRequest("step must be the wait step object")
    encoded = orjson.dumps(step)
    key = steps.step_key(encoded)
    if key is None:
        raise InvalidRequest("step must have a stepId (or a targetStep)")
    run_id = _run_id(request_headers) or _run_id(timeout_headers)
    if not run_id:
        raise InvalidRequest("the wait names no workflow run (Upstash-Workflow-RunId)")
    return WaitRequest(
        url=url,
        timeout=timeout,
        timeout_ms=timeout_ms,
        timeout_url=timeout_url,
        timeout_headers=timeout_headers,
        step=encoded,
        step_key=key,
        run_id=run_id,
    )


def kept_headers(raw: Iterable[tuple[str, str]]) -> Headers:
    """The wait request's headers that its notified result is published with: the workflow
    control and `Upstash-*` publish headers and the content type. Everything else (the
    caller's token above all) is not stored."""
    out: Headers = {}
    for name, value in raw:
        low = name.lower()
        if low == "authorization" or not (low.startswith("upstash-") or low == "content-type"):
            continue
        out.setdefault(name, []).append(value)
    return out


def publish_headers(headers: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """Stored headers as the header list of a publish."""
    return [(name, value) for name, values in headers.items() for value in values]


def result_body(waiter: Waiter, *, data: bytes | None) -> bytes:
    """The wait-result step: notified (`out` = base64 of the event data) or timed out (`out`
    absent, never `""`: a `WaitForWebhook` step reads `""` as an event and throws)."""
    step = orjson.loads(waiter.step)
    doc: dict[str, Any] = dict(step) if isinstance(step, dict) else {}
    doc["waitEventId"] = waiter.event_id
    doc["timeout"] = waiter.timeout
    doc.pop("out", None)
    if data is not None:
        doc["out"] = base64.b64encode(data).decode()
        doc["waitTimeout"] = False
    else:
        doc["waitTimeout"] = True
    return orjson.dumps(doc)


def view(waiter: Waiter) -> dict[str, Any]:
    """A waiter as `GET /v2/waiters` and the notify answer show it (`deadline` in seconds)."""
    return {
        "url": waiter.url,
        "deadline": waiter.deadline_ms // 1000,
        "headers": waiter.headers,
        "timeoutUrl": waiter.timeout_url,
        "timeoutHeaders": waiter.timeout_headers,
        "workflowRunId": waiter.run_id,
    }


def run_scoped(rest: str) -> tuple[str, str] | None:
    """`/v2/notify/{workflowRunId}/{eventId}` or `/v2/notify/{eventId}`? Event ids may contain
    `/`, so two or more segments are only a candidate (run id, event id): the caller takes it
    when the first segment has the SDK's `wfr_` prefix or names a run of the account."""
    first, sep, second = rest.partition("/")
    if sep and first and second:
        return first, second
    return None


def webhook_event(
    *,
    method: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    proto: str,
    host: str,
    url: str,
) -> bytes:
    """The event data of a webhook call, as `waitForWebhook` rebuilds the request from it:
    `${proto}://${host}${url}` must be the URL the caller used."""
    header: Headers = {}
    for name, value in headers:
        header.setdefault(name, []).append(value)
    return orjson.dumps(
        {
            "method": method,
            "header": header,
            "body": base64.b64encode(body).decode(),
            "proto": proto,
            "host": host,
            "url": url,
        }
    )


def canonical_header(name: str) -> str:
    """`content-type` -> `Content-Type`: header names as the hosted service reports them."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
