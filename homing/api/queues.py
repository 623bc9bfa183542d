"""Queues (`/v2/queues`): named FIFO queues with parallelism."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing.actions import quotas
from homing.api.context import account
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.publish import validate_name
from homing.web import views
from homing.web.http import JSON, read_json


async def upsert(request: Request) -> Response:
    svc, account_id = await account(request)
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be {"queueName": "...", "parallelism": 1}')
    name = body.get("queueName")
    if not isinstance(name, str):
        raise InvalidRequest("queueName is required")
    validate_name(name, "queue name")
    parallelism = body.get("parallelism", 1)
    if parallelism is None:
        parallelism = 1
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise InvalidRequest(f"parallelism must be an integer of at least 1, got {parallelism!r}")
    if parallelism > quotas.MAX_PARALLELISM:
        raise QuotaExceeded(f"parallelism may be at most {quotas.MAX_PARALLELISM}")
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise InvalidRequest("paused must be true or false")
    await quotas.check_queues(svc, account_id, [name])
    await svc.storage.upsert_queue(
        account_id, name, parallelism=parallelism, paused=paused, now_ms=svc.clock.now_ms()
    )
    quotas.remember_queues(svc, account_id, [name])
    return JSON({})


async def list_queues(request: Request) -> Response:
    svc, account_id = await account(request)
    return JSON([views.queue_json(q) for q in await svc.storage.list_queues(account_id)])


async def get_queue(request: Request) -> Response:
    svc, account_id = await account(request)
    name = validate_name(request.path_params["queue"], "queue name")
    queue = await svc.storage.get_queue(account_id, name)
    if queue is None:
        raise NotFound(f"queue {name!r} not found")
    return JSON(views.queue_json(queue))


async def delete_queue(request: Request) -> Response:
    svc, account_id = await account(request)
    name = validate_name(request.path_params["queue"], "queue name")
    await svc.storage.delete_queue(account_id, name, now_ms=svc.clock.now_ms())
    quotas.forget_queue(svc, account_id, name)
    return JSON({})


async def _set_paused(request: Request, paused: bool) -> Response:
    svc, account_id = await account(request)
    name = validate_name(request.path_params["queue"], "queue name")
    found = await svc.storage.set_queue_paused(
        account_id, name, paused=paused, now_ms=svc.clock.now_ms()
    )
    if not found:
        raise NotFound(f"queue {name!r} not found")
    return JSON({})


async def pause(request: Request) -> Response:
    return await _set_paused(request, True)


async def resume(request: Request) -> Response:
    return await _set_paused(request, False)
