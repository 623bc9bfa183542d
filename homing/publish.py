"""Publish policy: what messages a publish creates. Pure: the caller supplies ids, time and groups.

A URL destination creates one message; a URL group one per endpoint, in endpoint order, as
QStash does.
Deduplication keys are scoped to the resolved destination URL, so each endpoint of a group is
deduplicated on its own (the deduplication id is per destination).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import orjson

from homing.errors import InvalidRequest
from homing.headers import PublishOptions
from homing.models import DeliverySpec, Message, MessageKind, NewMessage, Schedule

DEFAULT_RETRIES = 3
NAME_RE = re.compile(r"[A-Za-z0-9\-_.]+")
_URL_PREFIX = re.compile(r"(?i)^(https?):/*")
_ENCODED_URL_PREFIX = re.compile(r"(?i)^https?%3A")


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """Either a URL or the name of a URL group."""

    url: str | None = None
    group: str | None = None


def validate_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise InvalidRequest(
            f"invalid {what} {value!r}: use only letters, digits, '-', '_' and '.'"
        )
    return value


def parse_destination(raw: str) -> Destination:
    """Read a destination from the raw remainder of a request path: a URL (kept byte for byte)
    or a URL group name."""
    text = raw
    if _ENCODED_URL_PREFIX.match(text):
        from urllib.parse import unquote

        text = unquote(text)
    m = _URL_PREFIX.match(text)
    if m:
        # Restore the `//` that a proxy may have merged (`https:/host`): the URL is otherwise
        # kept byte for byte.
        rest = text[m.end() :]
        if not rest or rest.startswith("/"):
            raise InvalidRequest(f"invalid destination URL {raw!r}: it has no host")
        return Destination(url=f"{text[: m.end(1)]}://{rest}")
    if not text:
        raise InvalidRequest("a destination (URL or URL-group name) is required in the path")
    if text == "api/llm":
        raise InvalidRequest("the Upstash-hosted LLM destination 'api/llm' is not supported")
    if text.lower().startswith(("http:", "https:")) or "://" in text:
        raise InvalidRequest(f"invalid destination URL {raw!r}")
    return Destination(group=validate_name(text, "URL group name"))


def dedup_key(url: str, options: PublishOptions, body: bytes) -> str | None:
    """The deduplication key of a message to `url`, or None when it is not deduplicated."""
    if options.dedup_id is not None:
        basis = b"id\x00" + options.dedup_id.encode()
    elif options.content_dedup:
        basis = b"content\x00" + orjson.dumps(sorted(options.headers.items())) + b"\x00" + body
    else:
        return None
    return hashlib.sha256(url.encode() + b"\x00" + basis).hexdigest()


def delivery_spec(options: PublishOptions, kind: MessageKind = MessageKind.MESSAGE) -> DeliverySpec:
    return DeliverySpec(
        method=options.method,
        headers=options.headers,
        max_retries=DEFAULT_RETRIES if options.max_retries is None else options.max_retries,
        retry_delay=options.retry_delay.text if options.retry_delay else None,
        timeout_s=options.timeout_s,
        callback=options.callback,
        failure_callback=options.failure_callback,
        redact=options.redact,
        trace=options.trace,
        kind=kind,
    )


def not_before_ms(options: PublishOptions, now_ms: int) -> int:
    """Upstash-Not-Before (seconds) overrides Upstash-Delay, as on QStash."""
    if options.not_before_s is not None:
        return options.not_before_s * 1000
    return now_ms + options.delay_s * 1000


def build_messages(
    *,
    account_id: str,
    targets: Sequence[Endpoint],
    options: PublishOptions,
    body: bytes,
    now_ms: int,
    new_id: Callable[[], str],
    caller_ip: str = "",
    topic_name: str | None = None,
    queue_name: str | None = None,
    schedule_id: str | None = None,
    dedup: bool = True,
) -> list[NewMessage]:
    """One message per target (a URL publish has exactly one target)."""
    spec = delivery_spec(options)
    not_before = not_before_ms(options, now_ms)
    return [
        NewMessage(
            id=new_id(),
            account_id=account_id,
            url=target.url,
            body=body,
            spec=spec,
            created_ms=now_ms,
            not_before_ms=not_before,
            caller_ip=caller_ip,
            queue_name=queue_name,
            topic_name=topic_name,
            endpoint_name=target.name,
            schedule_id=schedule_id,
            labels=options.labels,
            flow=options.flow,
            dedup_key=dedup_key(target.url, options, body) if dedup else None,
        )
        for target in targets
    ]


def with_queue(messages: list[NewMessage], queue_name: str) -> list[NewMessage]:
    return [replace(m, queue_name=queue_name) for m in messages]


def retry_from_dlq(
    entry: Message, overrides: PublishOptions, *, now_ms: int, new_id: Callable[[], str]
) -> NewMessage:
    """A DLQ entry -> a new message with the original (unredacted) request and configuration,
    overridden by the configuration headers the retry request gave (as `POST /v2/dlq/retry`
    documents).

    The original deduplication id is not applied again (it would swallow the retry); a dedup
    header on the retry request itself is.
    """
    spec = entry.spec
    given = overrides.given
    new_spec = replace(
        spec,
        method=overrides.method if "method" in given else spec.method,
        headers={**spec.headers, **overrides.headers} if "headers" in given else spec.headers,
        max_retries=overrides.max_retries
        if "max_retries" in given and overrides.max_retries is not None
        else spec.max_retries,
        retry_delay=overrides.retry_delay.text
        if "retry_delay" in given and overrides.retry_delay
        else spec.retry_delay,
        timeout_s=overrides.timeout_s if "timeout" in given else spec.timeout_s,
        callback=overrides.callback if "callback" in given else spec.callback,
        failure_callback=overrides.failure_callback
        if "failure_callback" in given
        else spec.failure_callback,
        redact=overrides.redact if "redact" in given else spec.redact,
    )
    return NewMessage(
        id=new_id(),
        account_id=entry.account_id,
        url=entry.url,
        body=entry.body,
        spec=new_spec,
        created_ms=now_ms,
        not_before_ms=not_before_ms(overrides, now_ms) if "delay" in given else now_ms,
        caller_ip=entry.caller_ip,
        queue_name=entry.queue_name,
        topic_name=entry.topic_name,
        endpoint_name=entry.endpoint_name,
        schedule_id=entry.schedule_id,
        labels=overrides.labels if "labels" in given else entry.labels,
        flow=overrides.flow if "flow" in given else entry.flow,
        dedup_key=dedup_key(entry.url, overrides, entry.body),
    )


def schedule_messages(
    schedule: Schedule, targets: Sequence[Endpoint], *, now_ms: int, new_id: Callable[[], str]
) -> list[NewMessage]:
    """The messages one fire of `schedule` publishes: its template to each target, delayed by
    the schedule's delay from the fire, into its queue if it names one."""
    return [
        NewMessage(
            id=new_id(),
            account_id=schedule.account_id,
            url=target.url,
            body=schedule.body,
            spec=schedule.spec,
            created_ms=now_ms,
            not_before_ms=now_ms + schedule.delay_s * 1000,
            caller_ip=schedule.caller_ip,
            queue_name=schedule.queue_name,
            topic_name=None if is_url(schedule.destination) else schedule.destination,
            endpoint_name=target.name,
            schedule_id=schedule.id,
            labels=schedule.labels,
            flow=schedule.flow,
        )
        for target in targets
    ]


def is_url(destination: str) -> bool:
    return bool(_URL_PREFIX.match(destination))
