"""Create, overwrite, pause and resume schedules, for the API and the console alike.

Every decision about when a schedule fires uses the scheduler's clock (`schedule_now`): the
database's where the nodes share one, so a node whose own clock is skewed — or a node that runs
no scheduler at all (role `api`) — computes the same next fire as the nodes that fire it.
"""

from __future__ import annotations

from homing import ids
from homing.actions import quotas
from homing.actions.context import Services
from homing.actions.publish import check_destinations
from homing.clock import Clock
from homing.cron import CronSchedule
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.headers import PublishOptions
from homing.models import Schedule
from homing.publish import delivery_spec, parse_destination, validate_name
from homing.storage.base import Storage


async def schedule_now(storage: Storage, clock: Clock) -> int:
    """The time schedule decisions use: the database clock where nodes share one."""
    shared = await storage.db_now_ms()
    return clock.now_ms() if shared is None else shared


async def create(
    svc: Services,
    account_id: str,
    destination: str,
    options: PublishOptions,
    body: bytes,
    ip: str,
) -> str:
    """Validate and store a schedule (create, or overwrite the one with the same id); returns
    its id."""
    if not options.cron:
        raise InvalidRequest("Upstash-Cron is required to create a schedule")
    now = await schedule_now(svc.storage, svc.clock)
    cron = CronSchedule.parse(options.cron, now_ms=now)
    dest = parse_destination(destination.strip())
    check_destinations(svc, [dest.url] if dest.url else [], options)
    if dest.group is not None and await svc.storage.get_url_group(account_id, dest.group) is None:
        raise NotFound(f"URL group {dest.group!r} does not exist")
    schedule_id = options.schedule_id.strip() if options.schedule_id else ids.schedule_id()
    validate_name(schedule_id, "schedule id")
    queue = validate_name(options.queue_name, "queue name") if options.queue_name else None
    if queue is not None:
        await quotas.check_queues(svc, account_id, [queue])  # its fires will create the queue
    existing = await svc.storage.get_schedule(account_id, schedule_id)
    if (
        existing is None
        and len(await svc.storage.list_schedules(account_id)) >= quotas.MAX_SCHEDULES
    ):
        raise QuotaExceeded(f"an account may have at most {quotas.MAX_SCHEDULES} schedules")
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


async def set_paused(svc: Services, account_id: str, schedule_id: str, *, paused: bool) -> None:
    """Pause, or resume counting the next fire from now: ticks missed while paused never
    fire."""
    schedule = await svc.storage.get_schedule(account_id, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    now = await schedule_now(svc.storage, svc.clock)
    next_fire = None if paused else CronSchedule.parse(schedule.cron).next_after(now)
    await svc.storage.set_schedule_paused(
        account_id, schedule_id, paused=paused, next_fire_ms=next_fire
    )
