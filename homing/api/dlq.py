"""The dead-letter queue (`/v2/dlq`): list, get, delete and retry, one or in bulk."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from homing.actions import dlq
from homing.actions.context import Services
from homing.api import workflow_client
from homing.api.context import account
from homing.errors import InvalidRequest, NotFound
from homing.headers import parse_options
from homing.models import InsertResult, Message, MessageFilter
from homing.numbers import parse_int
from homing.web import filters, views
from homing.web.http import JSON, read_json

DLQ_FILTERS = (
    "messageId", "dlqIds", "url", "topicName", "scheduleId", "queueName", "label",
    "flowControlKey", "callerIp", "callerIP", "responseStatus",
)  # fmt: skip
MAX_COUNT = 100


def _cursor(raw: str | None) -> str | None:
    """DLQ cursors are row positions we issued; anything else is a mistake worth a 400."""
    if raw is None or raw.strip() == "":
        return None
    return str(parse_int(raw, "cursor"))


async def list_dlq(request: Request) -> Response:
    source = request.query_params.get("source")
    if source is not None:
        workflow_client.reject_unknown_source(source)
        if source == "workflow":
            return await workflow_client.list_entries(request)
    svc, account_id = await account(request)
    params = request.query_params
    for key in ("host", "path"):
        if key in params:
            raise InvalidRequest(f"{key!r} is not a DLQ filter")
    f = filters.parse_filter(params, allowed=DLQ_FILTERS, strict=False)
    count = filters.count(params, default=MAX_COUNT, maximum=MAX_COUNT)
    assert count is not None
    page = await svc.storage.list_dlq(
        account_id,
        filter=f,
        cursor=_cursor(params.get("cursor")),
        count=count,
        newest_first=params.get("order") == "latestFirst",
    )
    out: dict[str, Any] = {"messages": [views.dlq_json(m) for m in page.items]}
    if page.cursor is not None:
        out["cursor"] = page.cursor
    return JSON(out)


async def get_dlq(request: Request) -> Response:
    svc, account_id = await account(request)
    entry = await svc.storage.get_dlq(account_id, request.path_params["dlq_id"])
    if entry is None:
        raise NotFound(f"DLQ entry {request.path_params['dlq_id']!r} not found")
    return JSON(views.dlq_json(entry))


async def delete_dlq(request: Request) -> Response:
    svc, account_id = await account(request)
    dlq_id = request.path_params["dlq_id"]
    if not await svc.storage.delete_dlq(account_id, [dlq_id]):
        raise NotFound(f"DLQ entry {dlq_id!r} not found")
    return JSON({"deleted": 1})


async def _select(
    svc: Services, account_id: str, request: Request
) -> tuple[list[Message], str | None]:
    """The entries a bulk call names: `dlqIds`, or a filtered page from `cursor` (all when no
    filter). Unknown parameters are refused: a typo must not delete everything."""
    params = request.query_params
    f = filters.parse_filter(params, allowed=DLQ_FILTERS, strict=True)
    count = filters.count(params, default=MAX_COUNT, maximum=MAX_COUNT)
    assert count is not None
    if f.dlq_ids:
        f = MessageFilter(dlq_ids=f.dlq_ids)
    elif filters.given_empty(params, DLQ_FILTERS):
        return [], None  # `?dlqIds=` or `?label=` selects nothing, not every entry
    page = await svc.storage.list_dlq(
        account_id, filter=f, cursor=_cursor(params.get("cursor")), count=count
    )
    return page.items, page.cursor


async def delete_many(request: Request) -> Response:
    svc, account_id = await account(request)
    body = await read_json(request, svc.settings.max_body_size)
    if body is not None:
        dlq_ids = body.get("dlqIds") if isinstance(body, dict) else None
        if not isinstance(dlq_ids, list) or not all(isinstance(i, str) for i in dlq_ids):
            raise InvalidRequest('the body must be {"dlqIds": ["...", ...]}')
        return JSON({"deleted": await svc.storage.delete_dlq(account_id, dlq_ids)})
    entries, cursor = await _select(svc, account_id, request)
    deleted = await svc.storage.delete_dlq(account_id, [m.dlq_id for m in entries if m.dlq_id])
    out: dict[str, Any] = {"deleted": deleted}
    if cursor is not None:
        out["cursor"] = cursor
    return JSON(out)


async def _retry(
    svc: Services, account_id: str, request: Request, entries: list[Message]
) -> list[InsertResult | None]:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    overrides = parse_options(headers, limits=svc.settings.limits)
    return await dlq.retry(svc, account_id, entries, overrides)


def _response_item(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"messageId": result.message_id}
    if result.deduplicated:
        out["deduplicated"] = True
    return out


async def retry_many(request: Request) -> Response:
    svc, account_id = await account(request)
    entries, cursor = await _select(svc, account_id, request)
    results = await _retry(svc, account_id, request, entries)
    out: dict[str, Any] = {"responses": [_response_item(r) for r in results if r is not None]}
    if cursor is not None:
        out["cursor"] = cursor
    return JSON(out, status_code=201)


async def retry_one(request: Request) -> Response:
    svc, account_id = await account(request)
    dlq_id = request.path_params["dlq_id"]
    entry = await svc.storage.get_dlq(account_id, dlq_id)
    if entry is None:
        raise NotFound(f"DLQ entry {dlq_id!r} not found")
    results = await _retry(svc, account_id, request, [entry])
    if results[0] is None:
        raise NotFound(f"DLQ entry {dlq_id!r} not found")
    return JSON(_response_item(results[0]), status_code=201)
