"""The one place where errors become HTTP responses: `{"error": "..."}`, the shape every QStash
SDK reads."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from homing.errors import HomingError, NotImplementedYet, StorageUnavailable
from homing.web.http import JSON

log = logging.getLogger(__name__)


async def homing_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HomingError)
    if isinstance(exc, StorageUnavailable):
        # Expected while the database is away; one line per request, without a traceback.
        log.warning(
            "%s %s answered 503: %s",
            request.method,
            request.url.path,
            exc.message,
            extra={"event": "request.storage_unavailable"},
        )
    elif exc.status_code >= 500 and not isinstance(exc, NotImplementedYet):
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return JSON({"error": exc.message}, status_code=exc.status_code)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    text = messages.get(exc.status_code, str(exc.detail))
    return JSON({"error": f"{text}: {request.method} {request.url.path}"}, exc.status_code)


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The client went away before its request was read (it gave up waiting, or was stopped):
    nothing went wrong here, and nobody is left to answer."""
    log.info(
        "client disconnected before %s %s was answered",
        request.method,
        request.url.path,
        extra={"event": "request.client_disconnected"},
    )
    return JSON({"error": "client disconnected"}, status_code=499)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSON({"error": "internal error"}, status_code=500)


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    HomingError: homing_error,
    HTTPException: http_error,
    ClientDisconnect: client_disconnected,
    Exception: unexpected_error,
}


async def answer(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer `exc` as the app's exception handlers do, for a route served in front of them
    (the publish fast path, `homing.api.publish.serve`), which must not have started its
    response yet.

    The handler is the one of the nearest class, as Starlette picks it; an unexpected error is
    raised again after its 500 is sent, as Starlette's server-error middleware does, so that
    the server logs it too.
    """
    handler = next(EXCEPTION_HANDLERS[c] for c in type(exc).__mro__ if c in EXCEPTION_HANDLERS)
    response = await handler(Request(scope, receive), exc)
    await response(scope, receive, send)
    if handler is unexpected_error:
        raise exc
