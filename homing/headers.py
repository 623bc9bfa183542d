"""QStash configuration headers (`Upstash-*`) -> `PublishOptions`. Pure: no I/O, no clock.

Header names are matched case-insensitively everywhere (the JS SDK sends lower-case names, also
inside batch items). Configuration may also arrive as `upstash-*` query parameters;
a header wins over a query parameter of the same name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from homing.durations import parse_duration_s
from homing.errors import InvalidRequest
from homing.models import CallbackSpec, FlowControl, Headers, Redaction
from homing.numbers import parse_int
from homing.retry import RetryDelay

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

# Headers Homing sets itself on every delivery: a publisher must not be able to forge them.
RESERVED_DELIVERY_HEADERS = frozenset(
    {
        "upstash-signature",
        "upstash-message-id",
        "upstash-retried",
        "upstash-topic-name",
        "upstash-schedule-id",
        "upstash-caller-ip",
    }
)
# Connection-level headers that describe one hop, not the message (RFC 9110 7.6.1), plus the
# framing headers the HTTP client computes.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_NOT_WEBHOOK_FORWARDED = HOP_BY_HOP | {"authorization", "traceparent", "tracestate", "expect"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FLOW_PAIR = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,]*?)\s*")
_CALLBACK_CONFIG = ("method", "timeout", "retries", "retry-delay", "delay")
MAX_FORWARDED_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


@functools.lru_cache(maxsize=1024)  # every response header of every attempt goes through here
def canonical(name: str) -> str:
    """`content-type` -> `Content-Type` (MIME canonical form, as QStash returns names)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass(frozen=True, slots=True)
class Limits:
    max_retries: int = 20
    max_delay_s: int = 365 * 86400
    max_timeout_s: int = 15 * 60


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """Everything a publish, enqueue, batch item or schedule says about its messages."""

    method: str = "POST"
    headers: Headers = field(default_factory=dict)
    max_retries: int | None = None  # None: the default (3), or the stored value on DLQ retry
    retry_delay: RetryDelay | None = None
    delay_s: int = 0
    not_before_s: int | None = None
    timeout_s: int | None = None
    callback: CallbackSpec | None = None
    failure_callback: CallbackSpec | None = None
    dedup_id: str | None = None
    content_dedup: bool = False
    flow: FlowControl | None = None
    labels: tuple[str, ...] = ()
    redact: Redaction = Redaction()
    trace: dict[str, str] = field(default_factory=dict)
    # schedule creation only
    cron: str | None = None
    schedule_id: str | None = None
    queue_name: str | None = None
    # which options were given explicitly (DLQ retry overrides only those)
    given: frozenset[str] = frozenset()


def parse_bool(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise InvalidRequest(f"invalid {what} {value!r}: expected true or false")


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise InvalidRequest(
            f"header {name!r} has a value with CR, LF or NUL, which is not allowed"
        )


# Names Homing sets itself on the deliveries of a workflow run: a forwarded copy is dropped, so
# that the server's value is the only one (two run ids or signatures break the SDKs).
SERVER_SET_WORKFLOW_HEADERS = frozenset({"upstash-workflow-runid", "upstash-workflow-createdat"})


def _forwarded_name(raw: str, source: str) -> str | None:
    """Validate the name of a header to be sent on delivery; returns it canonical, or None for
    a name Homing drops silently.

    The workflow SDKs forward every header of the request they received (`Host`,
    `Content-Length`, `Upstash-Signature`, ...), as the hosted service accepts: connection-level
    and framing headers and the ones Homing sets on delivery are dropped, never refused."""
    if not _TOKEN.fullmatch(raw):
        raise InvalidRequest(f"invalid header name in {source!r}")
    lowered = raw.lower()
    if (
        lowered in RESERVED_DELIVERY_HEADERS
        or lowered in HOP_BY_HOP
        or lowered in SERVER_SET_WORKFLOW_HEADERS
    ):
        return None
    return canonical(raw)


# The same few durations (`Upstash-Delay: 60s`) arrive on publish after publish.
_duration_s = functools.lru_cache(maxsize=256)(parse_duration_s)


def parse_flow_control(key: str | None, value: str | None) -> FlowControl | None:
    if key is None and value is None:
        return None
    if not key or not key.strip():
        raise InvalidRequest("Upstash-Flow-Control-Value needs Upstash-Flow-Control-Key")
    if value is None or not value.strip():
        raise InvalidRequest(
            "Upstash-Flow-Control-Value is required with a flow-control key "
            "(e.g. 'parallelism=3, rate=10, period=1m')"
        )
    parallelism = rate = None
    period = 1
    for part in value.split(","):
        m = _FLOW_PAIR.fullmatch(part)
        if not m:
            raise InvalidRequest(f"invalid Upstash-Flow-Control-Value {value!r}")
        name, raw = m.group(1).lower(), m.group(2)
        if name == "period":
            period = parse_duration_s(raw, what="flow-control period")
            if not 1 <= period <= 7 * 86400:
                raise InvalidRequest("flow-control period must be between 1s and 7d")
            continue
        if name not in ("parallelism", "rate"):
            raise InvalidRequest(f"unknown flow-control setting {name!r}")
        number = parse_int(raw, f"flow-control {name}", 1)
        if name == "parallelism":
            parallelism = number
        else:
            rate = number
    return FlowControl(key=key.strip(), parallelism=parallelism, rate=rate, period_s=period)


def parse_redaction(value: str) -> Redaction:
    body = all_headers = False
    names: set[str] = set()
    for item in (p.strip() for p in value.split(",")):
        low = item.lower()
        if not item:
            continue
        if low == "body":
            body = True
        elif low in ("header", "headers"):
            all_headers = True
        elif m := re.fullmatch(r"headers?\[\s*([^\]\s]+)\s*\]", item, re.IGNORECASE):
            names.add(m.group(1).lower())
        else:
            raise InvalidRequest(
                f"invalid Upstash-Redact-Fields item {item!r}: use body, header or header[Name]"
            )
    return Redaction(body=body, all_headers=all_headers, header_names=frozenset(names))


_NO_REDACTION = Redaction()
_CALLBACK_PREFIXES = ("upstash-callback", "upstash-failure-callback")


class _Config:
    """The configuration of one request: every (name, lower-cased name, value) in order, and
    the first value of each `upstash-*` name (lower-cased), the only names looked up."""

    __slots__ = ("first", "order")

    def __init__(self, order: list[tuple[str, str, str]], first: dict[str, str]) -> None:
        self.order = order
        self.first = first

    def get(self, name: str) -> str | None:
        return self.first.get(name)


def _is_control(rest: str) -> bool:
    """A name under a callback prefix that configures the callback message itself (workflow
    control headers, or the callback's own failure callback), never a forwarded header."""
    return (
        rest.startswith(("workflow-", "failure-callback"))
        or rest == "feature-set"
        or (rest.startswith("flow-control-"))
    )


def _callback(cfg: _Config, prefix: str, label: str, limits: Limits) -> CallbackSpec | None:
    """The callback (prefix `upstash-callback`) or failure callback of a message."""
    if not any(name.startswith(prefix) for name in cfg.first):
        return None  # the common case: no header of this callback at all
    url = cfg.get(prefix)
    if url is None:
        # Configuration without a URL: the Python workflow SDK sends a failure-callback group on
        # every message even when no failure URL is configured; the hosted service ignores it.
        return None
    headers: Headers = {}
    control: dict[str, str] = {}
    for name, low, value in cfg.order:
        if not low.startswith(prefix + "-"):
            continue
        rest = name[len(prefix) + 1 :]
        lowered = rest.lower()
        if lowered in _CALLBACK_CONFIG:
            continue
        _check_value(name, value)
        if _is_control(lowered):
            # `Upstash-Callback-Workflow-RunId` is `Upstash-Workflow-RunId` of the callback.
            control.setdefault("upstash-" + lowered, value)
            continue
        if lowered.startswith("forward-"):
            rest = rest[len("forward-") :]
        fwd = _forwarded_name(rest, name)
        if fwd is not None:
            headers.setdefault(fwd, []).append(value)
    url = url.strip()
    if not re.match(r"(?i)https?://[^/\s]+", url):
        raise InvalidRequest(f"{canonical(prefix)} must be an absolute http(s) URL, got {url!r}")
    method = (cfg.get(prefix + "-method") or "POST").strip().upper()
    if method not in METHODS:
        raise InvalidRequest(f"invalid {canonical(prefix)}-Method {method!r}")
    retries = cfg.get(prefix + "-retries")
    delay = cfg.get(prefix + "-retry-delay")
    timeout = cfg.get(prefix + "-timeout")
    callback_delay = cfg.get(prefix + "-delay")
    delay_s = None
    if callback_delay is not None:
        delay_s = _duration_s(callback_delay, what=f"{label} delay")
        if delay_s > limits.max_delay_s:
            raise InvalidRequest(f"{label} delay exceeds the maximum of {limits.max_delay_s}s")
    return CallbackSpec(
        url=url,
        headers=headers,
        method=method,
        retries=None
        if retries is None
        else parse_int(retries, f"{label} retries", 0, limits.max_retries),
        retry_delay=None if delay is None else RetryDelay.parse(delay).text,
        timeout_s=None
        if timeout is None
        else min(_duration_s(timeout, what=f"{label} timeout"), limits.max_timeout_s),
        delay_s=delay_s,
        control=control,
    )


def parse_options(
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]] = (),
    *,
    limits: Limits = Limits(),
) -> PublishOptions:
    """Read the message configuration of one request.

    `headers` are the request's (or batch item's) headers as (name, value) pairs; `query` the
    `upstash-*` query parameters of the request, if any.
    """
    # One pass lower-cases every name once; what follows reads these.
    order: list[tuple[str, str, str]] = []
    first: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        order.append((name, low, value))
        if low.startswith("upstash-") and low not in first:
            first[low] = value
    if query:
        header_names = {low for _, low, _ in order}
        for name, value in query:
            low = name.lower()
            if low.startswith("upstash-") and low not in header_names:
                order.append((name, low, value))
                if low not in first:
                    first[low] = value
    cfg = _Config(order, first)
    get = first.get
    raw_forward = get("upstash-header-forward")
    webhook_mode = raw_forward is not None and parse_bool(raw_forward, "Upstash-Header-Forward")
    given: set[str] = set()

    forwarded: Headers = {}
    content_type: str | None = None
    trace: dict[str, str] = {}
    size = 0
    for name, low, value in order:
        size += len(name) + len(value)
        if low in ("traceparent", "tracestate"):
            _check_value(name, value)
            trace[low] = value
        elif low == "content-type":
            _check_value(name, value)
            content_type = content_type or value
        elif low.startswith("upstash-forward-"):
            target = _forwarded_name(name[len("upstash-forward-") :], name)
            _check_value(name, value)
            if target is None:
                continue
            if target == "Content-Type":
                content_type = value  # the forwarded form wins over a plain Content-Type
            else:
                forwarded.setdefault(target, []).append(value)
        elif (
            webhook_mode
            and not low.startswith("upstash-")
            and low not in _NOT_WEBHOOK_FORWARDED
            and _TOKEN.fullmatch(name)
            and not any(c in value for c in "\r\n\x00")
        ):
            forwarded.setdefault(canonical(name), []).append(value)
    if size > MAX_HEADER_BYTES:
        raise InvalidRequest(f"headers are too large (more than {MAX_HEADER_BYTES} bytes)")
    if content_type is not None:
        forwarded["Content-Type"] = [content_type]
    if len(forwarded) > MAX_FORWARDED_HEADERS:
        raise InvalidRequest(f"too many forwarded headers (at most {MAX_FORWARDED_HEADERS})")
    if forwarded:
        given.add("headers")

    method = "POST"
    if (raw_method := get("upstash-method")) is not None:
        method = raw_method.strip().upper()
        if method not in METHODS:
            raise InvalidRequest(
                f"invalid Upstash-Method {raw_method!r}: use GET, POST, PUT, PATCH or DELETE"
            )
        given.add("method")

    max_retries = None
    if (raw := get("upstash-retries")) is not None:
        max_retries = parse_int(raw, "Upstash-Retries", 0, limits.max_retries)
        given.add("max_retries")
    retry_delay = None
    if (raw := get("upstash-retry-delay")) is not None:
        retry_delay = RetryDelay.parse(raw)
        given.add("retry_delay")
    delay_s = 0
    if (raw := get("upstash-delay")) is not None:
        delay_s = _duration_s(raw, what="Upstash-Delay")
        if delay_s > limits.max_delay_s:
            raise InvalidRequest(f"Upstash-Delay exceeds the maximum of {limits.max_delay_s}s")
        given.add("delay")
    not_before_s = None
    if (raw := get("upstash-not-before")) is not None:
        not_before_s = parse_int(raw, "Upstash-Not-Before", 0, 2**41)
        given.add("delay")
    timeout_s = None
    if (raw := get("upstash-timeout")) is not None:
        timeout_s = max(1, min(_duration_s(raw, what="Upstash-Timeout"), limits.max_timeout_s))
        given.add("timeout")

    dedup_id = get("upstash-deduplication-id")
    if dedup_id is not None:
        dedup_id = dedup_id.strip()
        if not dedup_id:
            raise InvalidRequest("Upstash-Deduplication-Id must not be empty")
    raw_dedup = get("upstash-content-based-deduplication")
    content_dedup = raw_dedup is not None and parse_bool(
        raw_dedup, "Upstash-Content-Based-Deduplication"
    )
    flow = parse_flow_control(get("upstash-flow-control-key"), get("upstash-flow-control-value"))
    if flow is not None:
        given.add("flow")
    labels: tuple[str, ...] = ()
    if (raw := get("upstash-label")) is not None:
        labels = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
        given.add("labels")
    redact = _NO_REDACTION
    if (raw := get("upstash-redact-fields")) is not None:
        redact = parse_redaction(raw)
        given.add("redact")
    callback = failure_callback = None
    if any(name.startswith(_CALLBACK_PREFIXES) for name in first):
        callback = _callback(cfg, "upstash-callback", "callback", limits)
        failure_callback = _callback(cfg, "upstash-failure-callback", "failure callback", limits)
        if callback is not None:
            given.add("callback")
        if failure_callback is not None:
            given.add("failure_callback")

    return PublishOptions(
        method=method,
        headers=forwarded,
        max_retries=max_retries,
        retry_delay=retry_delay,
        delay_s=delay_s,
        not_before_s=not_before_s,
        timeout_s=timeout_s,
        callback=callback,
        failure_callback=failure_callback,
        dedup_id=dedup_id,
        content_dedup=content_dedup,
        flow=flow,
        labels=labels,
        redact=redact,
        trace=trace,
        cron=get("upstash-cron"),
        schedule_id=get("upstash-schedule-id"),
        queue_name=get("upstash-queue-name"),
        given=frozenset(given),
    )
