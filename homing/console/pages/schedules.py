"""Schedules: list, create with a preview of the next fires, pause, resume, delete.

The create form is turned into the `Upstash-*` headers of `POST /v2/schedules/...` and read by
the same `parse_options`, so the console accepts and refuses exactly what the API does.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions import schedules as schedule_actions
from homing.console.context import Viewer, services
from homing.console.gate import action, api, page
from homing.console.masking import mask_url
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.cron import CronSchedule
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.headers import parse_options
from homing.models import Schedule
from homing.web.http import JSON, caller_ip
from homing.web.views import schedule_json

PREVIEW_FIRES = 5
FIELDS = (
    "destination", "cron", "tz", "method", "body", "contentType", "retries", "delay", "queue",
    "scheduleId", "label", "headers",
)  # fmt: skip
DEFAULTS = {"tz": "UTC", "method": "POST", "retries": "3", "contentType": "application/json"}
_ZONE_PREFIX = re.compile(r"(?i)^(CRON_)?TZ=")


@functools.cache
def zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def cron_text(cron: str, zone: str) -> str:
    """The form's fields and zone as one expression (`CRON_TZ=<zone> <fields>`)."""
    cron, zone = cron.strip(), zone.strip() or "UTC"
    if zone == "UTC" or _ZONE_PREFIX.match(cron):
        return cron
    return f"CRON_TZ={zone} {cron}"


def preview(text: str, now_ms: int) -> list[dict[str, str]]:
    """The next fires, in the schedule's zone and in UTC; raises InvalidRequest."""
    schedule = CronSchedule.parse(text, now_ms=now_ms)
    zone = zoneinfo.ZoneInfo(schedule.zone)
    out = []
    for fire in schedule.preview(now_ms, PREVIEW_FIRES):
        moment = datetime.fromtimestamp(fire / 1000, UTC)
        out.append(
            {
                "local": moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"),
                "utc": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
        )
    return out


def _headers(form: dict[str, str]) -> list[tuple[str, str]]:
    """Form fields -> the configuration headers of a create request."""
    named = (
        ("Upstash-Method", "method"), ("Upstash-Retries", "retries"), ("Upstash-Delay", "delay"),
        ("Upstash-Queue-Name", "queue"), ("Upstash-Schedule-Id", "scheduleId"),
        ("Upstash-Label", "label"), ("Content-Type", "contentType"),
    )  # fmt: skip
    pairs = [("Upstash-Cron", cron_text(form["cron"], form["tz"]))]
    pairs += [(header, form[key]) for header, key in named if form[key]]
    for line in form["headers"].splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise InvalidRequest(f"each header line must read 'Name: value', got {line!r}")
        pairs.append(("Upstash-Forward-" + name.strip(), value.strip()))
    return pairs


@dataclass(frozen=True, slots=True)
class Row:
    schedule: Schedule
    fields: str
    zone: str
    destination: str
    states: dict[str, int]
    view: dict[str, Any]


def _row(s: Schedule) -> Row:
    try:
        parsed = CronSchedule.parse(s.cron, now_ms=s.created_ms)
        fields, zone = parsed.fields, parsed.zone
    except InvalidRequest:
        fields, zone = s.cron, "?"
    states: dict[str, int] = {}
    for state in s.last_states.values():
        states[state.value] = states.get(state.value, 0) + 1
    return Row(s, fields, zone, mask_url(s.destination), states, schedule_json(s))


async def _page(
    request: Request,
    viewer: Viewer,
    form: dict[str, str],
    *,
    fires: list[dict[str, str]] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    schedules = await services(request).storage.list_schedules(viewer.account_id)
    context = {
        "nav": "schedules",
        "rows": [_row(s) for s in schedules],
        "form": form,
        "fires": fires,
        "error": error,
        "zones": zones(),
    }
    return page_response(request, viewer, "schedules.html", context, status)


def _form_values(source: QueryParams) -> dict[str, str]:
    return {name: source.get(name, DEFAULTS.get(name, "")) for name in FIELDS}


@page
async def list_schedules(request: Request, viewer: Viewer) -> Response:
    return await _page(request, viewer, _form_values(QueryParams()))


@action()
async def create(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    svc = services(request)
    values = _form_values(form)
    text = cron_text(values["cron"], values["tz"])
    try:
        fires = preview(text, svc.clock.now_ms())
        if form.get("preview"):
            return await _page(request, viewer, values, fires=fires)
        options = parse_options(_headers(values), limits=svc.settings.limits)
        body = values["body"].encode()
        new_id = await schedule_actions.create(
            svc, viewer.account_id, values["destination"], options, body, caller_ip(request)
        )
    except (InvalidRequest, NotFound, QuotaExceeded) as exc:
        return await _page(request, viewer, values, error=exc.message, status=400)
    response = RedirectResponse(f"/console/schedules#{quote(new_id)}", 303)
    return flash(request, response, f"Schedule {new_id} created.")


@action()
async def pause(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    schedule_id = request.path_params["schedule_id"]
    await schedule_actions.set_paused(
        services(request), viewer.account_id, schedule_id, paused=True
    )
    target = RedirectResponse(f"/console/schedules#{quote(schedule_id)}", 303)
    return flash(request, target, f"Schedule {schedule_id} paused.")


@action()
async def resume(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    schedule_id = request.path_params["schedule_id"]
    await schedule_actions.set_paused(
        services(request), viewer.account_id, schedule_id, paused=False
    )
    target = RedirectResponse(f"/console/schedules#{quote(schedule_id)}", 303)
    return flash(request, target, f"Schedule {schedule_id} resumed.")


@action()
async def delete(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    schedule_id = request.path_params["schedule_id"]
    if not confirmed(form):
        question = f"Delete schedule {schedule_id}? It will never fire again."
        return confirm_page(request, viewer, form, question, [])
    if not await services(request).storage.delete_schedule(viewer.account_id, schedule_id):
        raise NotFound(f"schedule {schedule_id!r} not found")
    return flash(request, RedirectResponse("/console/schedules", 303), "Schedule deleted.")


@api
async def cron_preview(request: Request, viewer: Viewer) -> Response:
    params = request.query_params
    text = cron_text(params.get("cron", ""), params.get("tz", "UTC"))
    return JSON({"cron": text, "fires": preview(text, services(request).clock.now_ms())})
