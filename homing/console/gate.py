"""The checks every console endpoint passes before its handler runs.

`page` and `api` endpoints need a session (in `homing dev` the default user gets one without
signing in); `action` endpoints (every POST) also need a same-origin request, a valid CSRF token
and a read-write session. Handlers never see a request that failed these checks.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.console.auth import COOKIE_PATH, SESSION_COOKIE, same_origin
from homing.console.context import Viewer, secure, services, state
from homing.console.respond import back, flash, refuse
from homing.errors import HomingError
from homing.web.http import JSON, read_body

FORM_LIMIT = 1024 * 1024  # a console form; schedule bodies are capped by max_body_size too


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def _direct_host(request: Request) -> bool:
    """True when the browser addressed this server by IP address or `localhost`.

    A page on another site can point a DNS name of its own at 127.0.0.1 (DNS rebinding) and
    would then be "same origin" with a dev server that asks for no sign-in. Browsers send the
    name they resolved as Host, so under any other name dev mode asks for a token too.
    """
    host = request.url.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == services(request).settings.host
    return True


async def _viewer(request: Request, *, issue: bool) -> tuple[Viewer | None, str | None]:
    """The viewer, and a new session cookie to set when dev mode just made one."""
    sessions = state(request).sessions
    settings = services(request).settings
    cookie = request.cookies.get(SESSION_COOKIE)
    session = sessions.read(cookie)
    if (
        session is not None
        and session.token_id is not None
        and not await services(request).storage.token_active(session.token_id)
    ):
        session = None  # its token was revoked (on any node): signed out
    if session is not None and cookie:
        csrf = sessions.csrf_token(cookie)
        return Viewer(session.account_id, session.read_only, csrf, settings.mode), None
    if issue and settings.mode == "dev" and settings.accounts and _direct_host(request):
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


PageHandler = Callable[[Request, Viewer], Awaitable[Response]]
ActionHandler = Callable[[Request, Viewer, QueryParams], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page(handler: PageHandler) -> Endpoint:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        viewer, cookie = await _viewer(request, issue=True)
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
        viewer, _ = await _viewer(request, issue=False)
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
            viewer, _ = await _viewer(request, issue=False)
            if viewer is None:
                if services(request).settings.mode == "dev":
                    # Dev mode hands out sessions on any GET: a POST without one is forged.
                    return refuse(request, None, "This form has no session: reload the page.")
                return _to_login(request)
            try:
                form = await read_form(request, services(request).settings.max_body_size)
            except HomingError as exc:  # a body over the limit
                return refuse(request, viewer, exc.message, exc.status_code)
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
