"""URL groups, called topics on the wire (`/v2/topics`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from homing.actions.quotas import MAX_ENDPOINTS, MAX_GROUPS
from homing.api.context import account
from homing.errors import InvalidRequest, NotFound, QuotaExceeded
from homing.publish import Endpoint, parse_destination, validate_name
from homing.web import views
from homing.web.http import JSON, read_json


def _endpoints(body: Any, *, need_url: bool) -> list[Endpoint]:
    items = body.get("endpoints") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidRequest('the body must be {"endpoints": [{"url": "...", "name": "..."}]}')
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("each endpoint must be an object with a url and an optional name")
        url, name = item.get("url"), item.get("name")
        if (url is not None and not isinstance(url, str)) or (
            name is not None and not isinstance(name, str)
        ):
            raise InvalidRequest("endpoint url and name must be strings")
        if need_url and not url:
            raise InvalidRequest("each endpoint needs a url")
        if not url and not name:
            raise InvalidRequest("each endpoint must name a url or a name")
        if url and parse_destination(url).url is None:
            raise InvalidRequest(f"endpoint url {url!r} must be an absolute http(s) URL")
        out.append(Endpoint(url or "", name or None))
    return out


def _merged_count(current: list[Endpoint], new: list[Endpoint]) -> int:
    """How many endpoints the group has after an upsert: an endpoint whose url (or given name)
    matches an existing one replaces it, any other is added."""
    merged = list(current)
    for endpoint in new:
        for i, old in enumerate(merged):
            if old.url == endpoint.url or (endpoint.name is not None and old.name == endpoint.name):
                merged[i] = endpoint
                break
        else:
            merged.append(endpoint)
    return len(merged)


async def upsert_endpoints(request: Request) -> Response:
    svc, account_id = await account(request)
    group = validate_name(request.path_params["group"], "URL group name")
    endpoints = _endpoints(await read_json(request, 1024 * 1024), need_url=True)
    for endpoint in endpoints:
        svc.policy.check_url(endpoint.url)
    existing = await svc.storage.get_url_group(account_id, group)
    if _merged_count(list(existing.endpoints) if existing else [], endpoints) > MAX_ENDPOINTS:
        raise QuotaExceeded(f"a URL group holds at most {MAX_ENDPOINTS} endpoints")
    if existing is None and len(await svc.storage.list_url_groups(account_id)) >= MAX_GROUPS:
        raise QuotaExceeded(f"an account may have at most {MAX_GROUPS} URL groups")
    await svc.storage.upsert_endpoints(account_id, group, endpoints, now_ms=svc.clock.now_ms())
    return JSON({})


async def remove_endpoints(request: Request) -> Response:
    svc, account_id = await account(request)
    group = validate_name(request.path_params["group"], "URL group name")
    endpoints = _endpoints(await read_json(request, 1024 * 1024), need_url=False)
    if not await svc.storage.remove_endpoints(
        account_id, group, endpoints, now_ms=svc.clock.now_ms()
    ):
        raise NotFound(f"URL group {group!r} not found")
    return JSON({})


async def list_groups(request: Request) -> Response:
    svc, account_id = await account(request)
    return JSON([views.url_group_json(g) for g in await svc.storage.list_url_groups(account_id)])


async def get_group(request: Request) -> Response:
    svc, account_id = await account(request)
    group = await svc.storage.get_url_group(account_id, request.path_params["group"])
    if group is None:
        raise NotFound(f"URL group {request.path_params['group']!r} not found")
    return JSON(views.url_group_json(group))


async def delete_group(request: Request) -> Response:
    svc, account_id = await account(request)
    await svc.storage.delete_url_group(account_id, request.path_params["group"])
    return JSON({})
