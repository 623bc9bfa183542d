"""Who is looking, and the checks every console endpoint passes before its handler runs.

`page` and `api` endpoints need a session (in `homing dev` the default user gets one without
signing in); `action` endpoints (every POST) also need a same-origin request, a valid CSRF token
and a read-write session. Handlers never see a request that failed these checks.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.api.context import Services
from homing.api.http import JSON, read_body
from homing.console import render
from homing.console.auth import (
    COOKIE_PATH,
    SESSION_COOKIE,
    LoginThrottle,
    Sessions,
    Signer,
    same_origin,
)
from homing.errors import HomingError

FLASH_COOKIE = "homing_flash"
FORM_LIMIT = 1024 * 1024  # a console form; schedule bodies are capped by max_body_size too


@dataclass
class ConsoleState:
    """Per-console secrets and counters, made by `create_console()` (no module globals)."""

    signer: Signer = field(default_factory=Signer)
    sessions: Sessions = field(init=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.signer)


@dataclass(frozen=True, slots=True)
class Viewer:
    account_id: str
    read_only: bool
    csrf: str
    mode: str


def state(request: Request) -> ConsoleState:
    found: ConsoleState = request.app.state.console
    return found


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def _viewer(request: Request, *, issue: bool) -> tuple[Viewer | None, str | None]:
    """The viewer, and a new session cookie to set when dev mode just made one."""
    sessions = state(request).sessions
    settings = services(request).settings
    cookie = request.cookies.get(SESSION_COOKIE)
    session = sessions.read(cookie)
    if session is not None and cookie:
        csrf = sessions.csrf_token(cookie)
        return Viewer(session.account_id, session.read_only, csrf, settings.mode), None
    if issue and settings.mode == "dev" and settings.accounts:
        # Dev mode: the default user, like the dev server's SDK defaults. The session still
        # exists so that POSTs have something to bind their CSRF token to.
        session, cookie = sessions.issue(settings.accounts[0].account_id, read_only=False)
        csrf = sessions.csrf_token(cookie)
        return Viewer(session.account_id, False, csrf, settings.mode), cookie
    return None, None


def _to_login(request: Request) -> Response:
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"{COOKIE_PATH}/login?next={quote(target, safe='')}", 303)


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


PageHandler = Callable[[Request, Viewer], Awaitable[Response]]
ActionHandler = Callable[[Request, Viewer, QueryParams], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page(handler: PageHandler) -> Endpoint:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        viewer, cookie = _viewer(request, issue=True)
        if viewer is None:
            return _to_login(request)
        try:
            response = await handler(request, viewer)
        except HomingError as exc:
            response = refuse(request, viewer, exc.message, exc.status_code)
        if cookie:
            set_session_cookie(request, response, cookie)
        return response

    return endpoint


def api(handler: PageHandler) -> Endpoint:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        viewer, _ = _viewer(request, issue=False)
        if viewer is None:
            return JSON({"error": "sign in to the console first"}, status_code=401)
        try:
            return await handler(request, viewer)
        except HomingError as exc:
            return JSON({"error": exc.message}, status_code=exc.status_code)

    return endpoint


async def read_form(request: Request, limit: int = FORM_LIMIT) -> QueryParams:
    """The url-encoded form of a POST (the console sends no other kind)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return QueryParams()
    raw = await read_body(request, limit)
    return QueryParams(raw.decode("utf-8", "replace"))


def action(*, write: bool = True) -> Callable[[ActionHandler], Endpoint]:
    """A POST endpoint; `write=False` for the few a read-only session may use (sign-out)."""

    def wrap(handler: ActionHandler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            if not same_origin(request):
                return refuse(request, None, "Cross-origin requests are refused.")
            viewer, _ = _viewer(request, issue=False)
            if viewer is None:
                return _to_login(request)
            form = await read_form(request, services(request).settings.max_body_size)
            given = form.get("_csrf") or request.headers.get("x-csrf-token")
            if not state(request).sessions.check(viewer.csrf, given):
                text = "The form expired or did not come from this console: reload the page."
                return refuse(request, viewer, text)
            if write and viewer.read_only:
                return refuse(request, viewer, "This session uses a read-only token.")
            try:
                return await handler(request, viewer, form)
            except HomingError as exc:
                target = RedirectResponse(back(request, form), 303)
                return flash(request, target, exc.message, "error")

        return endpoint

    return wrap


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
