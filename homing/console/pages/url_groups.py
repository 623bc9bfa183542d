"""URL groups (topics): endpoints added and removed, groups deleted."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions.quotas import MAX_ENDPOINTS
from homing.console.context import Viewer, services
from homing.console.gate import action, page
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.errors import InvalidRequest, NotFound
from homing.publish import Endpoint, parse_destination, validate_name

HOME = "/console/url-groups"


@page
async def list_groups(request: Request, viewer: Viewer) -> Response:
    groups = await services(request).storage.list_url_groups(viewer.account_id)
    return page_response(request, viewer, "url_groups.html", {"nav": "groups", "groups": groups})


@action()
async def add_endpoint(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    """As `POST /v2/topics/<group>/endpoints` with one endpoint."""
    svc = services(request)
    group = validate_name(form.get("group", "").strip(), "URL group name")
    url = form.get("url", "").strip()
    if not url or parse_destination(url).url is None:
        raise InvalidRequest(f"endpoint url {url!r} must be an absolute http(s) URL")
    svc.policy.check_url(url)
    existing = await svc.storage.get_url_group(viewer.account_id, group)
    if existing is not None and len(existing.endpoints) >= MAX_ENDPOINTS:
        raise InvalidRequest(f"a URL group holds at most {MAX_ENDPOINTS} endpoints")
    endpoint = Endpoint(url, form.get("name", "").strip() or None)
    await svc.storage.upsert_endpoints(
        viewer.account_id, group, [endpoint], now_ms=svc.clock.now_ms()
    )
    return flash(request, RedirectResponse(HOME, 303), f"Endpoint added to {group}.")


@action()
async def remove_endpoint(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    svc = services(request)
    group = request.path_params["group"]
    endpoint = Endpoint(form.get("url", ""), form.get("name") or None)
    if not confirmed(form):
        question = f"Remove this endpoint from {group}?"
        detail = [endpoint.name or endpoint.url, "A group left with no endpoint is deleted."]
        return confirm_page(request, viewer, form, question, detail)
    if not await svc.storage.remove_endpoints(
        viewer.account_id, group, [endpoint], now_ms=svc.clock.now_ms()
    ):
        raise NotFound(f"URL group {group!r} not found")
    return flash(request, RedirectResponse(HOME, 303), f"Endpoint removed from {group}.")


@action()
async def delete_group(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    group = request.path_params["group"]
    if not confirmed(form):
        return confirm_page(request, viewer, form, f"Delete URL group {group}?", [])
    await services(request).storage.delete_url_group(viewer.account_id, group)
    return flash(request, RedirectResponse(HOME, 303), f"URL group {group} deleted.")
