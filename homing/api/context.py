"""Who is calling and the node's services, as every API handler reads them from its request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request

from homing.actions.context import Services
from homing.models import Principal


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


def scope_services(scope: Mapping[str, Any]) -> Services:
    """`services` of a request known by its ASGI scope (the lifespan state the server copies
    into every request)."""
    found: Services = scope["state"]["services"]
    return found


def token(scope: Mapping[str, Any]) -> str:
    """The caller's token, from `Authorization: Bearer` or `?qstash_token=` (both are QStash's)."""
    value = ""
    for name, raw in scope["headers"]:
        if name == b"authorization":  # the server gives header names in lower case
            auth = raw.decode("latin-1")
            if auth[:7].lower() == "bearer ":
                value = auth[7:].strip()
            break
    if not value:
        value = QueryParams(scope["query_string"]).get("qstash_token", "")
    return value


async def principal(request: Request, *, write: bool) -> Principal:
    """Who is calling (see `token`)."""
    return await services(request).authenticate(token(request.scope), write=write)


async def account(request: Request, *, write: bool | None = None) -> tuple[Services, str]:
    """The services and the calling account; any method but GET needs a read-write token."""
    is_write = request.method != "GET" if write is None else write
    found = await principal(request, write=is_write)
    return services(request), found.account_id
