"""`MessageFilter` -> a PostgreSQL WHERE fragment over `messages` aliased `m` (and `events e`).

The PostgreSQL twin of `homing.storage.sqlite.filters`. Only constant SQL fragments are
composed; every value travels as a `$n` parameter (a list travels as one array parameter).
"""

from __future__ import annotations

from typing import Any

from homing.models import MessageFilter, RunFilter

# Columns a filter field may name: the only identifiers that ever reach the SQL text.
_TEXT_FIELDS = (
    ("message_ids", "m.id"),
    ("dlq_ids", "m.dlq_id"),
    ("urls", "m.url"),
    ("hosts", "m.url_host"),
    ("paths", "m.url_path"),
    ("topic_names", "m.topic_name"),
    ("queue_names", "m.queue_name"),
    ("schedule_ids", "m.schedule_id"),
    ("flow_control_keys", "m.flow_key"),
    ("caller_ips", "m.caller_ip"),
)
TIME_COLUMNS = ("m.created_ms", "m.dlq_ms", "e.time_ms")


class Params:
    """Positional parameters of one statement: `add(value)` returns its `$n` placeholder."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def compose(template: str, conditions: list[str], **slots: str) -> str:
    """A named query with its `{filters}` slot filled by AND-ed conditions of this module."""
    return template.format(filters="".join(" AND " + c for c in conditions), **slots)


def message_where(
    f: MessageFilter,
    params: Params,
    *,
    time_column: str = "m.created_ms",
    with_states: bool = False,
) -> list[str]:
    """Conditions to AND together (values of one field OR-ed); [] when the filter is empty."""
    if time_column not in TIME_COLUMNS:
        raise ValueError(f"unknown time column {time_column!r}")
    out: list[str] = []
    for field, column in _TEXT_FIELDS:
        values: tuple[str, ...] = getattr(f, field)
        if values:
            out.append(f"{column} = ANY({params.add(list(values))}::text[])")
    if f.response_statuses:
        out.append(f"m.response_status = ANY({params.add(list(f.response_statuses))}::integer[])")
    if f.labels:
        out.append(f"m.labels ?| {params.add(list(f.labels))}::text[]")
    if with_states and f.states:
        states = list(dict.fromkeys(s.value for s in f.states))
        out.append(f"e.state = ANY({params.add(states)}::text[])")
    if f.from_ms is not None:
        out.append(f"{time_column} >= {params.add(f.from_ms)}::bigint")
    if f.to_ms is not None:
        out.append(f"{time_column} <= {params.add(f.to_ms)}::bigint")
    return out


def run_where(f: RunFilter, params: Params) -> list[str]:
    """`RunFilter` -> conditions over `workflow_runs` aliased `r` ([] when the filter is empty)."""
    out: list[str] = []
    for values, column in (
        (f.run_ids, "r.run_id"),
        (tuple(s.value for s in f.states), "r.state"),
        (f.caller_ips, "r.caller_ip"),
        (f.flow_control_keys, "r.flow_key"),
    ):
        if values:
            out.append(f"{column} = ANY({params.add(list(values))}::text[])")
    if f.url is not None:
        if f.url_exact:
            out.append(f"r.url = {params.add(f.url)}::text")
        else:
            url = params.add(f.url)
            out.append(f"left(r.url, length({url}::text)) = {url}::text")
    if f.labels:
        out.append(f"r.labels ?| {params.add(list(f.labels))}::text[]")
    if f.from_ms is not None:
        out.append(f"r.created_ms >= {params.add(f.from_ms)}::bigint")
    if f.to_ms is not None:
        out.append(f"r.created_ms <= {params.add(f.to_ms)}::bigint")
    return out
