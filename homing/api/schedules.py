"""Schedules (spec 7): cron-driven publishing, create-or-overwrite by id."""

from __future__ import annotations

import base64
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from homing import ids
from homing.api import queues, views
from homing.api.context import Services, account
from homing.api.http import JSON, caller_ip, path_remainder, read_body, split_query
from homing.api.publish import check_destinations
from homing.cron import CronSchedule
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.headers import PublishOptions, parse_options
from homing.models import Schedule
from homing.publish import delivery_spec, parse_destination, validate_name

_PAUSE_RESUME = re.compile(r"^([A-Za-z0-9\-_.]+)/(pause|resume)$")
MAX_SCHEDULES = 1000


def _next_fire(s: Schedule, now_ms: int | None) -> int | None:
    """The stored next fire, except that a paused schedule's next trigger time keeps advancing
    (spec 7.5): the scheduler skips paused schedules, so their stored value goes stale."""
    if not s.paused or now_ms is None or (s.next_fire_ms is not None and s.next_fire_ms > now_ms):
        return s.next_fire_ms
    try:
        return CronSchedule.parse(s.cron, now_ms=now_ms).next_after(now_ms)
    except InvalidRequest:
        return s.next_fire_ms


def schedule_json(s: Schedule, now_ms: int | None = None) -> dict[str, Any]:
    spec = s.spec
    out: dict[str, Any] = {
        "scheduleId": s.id,
        "cron": s.cron,
        "destination": s.destination,
        "createdAt": s.created_ms,
        "method": spec.method,
        "retries": spec.max_retries,
        "isPaused": s.paused,
    }
    headers = views.redact_headers(spec.headers, spec.redact)
    if headers:
        out["header"] = headers
    if s.body:
        if spec.redact.body:
            out["body"] = views.redacted_value(s.body)
        else:
            try:
                out["body"] = s.body.decode("utf-8")
            except UnicodeDecodeError:
                out["bodyBase64"] = base64.b64encode(s.body).decode()
    if s.delay_s:
        out["delay"] = s.delay_s
    if spec.timeout_s is not None:
        out["timeout"] = spec.timeout_s
    if spec.callback is not None:
        out["callback"] = spec.callback.url
        if spec.callback.headers:
            out["callbackHeader"] = spec.callback.headers
    if spec.failure_callback is not None:
        out["failureCallback"] = spec.failure_callback.url
        if spec.failure_callback.headers:
            out["failureCallbackHeader"] = spec.failure_callback.headers
    if s.queue_name:
        out["queueName"] = s.queue_name
    if s.flow is not None:
        out["flowControlKey"] = s.flow.key
        if s.flow.parallelism is not None:
            out["parallelism"] = s.flow.parallelism
        if s.flow.rate is not None:
            out["rate"] = s.flow.rate
        out["period"] = s.flow.period_s
    if spec.retry_delay:
        out["retryDelayExpression"] = spec.retry_delay
    if s.labels:
        out["label"] = s.labels[0]
        out["labels"] = list(s.labels)
    if s.caller_ip:
        out["callerIP"] = out["callerIp"] = s.caller_ip
    if s.last_fire_ms is not None:
        out["lastScheduleTime"] = s.last_fire_ms
    next_fire = _next_fire(s, now_ms)
    if next_fire is not None:
        out["nextScheduleTime"] = next_fire
    if s.last_states:
        out["lastScheduleStates"] = {k: v.value for k, v in s.last_states.items()}
    if s.error:
        out["error"] = s.error
    return out


async def create_schedule(
    svc: Services,
    account_id: str,
    destination: str,
    options: PublishOptions,
    body: bytes,
    ip: str,
) -> str:
    """Validate and store a schedule (create, or overwrite the one with the same id); returns
    its id. Shared by the API and the console."""
    if not options.cron:
        raise InvalidRequest("Upstash-Cron is required to create a schedule")
    now = await svc.scheduler.now()  # the clock the scheduler fires by
    cron = CronSchedule.parse(options.cron, now_ms=now)
    dest = parse_destination(destination.strip())
    check_destinations(svc, [dest.url] if dest.url else [], options)
    if dest.group is not None and await svc.storage.get_url_group(account_id, dest.group) is None:
        raise NotFound(f"URL group {dest.group!r} does not exist")
    schedule_id = options.schedule_id.strip() if options.schedule_id else ids.schedule_id()
    validate_name(schedule_id, "schedule id")
    queue = validate_name(options.queue_name, "queue name") if options.queue_name else None
    if queue is not None:
        await queues.check_quota(svc, account_id, [queue])  # its fires will create the queue
    existing = await svc.storage.get_schedule(account_id, schedule_id)
    if existing is None and len(await svc.storage.list_schedules(account_id)) >= MAX_SCHEDULES:
        raise QuotaExceeded(f"an account may have at most {MAX_SCHEDULES} schedules")
    await svc.storage.upsert_schedule(
        Schedule(
            id=schedule_id,
            account_id=account_id,
            cron=cron.text,
            destination=dest.url or dest.group or "",
            body=body,
            spec=delivery_spec(options),
            created_ms=existing.created_ms if existing else now,
            caller_ip=ip,
            delay_s=options.delay_s,
            queue_name=queue,
            labels=options.labels,
            flow=options.flow,
            next_fire_ms=cron.next_after(now),
        )
    )
    return schedule_id


async def _create(request: Request, svc: Services, account_id: str, destination: str) -> Response:
    body = await read_body(request, svc.settings.max_body_size)
    query, config = split_query(request)
    if query and destination.lower().startswith(("http:", "https:")):
        destination = f"{destination}?{query}"
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    options = parse_options(headers, config, limits=svc.settings.limits)
    schedule_id = await create_schedule(
        svc, account_id, destination, options, body, caller_ip(request)
    )
    return JSON({"scheduleId": schedule_id})


async def _set_paused(svc: Services, account_id: str, schedule_id: str, paused: bool) -> Response:
    schedule = await svc.storage.get_schedule(account_id, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    # Resuming counts the next fire from now: ticks missed while paused never fire.
    now = await svc.scheduler.now()
    next_fire = None if paused else CronSchedule.parse(schedule.cron).next_after(now)
    await svc.storage.set_schedule_paused(
        account_id, schedule_id, paused=paused, next_fire_ms=next_fire
    )
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
