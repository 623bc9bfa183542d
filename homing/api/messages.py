"""Get and cancel messages: `GET`/`DELETE /v2/messages/{id}`, bulk `DELETE /v2/messages`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing.api.context import account
from homing.errors import InvalidRequest, NotFound
from homing.web import filters, views
from homing.web.http import JSON, read_json

BULK_CANCEL_FILTERS = (
    "messageIds", "url", "host", "path", "topicName", "queueName", "scheduleId", "label",
    "flowControlKey", "callerIp", "callerIP",
)  # fmt: skip
MAX_CANCEL_COUNT = 500
# Keys that older clients send in a JSON body instead of the query (the bulk cancel's old form).
_BODY_FILTERS = {
    "queueName": "queueName",
    "url": "url",
    "topicName": "topicName",
    "scheduleId": "scheduleId",
    "callerIP": "callerIP",
    "fromDate": "fromDate",
    "toDate": "toDate",
}


async def get_message(request: Request) -> Response:
    svc, account_id = await account(request)
    message = await svc.storage.get_message(account_id, request.path_params["message_id"])
    if message is None:
        raise NotFound(f"message {request.path_params['message_id']!r} not found")
    return JSON(views.message_json(message))


async def cancel_message(request: Request) -> Response:
    svc, account_id = await account(request)
    message_id = request.path_params["message_id"]
    count = await svc.storage.cancel_messages(
        account_id, message_ids=[message_id], filter=None, limit=None, now_ms=svc.clock.now_ms()
    )
    if not count:
        raise NotFound(f"message {message_id!r} not found or already finished")
    return JSON({"cancelled": count})


async def cancel_many(request: Request) -> Response:
    svc, account_id = await account(request)
    body = await read_json(request, svc.settings.max_body_size)
    params = request.query_params
    message_ids: list[str] | None = None
    if body is not None:
        if not isinstance(body, dict):
            raise InvalidRequest('the body must be a JSON object such as {"messageIds": [...]}')
        if "messageIds" in body:
            ids = body["messageIds"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise InvalidRequest("messageIds must be an array of strings")
            message_ids = ids  # an empty array cancels nothing (spec Q18)
        else:
            pairs = [(_BODY_FILTERS[k], str(v)) for k, v in body.items() if k in _BODY_FILTERS]
            unknown = set(body) - set(_BODY_FILTERS)
            if unknown:
                raise InvalidRequest(f"unknown field(s) in body: {', '.join(sorted(unknown))}")
            from starlette.datastructures import QueryParams

            params = QueryParams(pairs)
    f = filters.parse_filter(
        params, allowed=BULK_CANCEL_FILTERS, strict=True, extra=("fromDate", "toDate")
    )
    if message_ids is None and f.message_ids:
        message_ids = list(f.message_ids)
    limit = filters.count(params, default=None, maximum=MAX_CANCEL_COUNT)
    if message_ids is not None and not message_ids:
        return JSON({"cancelled": 0})
    if message_ids is None and filters.given_empty(params, BULK_CANCEL_FILTERS):
        return JSON({"cancelled": 0})  # `?messageIds=` or `?label=` is not "cancel all"
    cancelled = await svc.storage.cancel_messages(
        account_id,
        message_ids=message_ids,
        filter=None if message_ids is not None else f,
        limit=limit,
        now_ms=svc.clock.now_ms(),
    )
    return JSON({"cancelled": cancelled})
