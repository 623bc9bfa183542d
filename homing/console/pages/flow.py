"""Flow-control keys: live counts, pause and resume, pin and unpin, reset the rate window."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import flash, page_response
from homing.errors import InvalidRequest, NotFound

HOME = "/console/flow-control"
MAX_PERIOD_S = 7 * 86400


@page
async def list_keys(request: Request, viewer: Viewer) -> Response:
    svc = services(request)
    search = request.query_params.get("search", "").strip()
    keys = await svc.storage.list_flow_keys(
        viewer.account_id, search=search or None, now_ms=svc.clock.now_ms()
    )
    context = {"nav": "flow", "keys": keys, "search": search}
    return page_response(request, viewer, "flow.html", context)


def _positive(form: QueryParams, name: str) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequest(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


@action()
async def act(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    """The actions of `POST /v2/flowControl/<key>/<action>`, from one form per key."""
    svc = services(request)
    storage, account_id, now = svc.storage, viewer.account_id, svc.clock.now_ms()
    key = form.get("key", "")
    what = request.path_params["action"]
    if what in ("pause", "resume"):
        found = await storage.set_flow_paused(account_id, key, paused=what == "pause", now_ms=now)
    elif what == "pin":
        period = _positive(form, "period")
        if period is not None and period > MAX_PERIOD_S:
            raise InvalidRequest("period may be at most 7 days (604800 seconds)")
        found = await storage.pin_flow(
            account_id,
            key,
            parallelism=_positive(form, "parallelism"),
            rate=_positive(form, "rate"),
            period_s=period,
            now_ms=now,
        )
    elif what == "unpin":
        found = await storage.unpin_flow(account_id, key, parallelism=True, rate=True)
    elif what == "reset-rate":
        found = await storage.reset_flow_rate(account_id, key, now_ms=now)
    else:
        raise NotFound(f"unknown flow-control action {what!r}")
    if not found:
        raise NotFound(f"flow-control key {key!r} not found")
    done = {"reset-rate": "rate window reset", "unpin": "unpinned", "pin": "pinned"}
    text = f"Key {key}: {done.get(what, what + 'd')}."
    return flash(request, RedirectResponse(HOME, 303), text)
