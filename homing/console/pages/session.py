"""Sign-in and sign-out.

The sign-in form is protected like every other POST: it carries a token derived from a nonce
cookie set with the form, so another site cannot sign a browser in to its own account.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from homing.console import render
from homing.console.auth import COOKIE_PATH, LOGIN_COOKIE, SESSION_COOKIE, same_origin
from homing.console.context import Viewer, secure, services, state
from homing.console.gate import action, read_form, set_session_cookie
from homing.console.respond import refuse
from homing.errors import HomingError
from homing.web.http import caller_ip

MAX_TOKEN = 4096


def _next(target: str | None) -> str:
    """Only a console path: `next` must never send the browser to another site."""
    if (
        target
        and target.startswith(COOKIE_PATH + "/")
        and "//" not in target
        and "\\" not in target
    ):
        return target
    return COOKIE_PATH + "/"


def _form(request: Request, target: str, error: str | None, status: int) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    context = {
        "viewer": None,
        "notice": None,
        "csrf": state(request).sessions.login_token(nonce),
        "next": target,
        "error": error,
        "mode": services(request).settings.mode,
    }
    response = render.render(request, "login.html", context, status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=1800,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    return response


async def login_form(request: Request) -> Response:
    return _form(request, _next(request.query_params.get("next")), None, 200)


async def login(request: Request) -> Response:
    console = state(request)
    if not same_origin(request):
        return refuse(request, None, "Cross-origin requests are refused.")
    try:
        form: QueryParams = await read_form(request, 64 * 1024)
    except HomingError as exc:  # a body over the limit
        return refuse(request, None, exc.message, exc.status_code)
    target = _next(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not console.sessions.check(
        console.sessions.login_token(nonce), form.get("_csrf")
    ):
        return _form(request, target, "The sign-in form expired; please try again.", 403)
    if not console.throttle.allow(caller_ip(request)):
        return _form(request, target, "Too many sign-in attempts; wait a minute.", 429)
    token = form.get("token", "").strip()
    principal = (
        await services(request).storage.authenticate(token) if 0 < len(token) <= MAX_TOKEN else None
    )
    if principal is None:
        return _form(request, target, "That token is not valid.", 401)
    _, cookie = console.sessions.issue(
        principal.account_id, read_only=principal.read_only, token_id=principal.token_id
    )
    response = RedirectResponse(target, 303)
    set_session_cookie(request, response, cookie)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@action(write=False)
async def logout(request: Request, viewer: Viewer, form: QueryParams) -> Response:
    console = state(request)
    session = console.sessions.read(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        console.sessions.revoke(session)
    response = RedirectResponse(COOKIE_PATH + "/login", 303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response
