"""Console responses shared by every page: rendered pages with their one-shot notice,
refusals, the way back after an action, and the confirmation step of destructive actions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from homing.console import render
from homing.console.auth import COOKIE_PATH
from homing.console.context import Viewer, secure, services, state

FLASH_COOKIE = "homing_flash"


def flash(request: Request, response: Response, text: str, kind: str = "ok") -> Response:
    """A one-shot notice for the page after a redirect, in a signed cookie (so no one can put
    words on the page through a link)."""
    value = state(request).signer.sign("flash", {"t": text[:500], "k": kind})
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=60,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    return response


def page_response(
    request: Request, viewer: Viewer, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    """Render a page for `viewer`, showing (and consuming) any pending notice."""
    notice = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        value = state(request).signer.unsign("flash", raw)
        if isinstance(value, dict):
            notice = {"text": str(value.get("t", "")), "kind": str(value.get("k", "ok"))}
    full = {"viewer": viewer, "notice": notice, "now": services(request).clock.now_ms()}
    response = render.render(request, template, {**full, **context}, status)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def _console_path(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.path != COOKIE_PATH and not parts.path.startswith(COOKIE_PATH + "/"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def back(request: Request, form: QueryParams | None = None) -> str:
    """Where to return after an action: the page the form was on. Only a console path is
    used (never another host), so this cannot become an open redirect."""
    given = form.get("_back") if form is not None else None
    return (
        _console_path(given) or _console_path(request.headers.get("referer")) or COOKIE_PATH + "/"
    )


def refuse(request: Request, viewer: Viewer | None, text: str, status: int = 403) -> Response:
    if viewer is None:
        return render.render(request, "refused.html", {"text": text, "viewer": None}, status)
    return page_response(request, viewer, "refused.html", {"text": text}, status)


def confirmed(form: QueryParams) -> bool:
    """Destructive actions need `confirm=yes`: the page's script asks and adds it; without
    the script the handler shows a confirmation page instead."""
    return form.get("confirm") == "yes"


def confirm_page(
    request: Request, viewer: Viewer, form: QueryParams, question: str, detail: list[str]
) -> Response:
    fields = [(k, v) for k, v in form.multi_items() if k not in ("_csrf", "confirm", "_back")]
    context = {
        "question": question,
        "detail": detail,
        "fields": fields,
        "target": request.url.path,
        "cancel": back(request, form),
    }
    return page_response(request, viewer, "confirm.html", context)
