"""Schedules (`/v2/schedules`): cron-driven publishing, create-or-overwrite by id."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from homing.actions import schedules as schedule_actions
from homing.actions.context import Services
from homing.api.context import account
from homing.errors import NotFound
from homing.headers import parse_options
from homing.web.http import JSON, caller_ip, path_remainder, read_body, split_query
from homing.web.views import schedule_json

_PAUSE_RESUME = re.compile(r"^([A-Za-z0-9\-_.]+)/(pause|resume)$")


async def _create(request: Request, svc: Services, account_id: str, destination: str) -> Response:
    body = await read_body(request, svc.settings.max_body_size)
    query, config = split_query(request)
    if query and destination.lower().startswith(("http:", "https:")):
        destination = f"{destination}?{query}"
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    options = parse_options(headers, config, limits=svc.settings.limits)
    schedule_id = await schedule_actions.create(
        svc, account_id, destination, options, body, caller_ip(request)
    )
    return JSON({"scheduleId": schedule_id})


async def _set_paused(svc: Services, account_id: str, schedule_id: str, paused: bool) -> Response:
    await schedule_actions.set_paused(svc, account_id, schedule_id, paused=paused)
    return JSON({})


async def create_or_pause(request: Request) -> Response:
    """POST /v2/schedules/... is create, unless it reads `<id>/pause` or `<id>/resume` (7.5)."""
    svc, account_id = await account(request)
    rest = path_remainder(request, "/v2/schedules/")
    match = _PAUSE_RESUME.match(rest)
    if match and not rest.lower().startswith(("http:", "https:")):
        return await _set_paused(svc, account_id, match.group(1), match.group(2) == "pause")
    return await _create(request, svc, account_id, rest)


async def pause_resume(request: Request) -> Response:
    svc, account_id = await account(request)
    action = request.path_params["action"]
    if action not in ("pause", "resume"):
        raise NotFound(f"unknown schedule action {action!r}")
    return await _set_paused(svc, account_id, request.path_params["schedule_id"], action == "pause")


async def list_schedules(request: Request) -> Response:
    svc, account_id = await account(request)
    now = svc.clock.now_ms()
    return JSON([schedule_json(s, now) for s in await svc.storage.list_schedules(account_id)])


async def get_schedule(request: Request) -> Response:
    svc, account_id = await account(request)
    schedule = await svc.storage.get_schedule(account_id, request.path_params["schedule_id"])
    if schedule is None:
        raise NotFound(f"schedule {request.path_params['schedule_id']!r} not found")
    return JSON(schedule_json(schedule, svc.clock.now_ms()))


async def delete_schedule(request: Request) -> Response:
    svc, account_id = await account(request)
    await svc.storage.delete_schedule(account_id, request.path_params["schedule_id"])
    return JSON({})
