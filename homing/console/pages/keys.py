"""Signing keys: shown masked, revealed on request, rotated after a warning."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.actions import keys as signing_keys
from homing.console.context import Viewer, services
from homing.console.gate import action, api, page
from homing.console.respond import confirm_page, confirmed, flash, page_response
from homing.web.http import JSON

ROTATE_WARNING = [
    "The next key becomes the current key, and a new next key is generated.",
    "Receivers that verify with the old current key will reject every message signed from "
    "now on, until they are given the new keys.",
]


@page
async def show_keys(request: Request, viewer: Viewer) -> Response:
    keys = await services(request).storage.signing_keys(viewer.account_id)
    context = {"nav": "keys", "keys": keys, "warning": ROTATE_WARNING}
    return page_response(request, viewer, "keys.html", context)


@api
async def reveal(request: Request, viewer: Viewer) -> Response:
    """The full keys, for the reveal toggle: a same-origin fetch only (no CORS headers)."""
    keys = await services(request).storage.signing_keys(viewer.account_id)
    response = JSON({"current": keys.current, "next": keys.next})
    response.headers["cache-control"] = "no-store"
    return response


@action()
async def rotate(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    if not confirmed(form):
        return confirm_page(request, viewer, form, "Rotate the signing keys?", ROTATE_WARNING)
    await signing_keys.rotate(services(request), viewer.account_id)
    response = RedirectResponse("/console/keys", 303)
    return flash(request, response, "Signing keys rotated. Update your receivers.")
