"""Upstash Workflow events on the wire: `POST /v2/wait/{eventId}` (sent by
`context.waitForEvent` / `waitForWebhook`), `POST /v2/notify/{eventId}` and
`POST /v2/notify/{workflowRunId}/{eventId}` (`client.notify`, `context.notify`),
`GET /v2/waiters/{eventId}` (`client.getWaiters`), and the webhook URLs of
`context.createWebhook`: `ANY /v2/workflows/hooks/{userId}/{workflowRunId}/{eventId}`, which
need no token (the URL, with its random run id, is the capability).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from homing.actions import events
from homing.api.context import account, services
from homing.errors import InvalidRequest
from homing.web.http import JSON, read_body
from homing.workflow import waits

# Request headers that describe the connection, not the call a webhook receives.
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


def _rest(request: Request) -> str:
    rest: str = request.path_params.get("rest", "")
    if not rest:
        raise InvalidRequest("expected an event id")
    return rest


async def wait_for_event(request: Request) -> Response:
    svc, account_id = await account(request)
    body = await read_body(request, svc.settings.max_body_size)
    waiter_id = await events.wait(svc, account_id, _rest(request), body, request.headers.items())
    return JSON({"messageId": waiter_id})


async def notify(request: Request) -> Response:
    svc, account_id = await account(request)
    data = await read_body(request, svc.settings.max_body_size)
    notified = await events.notify(svc, account_id, _rest(request), data)
    return JSON([n.view() for n in notified])


async def waiters(request: Request) -> Response:
    svc, account_id = await account(request)
    found = await events.waiters(svc, account_id, _rest(request))
    return JSON([waits.view(w) for w in found])


def _forwarded_proto(request: Request) -> str:
    # Behind a TLS-terminating proxy the caller used https: uvicorn puts the proxy's
    # X-Forwarded-Proto in the scope when the proxy is trusted (127.0.0.1 by default,
    # FORWARDED_ALLOW_IPS otherwise); the Host header must reach Homing unchanged.
    return request.url.scheme


async def webhook(request: Request) -> Response:
    svc = services(request)
    user_id: str = request.path_params["user_id"]
    run_id: str = request.path_params["run_id"]
    event_id = waits.event_id(request.path_params.get("rest", ""))
    body = await read_body(request, svc.settings.max_body_size)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    url = raw_path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    event = waits.webhook_event(
        method=request.method,
        headers=[
            (waits.canonical_header(n), v)
            for n, v in request.headers.items()
            if n.lower() not in _HOP_HEADERS
        ],
        body=body,
        proto=_forwarded_proto(request),
        host=request.headers.get("host", ""),
        url=url,
    )
    await events.webhook(svc, user_id, run_id, event_id, event)
    return JSON({})
