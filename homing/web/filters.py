"""Query parameters -> `MessageFilter`, shared by logs, DLQ and bulk cancel.

Repeated keys and comma-separated values are both accepted; values of one field are OR-ed.
URL values are split on commas only when every part is itself an absolute URL.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import QueryParams

from homing.errors import InvalidRequest
from homing.models import LogState, MessageFilter, RunFilter, RunState
from homing.numbers import parse_int, parse_ms

# query name -> MessageFilter field
FIELDS = {
    "messageId": "message_ids",
    "messageIds": "message_ids",
    "dlqIds": "dlq_ids",
    "url": "urls",
    "host": "hosts",
    "path": "paths",
    "topicName": "topic_names",
    "queueName": "queue_names",
    "scheduleId": "schedule_ids",
    "label": "labels",
    "flowControlKey": "flow_control_keys",
    "callerIp": "caller_ips",
    "callerIP": "caller_ips",
    "responseStatus": "response_statuses",
    "state": "states",
}
PAGING = frozenset({"cursor", "count", "order"})
LEGACY = frozenset({"api", "trimBody", "groupBy", "qstash_token"})
_IN_PROGRESS = (LogState.ACTIVE, LogState.RETRY, LogState.ERROR)


def _values(params: QueryParams, key: str) -> list[str]:
    out: list[str] = []
    raw = params.getlist(key)
    for value in raw:
        parts = [p.strip() for p in value.split(",")]
        if key == "url" and not all(p.lower().startswith(("http://", "https://")) for p in parts):
            parts = [value]
        out.extend(p for p in parts if p)
    return out


def _ms(params: QueryParams, key: str) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return parse_ms(value, key)


def states(values: Iterable[str]) -> tuple[LogState, ...]:
    """CANCELLED is accepted for CANCELED; IN_PROGRESS means ACTIVE, RETRY or ERROR."""
    out: list[LogState] = []
    for raw in values:
        value = raw.strip().upper()
        if value == "IN_PROGRESS":
            out.extend(_IN_PROGRESS)
        elif value == "CANCELLED":
            out.append(LogState.CANCELED)
        else:
            try:
                out.append(LogState(value))
            except ValueError:
                raise InvalidRequest(f"unknown state {raw!r}") from None
    return tuple(out)


def parse_filter(
    params: QueryParams, *, allowed: Iterable[str], strict: bool, extra: Iterable[str] = ()
) -> MessageFilter:
    """Read the filter fields in `allowed`. With `strict`, any other parameter (except paging,
    legacy names and `extra`) is a 400, as the DLQ bulk endpoints require: an unknown filter
    must not delete everything."""
    allowed = set(allowed)
    known = allowed | PAGING | LEGACY | {"fromDate", "toDate"} | set(extra)
    if strict:
        for key in params:
            if key not in known:
                raise InvalidRequest(f"unknown query parameter {key!r}")
    fields: dict[str, list[str]] = {}
    for key in allowed:
        if key in params:
            fields.setdefault(FIELDS[key], []).extend(_values(params, key))
    statuses: list[int] = []
    for value in fields.pop("response_statuses", []):
        statuses.append(parse_int(value, "responseStatus", 0, 999))
    return MessageFilter(
        message_ids=tuple(fields.get("message_ids", ())),
        dlq_ids=tuple(fields.get("dlq_ids", ())),
        urls=tuple(fields.get("urls", ())),
        hosts=tuple(fields.get("hosts", ())),
        paths=tuple(fields.get("paths", ())),
        topic_names=tuple(fields.get("topic_names", ())),
        queue_names=tuple(fields.get("queue_names", ())),
        schedule_ids=tuple(fields.get("schedule_ids", ())),
        labels=tuple(fields.get("labels", ())),
        flow_control_keys=tuple(fields.get("flow_control_keys", ())),
        caller_ips=tuple(fields.get("caller_ips", ())),
        response_statuses=tuple(statuses),
        states=states(fields.get("states", ())),
        from_ms=_ms(params, "fromDate"),
        to_ms=_ms(params, "toDate"),
    )


def given_empty(params: QueryParams, allowed: Iterable[str]) -> list[str]:
    """Filter parameters that are present but carry no value (`messageIds=`, `label=`).

    Parsing drops such values, which would turn a destructive bulk call into "everything"; the
    bulk endpoints use this to select nothing instead (only a bare call means
    all).
    """
    return [key for key in allowed if key in params and not _values(params, key)]


def count(params: QueryParams, *, default: int | None, maximum: int) -> int | None:
    """`count`, clamped to `maximum` (QStash caps page sizes rather than refusing them)."""
    value = params.get("count")
    if value is None or value == "":
        return default
    return max(1, min(parse_int(value, "count"), maximum))


def is_empty(f: MessageFilter) -> bool:
    return f == MessageFilter()


def run_filter(params: QueryParams) -> RunFilter:
    """Query parameters -> `RunFilter` (bulk cancel of workflow runs, run listings).

    `workflowRunIds` given: the other filters are ignored. `workflowUrl` is a prefix unless
    `workflowUrlExactMatch=true`; dates are Unix milliseconds.
    """
    run_ids = tuple(_values(params, "workflowRunIds") + _values(params, "workflowRunId"))
    if run_ids:
        return RunFilter(run_ids=run_ids)
    url = params.get("workflowUrl") or None
    exact = (params.get("workflowUrlExactMatch") or "").strip().lower() in ("true", "1")
    found_states: list[RunState] = []
    for value in _values(params, "state"):
        try:
            found_states.append(RunState(value.upper()))
        except ValueError:
            raise InvalidRequest(f"unknown workflow run state {value!r}") from None
    return RunFilter(
        url=url,
        url_exact=exact and url is not None,
        states=tuple(found_states),
        labels=tuple(_values(params, "label")),
        caller_ips=tuple(_values(params, "callerIp") + _values(params, "callerIP")),
        flow_control_keys=tuple(_values(params, "flowControlKey")),
        from_ms=_ms(params, "fromDate"),
        to_ms=_ms(params, "toDate"),
    )
