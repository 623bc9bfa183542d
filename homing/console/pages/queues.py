"""Queues: parallelism, pause and resume, delete."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions.quotas import MAX_PARALLELISM
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.publish import validate_name

HOME = "/console/queues"


@page
async def list_queues(request: Request, viewer: Viewer) -> Response:
    queues = await services(request).storage.list_queues(viewer.account_id)
    context = {"nav": "queues", "queues": queues, "max_parallelism": MAX_PARALLELISM}
    return page_response(request, viewer, "queues.html", context)


def _parallelism(raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise InvalidRequest(f"parallelism must be an integer of at least 1, got {raw!r}")
    if int(raw) > MAX_PARALLELISM:
        raise QuotaExceeded(f"parallelism may be at most {MAX_PARALLELISM}")
    return int(raw)


@action()
async def upsert(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    """Create a queue, or change its parallelism (keeping whether it is paused)."""
    svc = services(request)
    name = validate_name(form.get("name", "").strip(), "queue name")
    parallelism = _parallelism(form.get("parallelism", "1"))
    existing = await svc.storage.get_queue(viewer.account_id, name)
    await svc.storage.upsert_queue(
        viewer.account_id,
        name,
        parallelism=parallelism,
        paused=existing.paused if existing else False,
        now_ms=svc.clock.now_ms(),
    )
    verb = "updated" if existing else "created"
    return flash(request, RedirectResponse(HOME, 303), f"Queue {name} {verb}.")


async def _set_paused(request: Request, viewer: Viewer, paused: bool) -> Response:
    svc = services(request)
    name = request.path_params["queue"]
    if not await svc.storage.set_queue_paused(
        viewer.account_id, name, paused=paused, now_ms=svc.clock.now_ms()
    ):
        raise NotFound(f"queue {name!r} not found")
    text = f"Queue {name} {'paused' if paused else 'resumed'}."
    return flash(request, RedirectResponse(HOME, 303), text)


@action()
async def pause(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    return await _set_paused(request, viewer, True)


@action()
async def resume(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    return await _set_paused(request, viewer, False)


@action()
async def delete(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    name = request.path_params["queue"]
    if not confirmed(form):
        question = f"Delete queue {name}?"
        detail = ["Its messages that have not started yet are canceled."]
        return confirm_page(request, viewer, form, question, detail)
    svc = services(request)
    await svc.storage.delete_queue(viewer.account_id, name, now_ms=svc.clock.now_ms())
    return flash(request, RedirectResponse(HOME, 303), f"Queue {name} deleted.")
