"""The search forms of the messages, DLQ and workflow runs pages -> `MessageFilter` /
`RunFilter`, and their paging links.

Form fields carry the API's query names (`queueName`, `topicName`, `workflowUrl`, ...) so that
the API's own parsers (`homing.web.filters.parse_filter`, `run_filter`) read them; only the time
range differs: browsers send `datetime-local` values, read here as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from homing.errors import InvalidRequest
from homing.models import LogState, MessageFilter, RunFilter, RunState
from homing.web import filters

MESSAGE_FIELDS = ("messageId", "state", "url", "queueName", "topicName", "scheduleId", "label")
DLQ_FIELDS = (
    "messageId", "url", "queueName", "topicName", "scheduleId", "label", "responseStatus",
)  # fmt: skip
TIME_FIELDS = ("from", "to")
STATE_CHOICES = ("IN_PROGRESS", *(s.value for s in LogState))
RUN_FIELDS = ("workflowRunId", "state", "workflowUrl")
RUN_STATE_CHOICES = tuple(s.value for s in RunState)

F = TypeVar("F", MessageFilter, RunFilter)


@dataclass(frozen=True, slots=True)
class Search(Generic[F]):
    filter: F
    values: dict[str, str]  # what the form shows again
    cursor: str | None
    error: str | None = None

    @property
    def active(self) -> bool:
        return any(self.values.values())

    def link(self, cursor: str | None) -> str:
        """The query string of this search at another page (None: the newest page)."""
        pairs = [(k, v) for k, v in self.values.items() if v]
        if cursor:
            pairs.append(("cursor", cursor))
        return "?" + urlencode(pairs) if pairs else "?"


def _local_ms(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date and time, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def search(params: QueryParams, fields: tuple[str, ...]) -> Search[MessageFilter]:
    """Read a search form; a bad value leaves the filter empty and says why."""
    values = {name: params.get(name, "").strip() for name in (*fields, *TIME_FIELDS)}
    cursor = params.get("cursor") or None
    pairs = [(name, values[name]) for name in fields if values[name]]
    try:
        if values["from"]:
            pairs.append(("fromDate", str(_local_ms(values["from"], "From"))))
        if values["to"]:
            pairs.append(("toDate", str(_local_ms(values["to"], "To"))))
        found = filters.parse_filter(QueryParams(pairs), allowed=fields, strict=False)
    except InvalidRequest as exc:
        return Search(MessageFilter(message_ids=("-",)), values, None, exc.message)
    return Search(found, values, cursor)


def run_search(params: QueryParams) -> Search[RunFilter]:
    """Read the runs search form (run id, state, workflow URL prefix); a bad value leaves
    nothing listed and says why."""
    values = {name: params.get(name, "").strip() for name in RUN_FIELDS}
    cursor = params.get("cursor") or None
    try:
        found = filters.run_filter(QueryParams([(k, v) for k, v in values.items() if v]))
    except InvalidRequest as exc:
        return Search(RunFilter(run_ids=("-",)), values, None, exc.message)
    return Search(found, values, cursor)


def log_cursor(cursor: str | None) -> int | None:
    """The logs page cursor is the id of the next entry; anything else starts over."""
    return int(cursor) if cursor and cursor.isdigit() else None
