"""`MessageFilter` -> a SQLite WHERE fragment over the `messages` table aliased `m`.

Only constant SQL fragments are composed; every value travels as a `?` parameter.
"""

from __future__ import annotations

from typing import Any

from homing.models import MessageFilter, RunFilter


def _in(column: str, values: tuple[Any, ...], out: list[str], params: list[Any]) -> None:
    if values:
        out.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)


def message_where(
    f: MessageFilter, *, time_column: str = "m.created_ms", with_states: bool = False
) -> tuple[str, list[Any]]:
    """Conditions AND-ed together (values of one field OR-ed); '' when the filter is empty."""
    out: list[str] = []
    params: list[Any] = []
    _in("m.id", f.message_ids, out, params)
    _in("m.dlq_id", f.dlq_ids, out, params)
    _in("m.url", f.urls, out, params)
    _in("m.url_host", f.hosts, out, params)
    _in("m.url_path", f.paths, out, params)
    _in("m.topic_name", f.topic_names, out, params)
    _in("m.queue_name", f.queue_names, out, params)
    _in("m.schedule_id", f.schedule_ids, out, params)
    _in("m.flow_key", f.flow_control_keys, out, params)
    _in("m.caller_ip", f.caller_ips, out, params)
    if f.response_statuses:
        out.append(
            f"json_extract(m.last_response, '$.s') IN ({','.join('?' * len(f.response_statuses))})"
        )
        params.extend(f.response_statuses)
    if f.labels:
        out.append(
            "EXISTS (SELECT 1 FROM json_each(m.labels) l WHERE l.value IN "
            f"({','.join('?' * len(f.labels))}))"
        )
        params.extend(f.labels)
    if with_states and f.states:
        states = tuple(dict.fromkeys(s.value for s in f.states))
        _in("e.state", states, out, params)
    if f.from_ms is not None:
        out.append(f"{time_column} >= ?")
        params.append(f.from_ms)
    if f.to_ms is not None:
        out.append(f"{time_column} <= ?")
        params.append(f.to_ms)
    return (" AND ".join(out), params)


def compose(template: str, where: str, **slots: str) -> str:
    """A named query with its `{filters}` slot filled by `where` (AND-ed to its conditions)."""
    return template.format(filters=f" AND {where}" if where else "", **slots)


def run_where(f: RunFilter) -> tuple[str, list[Any]]:
    """`RunFilter` -> conditions over `workflow_runs` aliased `r` ('' when the filter is empty)."""
    out: list[str] = []
    params: list[Any] = []
    _in("r.run_id", f.run_ids, out, params)
    _in("r.state", tuple(s.value for s in f.states), out, params)
    _in("r.caller_ip", f.caller_ips, out, params)
    _in("r.flow_key", f.flow_control_keys, out, params)
    if f.url is not None:
        if f.url_exact:
            out.append("r.url = ?")
            params.append(f.url)
        else:
            out.append("substr(r.url, 1, ?) = ?")
            params.extend((len(f.url), f.url))
    if f.labels:
        out.append(
            "EXISTS (SELECT 1 FROM json_each(r.labels) l WHERE l.value IN "
            f"({','.join('?' * len(f.labels))}))"
        )
        params.extend(f.labels)
    if f.from_ms is not None:
        out.append("r.created_ms >= ?")
        params.append(f.from_ms)
    if f.to_ms is not None:
        out.append("r.created_ms <= ?")
        params.append(f.to_ms)
    return (" AND ".join(out), params)
