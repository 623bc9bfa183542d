"""Who is calling and the node's services, as every API handler reads them from its request."""

from __future__ import annotations

from starlette.requests import Request

from homing.actions.context import Services
from homing.models import Principal


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


async def principal(request: Request, *, write: bool) -> Principal:
    """Who is calling, from `Authorization: Bearer` or `?qstash_token=` (both are QStash's)."""
    token = ""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
    if not token:
        token = request.query_params.get("qstash_token", "")
    return await services(request).authenticate(token, write=write)


async def account(request: Request, *, write: bool | None = None) -> tuple[Services, str]:
    """The services and the calling account; any method but GET needs a read-write token."""
    is_write = request.method != "GET" if write is None else write
    found = await principal(request, write=is_write)
    return services(request), found.account_id
