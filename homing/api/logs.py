"""Logs, a.k.a. events (`/v2/events` for the SDKs, `/v2/logs` in current docs): every state
transition, newest first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing.api.context import account
from homing.numbers import parse_ms
from homing.web import filters, views
from homing.web.http import JSON

LOG_FILTERS = (
    "messageId", "messageIds", "state", "url", "topicName", "queueName", "scheduleId", "label",
    "flowControlKey", "callerIp", "callerIP", "host", "path",
)  # fmt: skip
MAX_COUNT = 1000
# Event ids are `time_ms * 1000 + n`. A cursor below this bound is a Unix-ms time, as the JS
# SDK's docs start paging with `cursor = Date.now()`: entries at or before it.
_MS_CURSOR_BELOW = 10**14


def _before(cursor: str | None, newest_first: bool) -> int | None:
    if cursor is None or cursor.strip() == "":
        return None
    value = parse_ms(cursor, "cursor")
    if value < _MS_CURSOR_BELOW:
        return (value + 1) * 1000 if newest_first else value * 1000
    return value


async def _list(request: Request, *, key: str, both: bool) -> Response:
    svc, account_id = await account(request)
    params = request.query_params
    f = filters.parse_filter(params, allowed=LOG_FILTERS, strict=False)
    count = filters.count(params, default=MAX_COUNT, maximum=MAX_COUNT)
    assert count is not None
    newest_first = params.get("order", "latestFirst") != "earliestFirst"
    page = await svc.storage.list_logs(
        account_id,
        filter=f,
        before_id=_before(params.get("cursor"), newest_first),
        count=count,
        newest_first=newest_first,
    )
    entries = [views.log_json(e) for e in page.items]
    out: dict[str, object] = {key: entries}
    if both:
        out["events"] = entries
    if page.cursor is not None:
        out["cursor"] = page.cursor
    return JSON(out)


async def events(request: Request) -> Response:
    return await _list(request, key="events", both=False)


async def logs(request: Request) -> Response:
    return await _list(request, key="logs", both=True)
